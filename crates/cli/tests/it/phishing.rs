//! Phishing drills (issue 16, "must hold"): a real SMTP receiver gets a
//! campaign's mails spread over its window (the sender is given the time:
//! `phishing send --until`, no sleeping); a link's first visit records a click
//! and shows the look-alike sign-in page, its submit records only *that*
//! something was submitted and shows the lesson, and the canaries typed into
//! it are nowhere: not in any file under the data directory (the SQLite file's
//! bytes), the PostgreSQL dump, the logs or the database; a report records the
//! time to report; a report of anything else raises an alert; forged, reused
//! and malformed ids, the wrong role, no session, CSRF and hostile input on
//! every new route. The browser half is `phishing_in_chromium`
//! (tests/e2e/phishing.mjs).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use reqwest::StatusCode;
use sqlx::{Connection, Row};
use tokio::net::TcpListener;

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, files_under, patient, run};
use crate::detection::{next, smtp_receiver};
use crate::ui::Browser;
use crate::vastaamo::{canary, hits};

const TEMPLATES: [&str; 5] = [
    include_str!("../../../../phishing/templates/password-reset.toml"),
    include_str!("../../../../phishing/templates/kanta-message.toml"),
    include_str!("../../../../phishing/templates/invoice.toml"),
    include_str!("../../../../phishing/templates/patient-complaint.toml"),
    include_str!("../../../../phishing/templates/shared-document.toml"),
];

/// The server under test runs on the system clock: the test plans against the same one.
#[allow(clippy::disallowed_methods)]
fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// A mail's text: its body decoded (base64 or quoted-printable, as lettre chose).
pub(crate) fn body_of(mail: &str) -> String {
    let (head, body) = mail.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    if head.contains("content-transfer-encoding: base64") {
        let b64: String = body.split_whitespace().collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    } else if head.contains("content-transfer-encoding: quoted-printable") {
        let joined = body.replace("=\r\n", "");
        let mut out = Vec::new();
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    } else {
        body.to_owned()
    }
    .replace("\r\n", "\n")
}

/// The recipient's link id in a drill mail's text.
fn link_in(text: &str) -> String {
    let id = text.split("http://clinic.invalid/p/").nth(1).unwrap().split_whitespace().next().unwrap();
    assert_eq!(id.len(), 43, "256 bits, URL-safe base64: {text}");
    id.to_owned()
}

/// The body each template has in `lang`, with `link` put in (as the sender does).
fn template_bodies(lang: &str, link: &str) -> Vec<String> {
    TEMPLATES
        .iter()
        .map(|t| {
            let t: toml::Table = t.parse().unwrap();
            t[lang]["body"].as_str().unwrap().trim_start().replace("{link}", link)
        })
        .collect()
}

/// `text` as a form value: every byte but letters and digits percent-encoded.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn scalar(inst: &Instance, q: &str) -> i64 {
    let mut db = inst.db().await;
    let v: i64 = sqlx::query(sqlx::AssertSqlSafe(q.to_owned())).fetch_one(&mut db).await.unwrap().get(0);
    db.close().await.unwrap();
    v
}

async fn send_times(inst: &Instance) -> Vec<i64> {
    let mut db = inst.db().await;
    let rows =
        sqlx::query("SELECT send_at FROM phishing_recipients ORDER BY send_at").fetch_all(&mut db).await.unwrap();
    db.close().await.unwrap();
    rows.iter().map(|r| r.get::<i64, _>(0)).collect()
}

