//! Appointment reminders: `confidant reminders send` mails and texts the
//! patients of booked appointments within the lead time, once, with the
//! clinic, the time and a cancel link and nothing else (a canary name and
//! note appear in no outbound body and no log); the link cancels once without
//! a login, dies after, refuses inside the notice period and answers every
//! unknown, used or hostile token with one page; the portal lists the
//! patient's own appointments and cancels only those, only for the patient.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, note, patient, row_counts, run};
use crate::detection::{hmac_sha256, next, smtp_receiver, webhook_receiver, webhook_secret};
use crate::ui::Browser;
use crate::vastaamo::{canary, hits};

// The server under test runs on the system clock: the test books against the same one.
#[allow(clippy::disallowed_methods)]
fn in_hours(h: f64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds_f64(h * 3600.0);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:00Z");
    t.format(&f).unwrap()
}

fn appointment(patient_id: &str, start: &str, status: &str) -> Value {
    // A booked appointment has an end as well as a start (FHIR invariant app-2/app-3).
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let end =
        (time::OffsetDateTime::parse(start, rfc3339).unwrap() + time::Duration::minutes(45)).format(rfc3339).unwrap();
    json!({
        "resourceType": "Appointment", "status": status,
        "start": start, "end": end,
        "participant": [{"actor": {"reference": format!("Patient/{patient_id}")}, "status": "accepted"}]
    })
}

async fn status_of(s: &Server, id: &str) -> Value {
    let (st, a) = s.get_json(&format!("Appointment/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{a}");
    a
}

/// `confidant reminders send`, off the test's async threads (the receivers run there).
async fn send(inst: &Instance) -> String {
    let dir = inst.dir.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || run(&["reminders", "send", "--dir", &dir])).await.unwrap();
    assert!(out.status.success(), "reminders send: {}", String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A POST with no session and no body, redirects not followed.
async fn bare_post(s: &Server, path: &str) -> reqwest::Response {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    http.post(format!("{}{path}", s.url)).send().await.unwrap()
}

/// The page without its own address (the language switch repeats the path).
async fn page(r: reqwest::Response, token: &str) -> (StatusCode, String) {
    let st = r.status();
    let text = r.text().await.unwrap();
    (st, if token.is_empty() { text } else { text.replace(token, "TOKEN") })
}

/// Validate `docs` with the independent FHIR validators (skipped, loudly, without them).
fn validate(docs: &[Value]) {
    crate::common::validate_fhir("reminders", docs);
}

async fn reminders_are_sent_once_say_nothing_clinical_and_cancel_once(db: Db) {
    let inst = Instance::new(db).await;
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/sms", hook.local_addr().unwrap());
    let mut texts = webhook_receiver(hook).await;
    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    let mut mails = smtp_receiver(smtp).await;
    let (secret, secret_file) = webhook_secret(&inst);
    inst.configure(|t| {
        Instance::set(t, "clinic", "name", "Testiklinikka".into());
        Instance::set(t, "clinic", "time_zone", "Europe/Helsinki".into());
        Instance::set(t, "clinic", "cancel_notice_hours", 2.into());
        Instance::set(t, "alerts", "smtp_host", "127.0.0.1".into());
        Instance::set(t, "alerts", "smtp_port", i64::from(smtp_port).into());
        Instance::set(t, "alerts", "smtp_security", "none".into());
        Instance::set(t, "reminders", "enabled", true.into());
        Instance::set(t, "reminders", "lead_hours", 24.into());
        Instance::set(t, "reminders", "from", "clinic@example.fi".into());
        Instance::set(t, "reminders", "sms_webhook", hook_url.clone().into());
        Instance::set(t, "reminders", "sms_webhook_secret_file", secret_file.display().to_string().into());
        // The server's own sweep waits an hour: this test sends with the command.
        Instance::set(t, "reminders", "interval_seconds", 3600.into());
        // The links start with the address patients reach (the test serves on another).
        Instance::set(t, "server", "public_url", "http://clinic.invalid".into());
    });
    add_user(&inst.dir, "desk", "reception", &[]);
    let s = inst.start();
    let (family, given, note_text) = (canary(), canary(), canary());
    let mut p = patient(&family, &given);
    p["telecom"] = json!([
        {"system": "email", "value": "anna@example.fi"},
        {"system": "phone", "use": "mobile", "value": "+358401234567"}
    ]);
    p["communication"] = json!([{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}}]);
    let pid = s.create(&p).await["id"].as_str().unwrap().to_owned();
    s.create(&note(&pid, &format!("session about {note_text}"))).await;
    let other = s.create(&patient("Toinen", "Potilas")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "pat1", "patient", &["--patient", &pid]);
    add_user(&inst.dir, "pat2", "patient", &["--patient", &other]);
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let soon = id(s.create(&appointment(&pid, &in_hours(5.0), "booked")).await);
    let too_soon = id(s.create(&appointment(&pid, &in_hours(1.0), "booked")).await);
    let later = id(s.create(&appointment(&pid, &in_hours(48.0), "booked")).await);
    let gone = id(s.create(&appointment(&pid, &in_hours(3.0), "cancelled")).await);
    let others = id(s.create(&appointment(&other, &in_hours(6.0), "booked")).await);

    // One sweep: the two booked appointments within 24 h, by e-mail and text; the
    // other patient has no e-mail or phone; the later and the cancelled one wait.
    let said = send(&inst).await;
    assert!(said.contains("2 sent, 0 failed") && said.contains("1 patients without"), "{said}");
    let mut bodies = Vec::new();
    let mut links = Vec::new();
    for _ in 0..2 {
        let mail = next(&mut mails, "reminder e-mail").await;
        assert!(mail.contains("To: anna@example.fi"), "{mail}");
        assert!(mail.contains("Appointment reminder") && mail.contains("Testiklinikka"), "{mail}");
        let (sig, body) = next(&mut texts, "reminder text").await;
        assert_eq!(sig, format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &body))));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["to"], "+358401234567");
        let text = v["text"].as_str().unwrap().to_owned();
        assert!(text.contains("Testiklinikka") && text.contains("(EE") && text.contains(" at "), "{text}");
        let link = text.split("http://clinic.invalid/cancel/").nth(1).unwrap().split_whitespace().next().unwrap();
        assert_eq!(link.len(), 64, "{text}");
        assert_eq!(v.as_object().unwrap().len(), 2, "only to and text: {v}");
        links.push(link.to_owned());
        bodies.push(("mail".to_owned(), mail.into_bytes()));
        bodies.push(("text".to_owned(), body));
    }
    // Nothing but the clinic, the time and the link: no name, no note, no clinician.
    let logs = format!("{said}{}", s.output());
    bodies.push(("logs".to_owned(), logs.into_bytes()));
    assert_eq!(hits(&bodies, &[family.clone(), given.clone(), note_text.clone()]), Vec::<String>::new());
    for (what, b) in &bodies[..4] {
        let b = String::from_utf8_lossy(b);
        assert!(!b.contains("Clinician") && !b.contains("Practitioner") && !b.contains(&pid), "{what}: {b}");
    }
    // Run again: nothing is sent twice.
    let again = send(&inst).await;
    assert!(again.contains("0 sent, 0 failed") && again.contains("0 patients without"), "{again}");
    assert!(mails.try_recv().is_err() && texts.try_recv().is_err(), "nothing re-sent");

    // Which link is which: the one that may still be cancelled, and the one inside the notice.
    let anon = Browser::anonymous(&s).await;
    let mut open_link = None;
    let mut late_link = None;
    for l in &links {
        let (st, body) = page(anon.get(&format!("/cancel/{l}")).await, l).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert!(body.contains("Testiklinikka"), "{body}");
        assert_eq!(
            hits(&[("page".into(), body.clone().into_bytes())], &[family.clone(), given.clone()]),
            Vec::<String>::new()
        );
        if body.contains("Cancel your appointment?") {
            assert!(body.contains("action=\"/cancel/TOKEN\""), "{body}");
            open_link = Some(l.clone());
        } else {
            assert!(body.contains("please call the clinic"), "{body}");
            assert!(!body.contains("<form method=\"post\" action=\"/cancel"), "{body}");
            late_link = Some(l.clone());
        }
    }
    let (open_link, late_link) = (open_link.unwrap(), late_link.unwrap());
    // The uniform page: a made-up token, and hostile ones, change nothing.
    let (dead_status, dead) = page(anon.get(&format!("/cancel/{}", "ab".repeat(32))).await, &"ab".repeat(32)).await;
    assert_eq!(dead_status, StatusCode::NOT_FOUND);
    assert!(dead.contains("This link does not work"), "{dead}");
    let before = row_counts(&inst).await;
    for hostile in [
        "A".repeat(64),
        "z".repeat(64),
        "a".repeat(5000),
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%27%20OR%201%3D1--".to_owned(),
        format!("{open_link}%00"),
        open_link[..63].to_owned(),
    ] {
        for post in [false, true] {
            let url = format!("{}/cancel/{hostile}", s.url);
            let r = if post { s.http.post(&url).send().await.unwrap() } else { s.http.get(&url).send().await.unwrap() };
            let st = r.status();
            let body = r.text().await.unwrap();
            assert!(st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST, "{hostile}: {st}");
            assert!(!body.contains("Testiklinikka, "), "{hostile}");
        }
    }
    assert_eq!(row_counts(&inst).await, before, "hostile tokens changed nothing");
    assert_eq!(status_of(&s, &soon).await["status"], "booked");

    // Inside the notice: refused with the message, nothing changed.
    let r = bare_post(&s, &format!("/cancel/{late_link}")).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("please call the clinic"));
    assert_eq!(status_of(&s, &too_soon).await["status"], "booked");

    // The link cancels, once, with the patient's reason; then it is dead.
    let (st, done) = page(bare_post(&s, &format!("/cancel/{open_link}")).await, &open_link).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "{done}\n{}",
        s.output().lines().filter(|l| l.contains("cancel link")).collect::<Vec<_>>().join("\n")
    );
    assert!(done.contains("has been cancelled"), "{done}");
    let a = status_of(&s, &soon).await;
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["cancelationReason"]["coding"][0]["code"], "pat");
    let (st, used) = page(anon.get(&format!("/cancel/{open_link}")).await, &open_link).await;
    assert_eq!((st, used.clone()), (dead_status, dead.clone()), "a used link looks like a made-up one");
    let (st, _) = page(bare_post(&s, &format!("/cancel/{open_link}")).await, &open_link).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Audited: the reminder reads and sends, the link's cancellation, the guesses.
    let rows = crate::audit::rows(&inst).await;
    let entries: Vec<Value> = rows.iter().map(|r| serde_json::from_slice(&r.entry).unwrap()).collect();
    let by = |actor: &str, action: &str| {
        entries.iter().filter(|e| e["actor"] == actor && e["action"] == action).cloned().collect::<Vec<_>>()
    };
    let sent = by("reminders", "export");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|e| e["patient"] == pid.as_str() && e["purpose"] == "appointment reminder"));
    assert_eq!(by("reminders", "read").len(), 6, "an appointment and its patient, for each of the three due");
    let cancel = by("cancel-link", "update");
    assert_eq!(cancel.len(), 1, "{cancel:?}");
    assert_eq!(cancel[0]["resource"], format!("Appointment/{soon}"));
    assert!(entries.iter().any(|e| e["actor"] == "cancel-link" && e["outcome"] == "denied"), "guesses audited");

    // The portal: the patient's own upcoming appointments, cancel within the rule.
    let me = Browser::sign_in(&s, "pat1").await;
    let (st, list) = page(me.get("/me/appointments").await, "").await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert!(list.contains(&format!("/me/appointments/{later}/cancel")), "{list}");
    assert!(!list.contains(&format!("/me/appointments/{too_soon}/cancel")), "inside the notice: no button");
    assert!(list.contains("please call the clinic") && list.contains("Cancelled"), "{list}");
    assert!(!list.contains(&others) && !list.contains(&gone), "no button for another's or a cancelled one");
    assert!(list.contains("(EE"), "clinic time zone: {list}");
    let fi = me.in_language("fi").get("/me/appointments").await.text().await.unwrap();
    assert!(fi.contains("Peru tämä aika") && fi.contains(" klo "), "{fi}");
    // Another patient's appointment, an unknown id, a hostile id: 404, nothing changed.
    for bad in [others.as_str(), "0123456789abcdef0123456789abcdef", "..%2F..%2Fx", &"x".repeat(3000)] {
        let r = me.post(&format!("/me/appointments/{bad}/cancel"), "").await;
        assert!(r.status() == StatusCode::NOT_FOUND || r.status() == StatusCode::BAD_REQUEST, "{bad}: {}", r.status());
    }
    assert_eq!(status_of(&s, &others).await["status"], "booked");
    let r = me.post(&format!("/me/appointments/{too_soon}/cancel"), "").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(status_of(&s, &too_soon).await["status"], "booked");
    // No CSRF token: refused.
    let r = me.post_raw(&format!("/me/appointments/{later}/cancel"), "csrf=nope").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Staff cannot use the patient's cancel, and the other patient cannot cancel this one.
    let desk = Browser::sign_in(&s, "desk").await;
    let r = desk.post(&format!("/me/appointments/{later}/cancel"), "").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(desk.get("/me/appointments").await.status(), StatusCode::FORBIDDEN);
    let pat2 = Browser::sign_in(&s, "pat2").await;
    let r = pat2.post(&format!("/me/appointments/{later}/cancel"), "").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!pat2.get("/me/appointments").await.text().await.unwrap().contains(&later));
    assert_eq!(status_of(&s, &later).await["status"], "booked");
    // No session: to the sign-in page.
    let r = anon.get("/me/appointments").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    let r = bare_post(&s, &format!("/me/appointments/{later}/cancel")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The patient's own cancel.
    let r = me.post(&format!("/me/appointments/{later}/cancel"), "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&s, &later).await["status"], "cancelled");
    // The access log shows the reminder.
    let log = me.get("/me/access-log").await.text().await.unwrap();
    assert!(log.contains("automatic appointment reminder") && log.contains("the cancel link of a reminder"), "{log}");
    // Valid FHIR R4 by the independent validator: the patient's cancellation and
    // the access log with the reminder's entries, as AuditEvents.
    let pat_token = crate::common::create_token(&inst.dir, "pat1", "user/*.read");
    let r = s.http.get(s.fhir("AuditEvent?_count=100")).bearer_auth(&pat_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let events: Value = r.json().await.unwrap();
    let text = events.to_string();
    assert!(text.contains("appointment reminder") && !text.contains(&family), "{text}");
    validate(&[status_of(&s, &soon).await, status_of(&s, &later).await, events]);
    s.stop();
    // At rest too: the marks and link hashes beside the sealed records name no one.
    let at_rest: Vec<(String, Vec<u8>)> = crate::common::files_under(&inst.dir)
        .into_iter()
        .chain(crate::common::files_under(&inst.logs_dir()))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap_or_default()))
        .collect();
    assert_eq!(hits(&at_rest, &[family, given, note_text]), Vec::<String>::new());
}
both_backends!(reminders_are_sent_once_say_nothing_clinical_and_cancel_once);