/// `confidant phishing send`, off the test's async threads (the receiver runs there).
async fn send(inst: &Instance, until: Option<i64>) -> String {
    let dir = inst.dir.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let mut args = vec!["phishing".to_owned(), "send".into(), "--dir".into(), dir];
        if let Some(u) = until {
            args.push("--until".into());
            args.push(rfc3339(u));
        }
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(out.status.success(), "phishing send: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = run(args);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Every file under the data directory, the server's output and (PostgreSQL) a dump.
fn everywhere(inst: &Instance, s: &Server) -> Vec<(String, Vec<u8>)> {
    let mut places: Vec<(String, Vec<u8>)> = files_under(&inst.dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
        .collect();
    places.push(("server output".into(), s.output().into_bytes()));
    if inst.db == Db::Postgres {
        let dump = Command::new("pg_dump").arg(inst.database_url()).output().unwrap();
        assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
        assert!(dump.stdout.len() > 10_000, "a real dump");
        places.push(("pg_dump".into(), dump.stdout));
    }
    places
}

/// A drilled instance: SMTP receiver, `[phishing]` on, three staff with addresses.
struct Drilled {
    inst: Instance,
    mails: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn drilled(db: Db) -> Drilled {
    let inst = Instance::new(db).await;
    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    let mails = smtp_receiver(smtp).await;
    inst.configure(|t| {
        Instance::set(t, "clinic", "time_zone", "Europe/Helsinki".into());
        Instance::set(t, "alerts", "smtp_host", "127.0.0.1".into());
        Instance::set(t, "alerts", "smtp_port", i64::from(smtp_port).into());
        Instance::set(t, "alerts", "smtp_security", "none".into());
        Instance::set(t, "phishing", "enabled", true.into());
        Instance::set(t, "phishing", "from", "drills@clinic.example".into());
        // The server's own sender waits an hour: this test sends with the command.
        Instance::set(t, "phishing", "interval_seconds", 3600.into());
        Instance::set(t, "server", "public_url", "http://clinic.invalid".into());
    });
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    Drilled { inst, mails }
}

async fn drills_are_spread_clicked_submitted_reported_and_keep_nothing_typed(db: Db) {
    let Drilled { inst, mut mails } = drilled(db).await;
    let d = inst.dir.to_str().unwrap();
    // doctor: never a drill yet.
    let (_, report) = cli(&["doctor", "--dir", d, "--format", "json"]);
    assert!(report.contains("\"phishing-drill\"") && report.contains("staff never had a phishing drill"), "{report}");

    // Nobody has an address yet: no campaign.
    let start = now_ms() + 3_600_000;
    let spread_h = 10;
    let campaign = |users: &str| {
        let start = rfc3339(start);
        let all = "password-reset,kanta-message,invoice,patient-complaint,shared-document";
        let sh = spread_h.to_string();
        let args = [
            "phishing",
            "campaign",
            "--dir",
            d,
            "--templates",
            all,
            "--roles",
            "clinician,reception",
            "--users",
            users,
            "--start",
            &start,
            "--spread-hours",
            &sh,
        ];
        cli(&args)
    };
    let (ok, said) = campaign("admin1");
    assert!(!ok && said.contains("nobody targeted has an e-mail address"), "{said}");
    // Addresses: hostile ones refused, the good ones set (sealed: checked with the canaries below).
    for bad in ["not-an-address", "a@b.fi\r\nBcc: x@evil.example", "<script>@x.fi", "a@b"] {
        let (ok, said) = cli(&["phishing", "email", "--dir", d, "--user", "clin1", "--email", bad]);
        assert!(!ok && said.contains("not an e-mail address"), "{bad}: {said}");
    }
    let (ok, said) =
        cli(&["phishing", "email", "--dir", d, "--user", "clin1", "--email", "x@clinic.example", "--language", "sv"]);
    assert!(!ok && said.contains("fi or en"), "{said}");
    let (ok, said) = cli(&["phishing", "email", "--dir", d, "--user", "nobody", "--email", "x@clinic.example"]);
    assert!(!ok, "{said}");
    for (user, email, lang) in [("clin1", "clin1@clinic.example", "en"), ("desk", "desk@clinic.example", "fi")] {
        let (ok, said) = cli(&["phishing", "email", "--dir", d, "--user", user, "--email", email, "--language", lang]);
        assert!(ok, "{said}");
    }
    let (ok, said) = cli(&["phishing", "email", "--dir", d, "--user", "admin1", "--email", "admin1@clinic.example"]);
    assert!(ok, "{said}");
    // Hostile campaigns change nothing.
    for args in [
        vec!["--templates", "no-such-template", "--roles", "clinician"],
        vec!["--templates", "invoice", "--roles", "patient"],
        vec!["--templates", "invoice", "--roles", "clinician", "--spread-hours", "100000"],
        vec!["--templates", "invoice", "--roles", "clinician", "--start", "2001-01-01T00:00:00Z"],
        vec!["--templates", "invoice", "--roles", "clinician", "--start", "yesterday'; DROP TABLE users;--"],
        vec!["--templates", "invoice"],
    ] {
        let mut a = vec!["phishing", "campaign", "--dir", d];
        a.extend(args.iter());
        let (ok, said) = cli(&a);
        assert!(!ok, "{args:?}: {said}");
    }
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_campaigns").await, 0);

    // The campaign: clinicians and reception, and admin1 by name; spread over 10 hours from an hour on.
    let (ok, said) = campaign("admin1");
    assert!(ok && said.contains("3 recipients (0 targeted"), "{said}");
    let times = send_times(&inst).await;
    assert_eq!(times.len(), 3);
    assert!(times.iter().all(|t| (start..=start + spread_h * 3_600_000).contains(t)), "{times:?} within the window");
    assert!(times[0] != times[2], "spread, not all at once: {times:?}");

    // The sender is given the time: before the start nothing goes; then each slice sends what is due in it.
    assert!(send(&inst, None).await.contains("0 sent, 0 failed"));
    assert!(mails.try_recv().is_err(), "nothing before the start");
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for (i, until) in [times[0], times[1], times[2]].into_iter().enumerate() {
        let due = times.iter().filter(|t| **t <= until).count() - got.len();
        let said = send(&inst, Some(until)).await;
        assert!(said.contains(&format!("{due} sent, 0 failed")), "slice {i}: {said}");
        for _ in 0..due {
            let mail = next(&mut mails, "drill mail").await;
            let to = mail.lines().find(|l| l.starts_with("To: ")).unwrap().trim_start_matches("To: ");
            let to = to.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
            got.insert(to, mail);
        }
        assert!(mails.try_recv().is_err(), "only what was due by slice {i}");
    }
    assert!(send(&inst, Some(start + spread_h * 3_600_000)).await.contains("0 sent"), "each mail once");
    assert_eq!(got.len(), 3, "{:?}", got.keys());

    // Each mail: from the drill address with the template's sender name, in the recipient's language.
    let mut links = BTreeMap::new();
    for (to, mail) in &got {
        assert!(mail.contains("drills@clinic.example"), "{mail}");
        let text = body_of(mail);
        let link = link_in(&text);
        let lang = if to.contains("clin1") { "en" } else { "fi" };
        let url = format!("http://clinic.invalid/p/{link}");
        assert!(template_bodies(lang, &url).iter().any(|b| b.trim_end() == text.trim_end()), "{to} in {lang}: {text}");
        links.insert(to.split('@').next().unwrap().to_owned(), link);
    }
    let (clin_link, desk_link, admin_link) = (links["clin1"].clone(), links["desk"].clone(), links["admin1"].clone());
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE sent_at IS NOT NULL").await, 3);
    let (_, report) = cli(&["doctor", "--dir", d, "--format", "json"]);
    assert!(report.contains("staff had a phishing drill within the last 12 months"), "{report}");

    let s = inst.start();
    let anon = Browser::anonymous(&s).await;
    // Forged, malformed and hostile ids: the one 404 page of the site, nothing recorded.
    let (st, missing_page) = {
        let r = anon.get("/no-such-page").await;
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(st, StatusCode::NOT_FOUND);
    for forged in [
        "A".repeat(43),
        format!("{}B", &clin_link[..42]),
        clin_link[..42].to_owned(),
        format!("{clin_link}A"),
        "a".repeat(5000),
        "%27%20OR%201%3D1--".to_owned(),
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned(),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        for r in [anon.get(&format!("/p/{forged}")).await, anon.post_raw(&format!("/p/{forged}"), "password=x").await] {
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{forged}");
            assert_eq!(r.text().await.unwrap(), missing_page, "{forged}: the same page as any missing one");
        }
    }
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE clicked_at IS NOT NULL").await, 0);

    // A click: the look-alike sign-in page, recorded once; the next visit shows the lesson.
    let r = anon.get(&format!("/p/{clin_link}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("set-cookie").is_none(), "the look-alike page sets nothing");
    let page = r.text().await.unwrap();
    assert!(page.contains(&format!("action=\"/p/{clin_link}\"")) && page.contains("type=\"password\""), "{page}");
    assert!(!page.contains("drill"), "the look-alike page does not give the drill away: {page}");
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE clicked_at IS NOT NULL").await, 1);
    let clicked_at = scalar(&inst, "SELECT MAX(clicked_at) FROM phishing_recipients").await;
    let again = anon.get(&format!("/p/{clin_link}")).await.text().await.unwrap();
    assert!(again.contains("This was a phishing drill") && again.contains("The clues in this e-mail"), "{again}");
    assert_eq!(scalar(&inst, "SELECT MAX(clicked_at) FROM phishing_recipients").await, clicked_at, "counted once");
    // Whoever clicked is asked to take the phishing module again (once, however often they click).
    assert_eq!(
        scalar(
            &inst,
            "SELECT COUNT(*) FROM training_assignments WHERE module_key = 'phishing' AND reason LIKE 'phishing-drill/%'"
        )
        .await,
        1,
        "the click assigns the matching training module"
    );

    // A submit with canaries: recorded (only that), the lesson shown, the canaries nowhere.
    let (user_canary, password_canary, extra_canary) = (canary(), canary(), canary());
    let form = format!("username={user_canary}&password={password_canary}&otp={extra_canary}");
    let r = anon.post_raw(&format!("/p/{clin_link}"), &form).await;
    assert_eq!(r.status(), StatusCode::OK);
    let lesson = r.text().await.unwrap();
    assert!(lesson.contains("Nothing you typed was saved, sent or even read."), "{lesson}");
    assert!(!lesson.contains(&user_canary) && !lesson.contains(&password_canary), "nothing typed is shown back");
    // A JSON body, a huge one and a malformed one: the same (the body is never read).
    let json = anon.post_json(&format!("/p/{clin_link}"), &serde_json::json!({"password": extra_canary})).await;
    assert_eq!(json.status(), StatusCode::OK, "reused: the lesson again");
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE submitted_at IS NOT NULL").await, 1);
    let submitted_at = scalar(&inst, "SELECT MAX(submitted_at) FROM phishing_recipients").await;
    let r = anon.post_raw(&format!("/p/{clin_link}"), "%%%\u{0}=&&==").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(scalar(&inst, "SELECT MAX(submitted_at) FROM phishing_recipients").await, submitted_at, "counted once");
    // A submit without a click first (the form posted straight) counts as both.
    let r = anon.post_raw(&format!("/p/{admin_link}"), &form).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE clicked_at IS NOT NULL").await, 2);

    // Reporting: desk pastes the whole mail; counted with its time to report, once.
    let desk = Browser::sign_in(&s, "desk").await;
    let clin = Browser::sign_in(&s, "clin1").await;
    let desk_mail = body_of(&got["desk@clinic.example"]).replace('\n', "\r\n");
    let body = |text: &str| format!("text={}", percent(text));
    let r = desk.post("/report", &body(&desk_mail)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("Well spotted: that was a drill") && page.contains("Time to report:"), "{page}");
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE reported_at IS NOT NULL").await, 1);
    let reported_at = scalar(&inst, "SELECT MAX(reported_at) FROM phishing_recipients").await;
    assert!(desk.post("/report", &body(&format!("http://clinic.invalid/p/{desk_link}"))).await.status().is_success());
    assert_eq!(scalar(&inst, "SELECT MAX(reported_at) FROM phishing_recipients").await, reported_at, "once");
    // Another's drill link, or a real phishing mail: a suspected phishing alert, and the text is not kept.
    let suspicious = format!("From: evil\r\n\r\nSign in at https://evil.example/{} {}", canary(), "x".repeat(10));
    let suspect_canary = suspicious.split('/').nth(3).unwrap().split(' ').next().unwrap().to_owned();
    let r = clin.post("/report", &body(&suspicious)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("the administrator has been alerted"));
    let r = clin.post("/report", &body(&format!("http://clinic.invalid/p/{desk_link}"))).await;
    assert!(r.text().await.unwrap().contains("the administrator has been alerted"), "desk's link is not clin1's drill");
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE reported_at IS NOT NULL").await, 1);
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM alerts WHERE rule = 'suspected-phishing'").await, 2);
    // Hostile reports: empty, oversized, no CSRF token, another form's token: nothing happens.
    let audit_before = scalar(&inst, "SELECT COUNT(*) FROM audit_log").await;
    for (form, status) in [
        ("text=".to_owned(), StatusCode::BAD_REQUEST),
        (format!("text={}", "a".repeat(150_000)), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(clin.post("/report", &form).await.status(), status);
    }
    assert_eq!(clin.post_raw("/report", &body(&suspicious)).await.status(), StatusCode::FORBIDDEN, "no CSRF token");
    assert_eq!(
        clin.post_raw("/report", &format!("csrf=forged&{}", body(&suspicious))).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM audit_log").await, audit_before, "nothing recorded");
    // No session: sent to sign in, for every new signed-in route.
    for path in ["/report", "/me/phishing", "/admin/phishing"] {
        let r = anon.get(path).await;
        assert_eq!(
            (r.status(), r.headers()["location"].to_str().unwrap()),
            (StatusCode::SEE_OTHER, "/login"),
            "{path}"
        );
    }
    for path in ["/report", "/admin/phishing"] {
        let r = anon.post_raw(path, "csrf=x&text=y").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "POST {path}");
    }
    // The wrong role: a patient has no drills and reports nothing; only admins run drills.
    let pid = s.create(&patient("Drillfree", "Pia")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "pia", "patient", &["--patient", &pid]);
    let pia = Browser::sign_in(&s, "pia").await;
    let audit_before = scalar(&inst, "SELECT COUNT(*) FROM audit_log").await;
    for path in ["/report", "/me/phishing", "/admin/phishing"] {
        assert_eq!(pia.get(path).await.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(pia.post("/report", &body(&suspicious)).await.status(), StatusCode::FORBIDDEN);
    for who in [&clin, &desk] {
        assert_eq!(who.get("/admin/phishing").await.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            who.post("/admin/phishing", "templates=invoice&roles=clinician&start=2030-01-01T09%3A00&spread_hours=1")
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM audit_log").await, audit_before, "nothing recorded");

    // Their own page: what they did, with the lesson.
    let mine = clin.get("/me/phishing").await.text().await.unwrap();
    assert!(mine.contains("You opened its link.") && mine.contains("You typed into the look-alike page."), "{mine}");
    let mine = desk.in_language("fi").get("/me/phishing").await.text().await.unwrap();
    assert!(mine.contains("Ilmoitit siitä"), "{mine}");

    // The admin: aggregates, the reporting rate first; no names by default.
    let admin = Browser::sign_in(&s, "admin1").await;
    let tab = admin.get("/admin/phishing").await.text().await.unwrap();
    let (rate, sent) = (tab.find("Reporting rate</th>").unwrap(), tab.find("Sent</th>").unwrap());
    assert!(rate < sent, "the reporting rate comes first");
    assert!(tab.contains("<strong>33 %</strong>") && tab.contains("3 / 3"), "{tab}");
    assert!(!tab.contains("Person</th>") && tab.contains("no one is named"), "{tab}");
    // A new drill from the tab: hostile forms refused, nothing made; a good one made.
    let campaigns = scalar(&inst, "SELECT COUNT(*) FROM phishing_campaigns").await;
    for form in [
        "templates=invoice&roles=clinician&start=2030-01-01T09%3A00&spread_hours=1".to_owned(),
        "csrf=forged&templates=invoice&roles=clinician&start=2030-01-01T09%3A00&spread_hours=1".to_owned(),
    ] {
        assert_eq!(admin.post_raw("/admin/phishing", &form).await.status(), StatusCode::FORBIDDEN, "{form}");
    }
    for form in [
        "templates=%3Cscript%3E&roles=clinician&start=2030-01-01T09%3A00&spread_hours=1",
        "templates=invoice&roles=patient&start=2030-01-01T09%3A00&spread_hours=1",
        "templates=invoice&roles=superuser&start=2030-01-01T09%3A00&spread_hours=1",
        "templates=invoice&roles=clinician&start=soon&spread_hours=1",
        "templates=invoice&roles=clinician&start=2030-01-01T09%3A00&spread_hours=-1",
        "templates=invoice&start=2030-01-01T09%3A00&spread_hours=1",
        "roles=clinician&start=2030-01-01T09%3A00&spread_hours=1",
    ] {
        assert_eq!(admin.post("/admin/phishing", form).await.status(), StatusCode::BAD_REQUEST, "{form}");
    }
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_campaigns").await, campaigns);
    let tomorrow = rfc3339(now_ms() + 86_400_000)[..16].to_owned();
    let good = format!(
        "templates=invoice&templates=kanta-message&roles=reception&start={}&spread_hours=2",
        tomorrow.replace(':', "%3A")
    );
    assert_eq!(admin.post("/admin/phishing", &good).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_campaigns").await, campaigns + 1);

    // The audit log: every step, and no link id in any entry.
    let mut db = inst.db().await;
    let entries: Vec<String> = sqlx::query("SELECT action, entry FROM audit_log")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.get::<String, _>(0), String::from_utf8_lossy(&r.get::<Vec<u8>, _>(1))))
        .collect();
    db.close().await.unwrap();
    let count = |a: &str| entries.iter().filter(|e| e.starts_with(&format!("{a} "))).count();
    assert_eq!(
        [
            count("staff-email"),
            count("phishing-campaign"),
            count("phishing-sent"),
            count("phishing-clicked"),
            count("phishing-submitted"),
            count("phishing-reported"),
            count("phishing-suspected")
        ],
        [3, 2, 3, 2, 2, 1, 2],
        "{entries:#?}"
    );
    for link in [&clin_link, &desk_link, &admin_link] {
        assert!(!entries.iter().any(|e| e.contains(link.as_str())), "a link id in the audit log");
    }

    // Nothing typed into the look-alike page, and no reported text, anywhere; no address in the clear.
    let canaries = [user_canary, password_canary, extra_canary, suspect_canary];
    assert_eq!(hits(&everywhere(&inst, &s), &canaries), Vec::<String>::new(), "while the server runs");
    let places = everywhere(&inst, &s);
    let db_file: Vec<_> = places.iter().filter(|(n, _)| n.contains("confidant.db") || n == "pg_dump").collect();
    for (name, bytes) in &db_file {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("clin1@clinic.example") && !text.contains("desk@clinic.example"),
            "an address in {name}"
        );
        for link in [&clin_link, &desk_link, &admin_link] {
            assert!(!text.contains(link.as_str()), "a link id in {name}");
        }
    }
    let logs = s.output();
    s.stop();
    assert!(!logs.contains(&clin_link), "no link id in the logs");
    let after: Vec<_> = everywhere_stopped(&inst);
    assert_eq!(hits(&after, &canaries), Vec::<String>::new(), "after it stopped");
}
both_backends!(drills_are_spread_clicked_submitted_reported_and_keep_nothing_typed);

fn everywhere_stopped(inst: &Instance) -> Vec<(String, Vec<u8>)> {
    let mut places: Vec<(String, Vec<u8>)> = files_under(&inst.dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
        .collect();
    for f in files_under(&inst.logs_dir()) {
        places.push((f.display().to_string(), std::fs::read(&f).unwrap_or_default()));
    }
    if inst.db == Db::Postgres {
        let dump = Command::new("pg_dump").arg(inst.database_url()).output().unwrap();
        places.push(("pg_dump".into(), dump.stdout));
    }
    places
}

/// With `phishing.show_names`, the admin sees per-person rows and the note on workplace-privacy law.
async fn names_only_when_the_clinic_turns_them_on(db: Db) {
    let Drilled { inst, mut mails } = drilled(db).await;
    let d = inst.dir.to_str().unwrap();
    assert!(cli(&["phishing", "email", "--dir", d, "--user", "desk", "--email", "desk@clinic.example"]).0);
    let start = rfc3339(now_ms());
    let (ok, said) = cli(&[
        "phishing",
        "campaign",
        "--dir",
        d,
        "--templates",
        "invoice",
        "--users",
        "desk",
        "--start",
        &start,
        "--spread-hours",
        "0",
    ]);
    assert!(ok, "{said}");
    assert!(send(&inst, None).await.contains("1 sent"));
    let mail = next(&mut mails, "drill mail").await;
    assert!(body_of(&mail).contains("2026-48812"), "the invoice, in Finnish by default: {mail}");
    inst.configure(|t| Instance::set(t, "phishing", "show_names", true.into()));
    let s = inst.start();
    let admin = Browser::sign_in(&s, "admin1").await;
    let tab = admin.get("/admin/phishing").await.text().await.unwrap();
    assert!(tab.contains("Person</th>") && tab.contains("laki yksityisyyden suojasta"), "{tab}");
    assert!(tab.contains("desk · "), "{tab}");
    s.stop();
    // Open tracking is not built: turning it on is refused with a clear error.
    inst.configure(|t| Instance::set(t, "phishing", "track_opens", true.into()));
    let (ok, said) = cli(&["phishing", "send", "--dir", d]);
    assert!(!ok && said.contains("track_opens"), "{said}");
}
both_backends!(names_only_when_the_clinic_turns_them_on);

/// In Chromium: the mail's link opens the look-alike page, typing into it and
/// signing in shows the lesson, the click and the submit are recorded and the
/// canaries are nowhere; reporting, the staff page and the admin tab, with
/// screenshots at 1280 and 375 px in English and Finnish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phishing_in_chromium() {
    let Some(e2e) = crate::common::e2e_ready("phishing::phishing_in_chromium") else { return };
    let Drilled { inst, mut mails } = drilled(Db::Sqlite).await;
    let d = inst.dir.to_str().unwrap();
    for (user, lang) in [("clin1", "en"), ("desk", "fi")] {
        let email = format!("{user}@clinic.example");
        assert!(cli(&["phishing", "email", "--dir", d, "--user", user, "--email", &email, "--language", lang]).0);
    }
    let start = rfc3339(now_ms());
    let args = [
        "phishing",
        "campaign",
        "--dir",
        d,
        "--templates",
        "password-reset",
        "--users",
        "clin1,desk",
        "--start",
        &start,
        "--spread-hours",
        "0",
    ];
    assert!(cli(&args).0);
    assert!(send(&inst, None).await.contains("2 sent"));
    let mut links = BTreeMap::new();
    for _ in 0..2 {
        let mail = next(&mut mails, "drill mail").await;
        let who = if mail.contains("To: <clin1@") || mail.contains("To: clin1@") { "clin1" } else { "desk" };
        links.insert(who, link_in(&body_of(&mail)));
    }
    let s = inst.start();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let (user_canary, password_canary) = (canary(), canary());
    let out = Command::new("node")
        .arg(e2e.join("phishing.mjs"))
        .env("BASE_URL", &s.url)
        .env("LINK_EN", &links["clin1"])
        .env("LINK_FI", &links["desk"])
        .env("CANARY_USER", &user_canary)
        .env("CANARY_PASSWORD", &password_canary)
        .env("CLINICIAN", "clin1")
        .env("ADMIN", "admin1")
        .env("PASSWORD", crate::common::PASSWORD)
        .env("SCREENSHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("all expectations met"), "{said}");
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE clicked_at IS NOT NULL").await, 2);
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE submitted_at IS NOT NULL").await, 2);
    assert_eq!(scalar(&inst, "SELECT COUNT(*) FROM phishing_recipients WHERE reported_at IS NOT NULL").await, 1);
    let canaries = [user_canary, password_canary];
    assert_eq!(hits(&everywhere(&inst, &s), &canaries), Vec::<String>::new());
    s.stop();
    assert_eq!(hits(&everywhere_stopped(&inst), &canaries), Vec::<String>::new());
    for shot in [
        "1-lookalike-1280-en",
        "1-lookalike-375-fi",
        "2-lesson-1280-en",
        "2-lesson-375-en",
        "2-lesson-1280-fi",
        "2-lesson-375-fi",
        "3-report-1280-en",
        "3-report-375-fi",
        "4-reported-1280-en",
        "5-my-drills-1280-en",
        "5-my-drills-375-fi",
        "6-admin-1280-en",
        "6-admin-375-fi",
    ] {
        assert!(shots.join(format!("phishing-{shot}.png")).exists(), "{shot}");
    }
}