/// Reminders are off unless enabled, and a configuration without a channel says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_need_to_be_enabled_and_configured() {
    let inst = Instance::new(Db::Sqlite).await;
    let dir = inst.dir.to_str().unwrap();
    let out = run(&["reminders", "send", "--dir", dir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("enabled = true"));
    inst.configure(|t| Instance::set(t, "reminders", "enabled", true.into()));
    let out = run(&["reminders", "send", "--dir", dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public_url"), "{err}");
    inst.configure(|t| Instance::set(t, "server", "public_url", "https://clinic.example".into()));
    let out = run(&["reminders", "send", "--dir", dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no channel") && err.contains("sms_webhook"), "{err}");
    // `serve` refuses the same configuration, saying where.
    let out = run(&["serve", "--dir", dir, "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[reminders]") && err.contains("no channel"), "{err}");
    inst.configure(|t| Instance::set(t, "reminders", "sms_webhook", "ftp://x".into()));
    let out = run(&["reminders", "send", "--dir", dir]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("http(s) URL"));
}

/// A send interrupted by a crash (a claim older than ten minutes, never marked
/// sent) is sent once more; a fresh claim (another node sending now) and a
/// taken-over one are left alone.
async fn a_crashed_send_is_retried_once_and_a_fresh_claim_left_alone(db: Db) {
    let inst = Instance::new(db).await;
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/sms", hook.local_addr().unwrap());
    let mut texts = webhook_receiver(hook).await;
    inst.configure(|t| {
        Instance::set(t, "reminders", "enabled", true.into());
        Instance::set(t, "reminders", "email", false.into());
        Instance::set(t, "reminders", "sms_webhook", hook_url.clone().into());
        Instance::set(t, "reminders", "interval_seconds", 3600.into());
        Instance::set(t, "server", "public_url", "http://clinic.invalid".into());
    });
    let s = inst.start();
    let mut p = patient("Kaatunut", "Kalle");
    p["telecom"] = json!([{"system": "sms", "value": "+358401111111"}]);
    let pid = s.create(&p).await["id"].as_str().unwrap().to_owned();
    let start = in_hours(4.0);
    let start_ms = time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s.create(&appointment(&pid, &start, "booked")).await["id"].as_str().unwrap().to_owned());
    }
    #[allow(clippy::disallowed_methods)]
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    // ids[0]: crashed 11 minutes ago; ids[1]: claimed a moment ago; ids[2]: already taken over once.
    let marks =
        [format!("claimed:{}", now - 11 * 60_000), format!("claimed:{now}"), format!("retry:{}", now - 3_600_000)];
    let mut conn = inst.db().await;
    for (id, mark) in ids.iter().zip(&marks) {
        sqlx::query(sqlx::AssertSqlSafe(crate::audit::q(
            &inst,
            "INSERT INTO instance_settings (name, value, created_at) VALUES (?, ?, ?)",
        )))
        .bind(format!("reminder:{id}:{start_ms}"))
        .bind(mark.as_bytes().to_vec())
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let said = send(&inst).await;
    assert!(said.contains("1 sent, 0 failed"), "{said}");
    let (_, body) = next(&mut texts, "the re-sent reminder").await;
    assert!(String::from_utf8_lossy(&body).contains("/cancel/"));
    let again = send(&inst).await;
    assert!(again.contains("0 sent"), "{again}");
    assert!(texts.try_recv().is_err(), "re-sent once at most");
    let rows = crate::audit::rows(&inst).await;
    let sent: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.entry).unwrap())
        .filter(|e| e["actor"] == "reminders" && e["action"] == "export")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["resource"], format!("Appointment/{}", ids[0]));
    s.stop();
}
both_backends!(a_crashed_send_is_retried_once_and_a_fresh_claim_left_alone);
