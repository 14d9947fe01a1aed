//! The calendar (issue 15): series booked on the right local dates across a
//! DST change (Europe/Helsinki, 28 March 2027), double bookings refused with
//! 409 and nothing written (also two at once), cancel one or the rest,
//! no-show, reschedule one or the rest, the day and week pages of a clinician
//! and of reception (no clinical link), wrong role, wrong clinician, no
//! session and hostile input.

use reqwest::StatusCode as S;
use serde_json::Value;

use crate::both_backends;
use crate::common::{Db, Instance, Server, add_user, create_token, patient};
use crate::ui::Browser;

/// The value of the `<option>` whose text is `name`.
fn option_value(html: &str, name: &str) -> String {
    let before = html.split(&format!(">{name}</option>")).next().unwrap();
    before.rsplit("<option value=\"").next().unwrap().split('"').next().unwrap().to_owned()
}

/// A patient's appointments (FHIR search with an API token), soonest first.
async fn appointments(s: &Server, token: &str, patient: &str) -> Vec<Value> {
    let r = s.http.get(s.fhir(&format!("Appointment?patient={patient}&_count=100"))).bearer_auth(token).send().await;
    let b: Value = r.unwrap().json().await.unwrap();
    let mut list: Vec<Value> =
        b["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect();
    list.sort_by(|a, b| a["start"].as_str().cmp(&b["start"].as_str()));
    list
}

fn starts(list: &[Value]) -> Vec<String> {
    list.iter().map(|a| a["start"].as_str().unwrap()[..16].to_owned()).collect()
}

fn statuses(list: &[Value]) -> Vec<&str> {
    list.iter().map(|a| a["status"].as_str().unwrap()).collect()
}

async fn calendar(db: Db) {
    let inst = Instance::new(db).await;
    inst.configure(|t| Instance::set(t, "clinic", "time_zone", "Europe/Helsinki".into()));
    add_user(&inst.dir, "desk", "reception", &[]);
    add_user(&inst.dir, "clin2", "clinician", &["--name", "Second Clinician"]);
    add_user(&inst.dir, "audi", "auditor", &[]);
    let desk_token = create_token(&inst.dir, "desk", "user/*.*");
    let auditor = create_token(&inst.dir, "audi", "user/*.read");
    let s = inst.start();
    let aino = s.create(&patient("Calendarperson", "Aino")).await["id"].as_str().unwrap().to_owned();
    let bert = s.create(&patient("Otherperson", "Bert")).await["id"].as_str().unwrap().to_owned();
    let cilla = s.create(&patient("Thirdperson", "Cilla")).await["id"].as_str().unwrap().to_owned();
    add_user(&inst.dir, "ulla", "patient", &["--patient", &aino]);
    let desk = Browser::sign_in(&s, "desk").await;
    let clin1 = Browser::sign_in(&s, "clin1").await;
    let clin2 = Browser::sign_in(&s, "clin2").await;
    let page = desk.get(&format!("/patients/{aino}")).await.text().await.unwrap();
    let pr1 = option_value(&page, "Test Clinician").trim_start_matches("Practitioner/").to_owned();
    let pr2 = option_value(&page, "Second Clinician").trim_start_matches("Practitioner/").to_owned();
    assert!(page.contains("Time (clinic time)") && page.contains("Every two weeks"), "{page}");
    let book = |patient: &str, fields: &str| {
        let path = format!("/patients/{patient}/appointments");
        let body = format!("practitioner=Practitioner/{pr1}&{fields}");
        let desk = &desk;
        async move { desk.post(&path, &body).await }
    };

    // Six weekly sessions from Monday 15 March 2027, 10:00 Helsinki time: the clocks go
    // forward on 28 March, so the first two are at 08:00 UTC and the rest at 07:00 UTC.
    let r = book(&aino, "date=2027-03-15&time=10:00&kind=session&length=60&repeat=weekly&count=6").await;
    let st = r.status();
    assert_eq!(st, S::SEE_OTHER, "{}", r.text().await.unwrap());
    let list = appointments(&s, &desk_token, &aino).await;
    assert_eq!(
        starts(&list),
        [
            "2027-03-15T08:00",
            "2027-03-22T08:00",
            "2027-03-29T07:00",
            "2027-04-05T07:00",
            "2027-04-12T07:00",
            "2027-04-19T07:00"
        ]
    );
    let series = list[0]["identifier"][0]["value"].as_str().unwrap().to_owned();
    for a in &list {
        assert_eq!(a["identifier"][0]["system"], "urn:confidant:series");
        assert_eq!(a["identifier"][0]["value"], series.as_str());
        assert_eq!(a["minutesDuration"], 60);
        assert_eq!(a["appointmentType"]["coding"][0]["code"], "session");
        assert_eq!(a["status"], "booked");
    }
    let ids: Vec<String> = list.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    // Found by practitioner and by series through the FHIR API.
    let found = |q: String| {
        let s = &s;
        let t = desk_token.clone();
        async move {
            let b: Value = s.http.get(s.fhir(&q)).bearer_auth(t).send().await.unwrap().json().await.unwrap();
            b["total"].as_i64().unwrap()
        }
    };
    assert_eq!(found(format!("Appointment?practitioner=Practitioner/{pr1}")).await, 6);
    assert_eq!(found(format!("Appointment?practitioner={pr2}")).await, 0);
    assert_eq!(found(format!("Appointment?identifier=urn:confidant:series|{series}")).await, 6);
    // By date: the practitioner's appointments overlapping the range.
    let week = format!("Appointment?practitioner=Practitioner/{pr1}&date=ge2027-03-20&date=lt2027-04-01");
    assert_eq!(found(week).await, 2);
    assert_eq!(found(format!("Appointment?practitioner={pr1}&date=ge2027-03-15T08:30:00Z&date=lt2027-03-16")).await, 1);
    for bad in [
        "Appointment?date=ge2027-03-20&date=lt2027-04-01".to_owned(),
        format!("Appointment?practitioner={pr1}&date=ge2027-03-20"),
        format!("Appointment?practitioner={pr1}&date=ge2027-01-01&date=lt2027-12-31"),
        format!("Appointment?practitioner={pr1}&date=soon&date=lt2027-04-01"),
        format!("Appointment?practitioner={pr1}&patient={aino}&date=ge2027-03-20&date=lt2027-04-01"),
    ] {
        let r = s.http.get(s.fhir(&bad)).bearer_auth(&desk_token).send().await.unwrap();
        assert_eq!(r.status(), S::BAD_REQUEST, "{bad}");
    }
    let clin2_token = create_token(&inst.dir, "clin2", "user/*.*");
    let r = s.http.get(s.fhir(&format!("Appointment?practitioner={pr1}&date=ge2027-03-20&date=lt2027-04-01")));
    assert_eq!(
        r.bearer_auth(&clin2_token).send().await.unwrap().status(),
        S::FORBIDDEN,
        "another clinician's calendar"
    );

    // Every two weeks until a date: 18 October, then 1 and 15 November 2027 (after the clocks go back on 31 October).
    let r = book(&bert, "date=2027-10-18&time=09:00&kind=follow-up&length=45&repeat=biweekly&until=2027-11-15").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let b = appointments(&s, &desk_token, &bert).await;
    assert_eq!(starts(&b), ["2027-10-18T06:00", "2027-11-01T07:00", "2027-11-15T07:00"]);
    assert_eq!(b[0]["end"].as_str().unwrap()[..16], *"2027-10-18T06:45");

    // A double booking: refused with 409, the clash's local time named (not the other patient),
    // the typed values kept, nothing written. A series with one clash is refused whole.
    let r = book(&bert, "date=2027-03-22&time=10:30&length=60").await;
    assert_eq!(r.status(), S::CONFLICT);
    let text = r.text().await.unwrap();
    assert!(text.contains("already has an appointment at 2027-03-22 10:00"), "{text}");
    assert!(!text.contains("Calendarperson") && !text.contains("Aino"), "the other patient is not named");
    assert!(text.contains("id=\"time-error\"") && text.contains("value=\"10:30\""), "{text}");
    let r = book(&bert, "date=2027-03-08&time=10:30&repeat=weekly&count=3").await;
    assert_eq!(r.status(), S::CONFLICT);
    assert_eq!(appointments(&s, &desk_token, &bert).await.len(), 3, "nothing written");
    // Adjacent is no clash; another clinician at the same time is none either.
    assert_eq!(book(&bert, "date=2027-03-22&time=11:00&length=45").await.status(), S::SEE_OTHER);
    let other = format!("practitioner=Practitioner/{pr2}&date=2027-03-22&time=10:00");
    assert_eq!(desk.post(&format!("/patients/{cilla}/appointments"), &other).await.status(), S::SEE_OTHER);
    // Two bookings of the same time at once: exactly one is booked.
    let (r1, r2) = tokio::join!(book(&cilla, "date=2027-05-03&time=14:00"), book(&bert, "date=2027-05-03&time=14:30"));
    let mut got = [r1.status(), r2.status()];
    got.sort();
    assert_eq!(got, [S::SEE_OTHER, S::CONFLICT], "one of two concurrent bookings");
    assert_eq!(found(format!("Appointment?practitioner={pr1}")).await, 6 + 3 + 1 + 1);

    let cilla_before = appointments(&s, &desk_token, &cilla).await.len();
    // Hostile or wrong input: 400, the error next to its field, the values kept, nothing written.
    for (fields, field) in [
        ("date=2027-06-01&time=10:00&repeat=weekly&count=0", "count"),
        ("date=2027-06-01&time=10:00&repeat=weekly&count=1000", "count"),
        ("date=2027-06-01&time=10:00&repeat=weekly&count=-1", "count"),
        ("date=2027-06-01&time=10:00&repeat=weekly", "count"),
        ("date=2027-06-01&time=10:00&repeat=bogus&count=2", "repeat"),
        ("date=2027-06-01&time=10:00&repeat=weekly&until=2027-05-01", "until"),
        ("date=2027-06-01&time=10:00&repeat=weekly&until=2029-01-01", "until"),
        ("date=2027-02-30&time=10:00", "date"),
        ("date=yesterday&time=10:00", "date"),
        ("date=2027-06-01&time=25:99", "time"),
        ("date=2027-06-01&time=10:00&length=50", "length"),
        ("date=2027-06-01&time=10:00&kind=%3Cscript%3E", "kind"),
    ] {
        let r = book(&cilla, fields).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{fields}");
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!("id=\"{field}-error\"")), "{fields}: {text}");
        assert!(text.contains("value=\"2027-06-01\"") || field == "date", "typed values kept: {fields}");
        assert!(!text.contains("<script>"), "{fields}");
    }
    assert!(
        book(&cilla, "date=2027-06-01&time=10:00&repeat=weekly&count=1000")
            .await
            .text()
            .await
            .unwrap()
            .contains("value=\"1000\"")
    );
    let fi = desk.in_language("fi");
    let r = fi
        .post(
            &format!("/patients/{cilla}/appointments"),
            &format!("practitioner=Practitioner/{pr1}&date=2027-06-01&time=10:00&repeat=weekly&count=0"),
        )
        .await;
    assert!(r.text().await.unwrap().contains("Sarjassa on 1–52 aikaa."), "Finnish error");
    assert_eq!(appointments(&s, &desk_token, &cilla).await.len(), cilla_before, "nothing written");

    // The calendar pages. The clinician's day: the name linked to the chart, time, length, type, status.
    let day = clin1.get("/calendar?view=day&date=2027-03-29").await;
    assert_eq!(day.status(), S::OK);
    let day = day.text().await.unwrap();
    assert!(day.contains("Aino Calendarperson") && day.contains(&format!("href=\"/patients/{aino}\"")), "{day}");
    assert!(day.contains("10:00–11:00") && day.contains("60 min") && day.contains("Therapy session"), "{day}");
    assert!(day.contains("booked") && day.contains("Europe/Helsinki"), "{day}");
    assert!(!day.contains("Otherperson"), "only that day");
    // The week of Wednesday 24 March: Monday 22nd's two appointments, the grid of seven days.
    let week = clin1.get("/calendar?view=week&date=2027-03-24").await.text().await.unwrap();
    assert!(week.contains("Monday 2027-03-22") && week.contains("Sunday 2027-03-28"), "{week}");
    assert!(week.contains("10:00–11:00") && week.contains("11:00–11:45") && week.contains("Bert Otherperson"));
    assert!(!week.contains("Monday 2027-03-29") && !week.contains("Sunday 2027-03-21"), "that week only");
    assert!(
        clin1
            .in_language("fi")
            .get("/calendar?view=week&date=2027-03-24")
            .await
            .text()
            .await
            .unwrap()
            .contains("maanantai 2027-03-22")
    );
    // My schedule is the calendar, today.
    let mine = clin1.get("/schedule").await;
    assert_eq!(mine.status(), S::OK);
    assert!(mine.text().await.unwrap().contains("calendar-nav"));
    // Reception: every clinician, or one; names link to the reception view; nothing clinical.
    let all = desk.get("/calendar?view=week&date=2027-03-22").await.text().await.unwrap();
    assert!(all.contains("Aino Calendarperson") && all.contains("Cilla Thirdperson"), "{all}");
    assert!(all.contains(&format!("href=\"/patients/{aino}\"")) && !all.contains("/notes"), "{all}");
    let one = desk.get(&format!("/calendar?view=week&date=2027-03-22&clinician={pr2}")).await.text().await.unwrap();
    assert!(one.contains("Cilla Thirdperson") && !one.contains("Aino Calendarperson"), "{one}");
    // Clinician B sees their own calendar, never A's (not even by asking for it).
    let b_day = clin2.get("/calendar?view=week&date=2027-03-22").await.text().await.unwrap();
    assert!(b_day.contains("Cilla Thirdperson") && !b_day.contains("Calendarperson"), "{b_day}");
    let r = clin2.get(&format!("/calendar?view=week&date=2027-03-22&clinician={pr1}")).await;
    assert_eq!(r.status(), S::FORBIDDEN);
    assert!(!r.text().await.unwrap().contains("Calendarperson"));
    // Wrong role, no session, bad input.
    let admin = Browser::sign_in(&s, "admin1").await;
    for who in ["audi", "admin1", "ulla"] {
        let signed_in = if who == "admin1" { None } else { Some(Browser::sign_in(&s, who).await) };
        let b = signed_in.as_ref().unwrap_or(&admin);
        let r = b.get("/calendar?view=day&date=2027-03-29").await;
        assert_eq!(r.status(), S::FORBIDDEN, "{who}");
        assert!(!r.text().await.unwrap().contains("Calendarperson"), "{who}");
        let r = b.post(&format!("/appointments/{}/cancel", ids[0]), "reason=pat").await;
        assert_eq!(r.status(), S::FORBIDDEN, "{who} cancels");
    }
    let r = Browser::anonymous(&s).await.get("/calendar").await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (S::SEE_OTHER, "/login"));
    for q in ["view=month", "date=2027-13-45", "date=%3Cscript%3E", "view=day&date=2027-03-29&clinician=nosuch"] {
        let r = desk.get(&format!("/calendar?{q}")).await;
        assert_eq!(r.status(), S::BAD_REQUEST, "{q}");
        assert!(!r.text().await.unwrap().contains("<script>"));
    }

    // Cancel one (a coded reason), then the rest of the series from the fifth.
    let cancel = |id: &str, form: &str| {
        let path = format!("/appointments/{id}/cancel");
        let body = format!("back=/calendar?view=day%26date=2027-03-22&{form}");
        let desk = &desk;
        async move { desk.post(&path, &body).await }
    };
    for bad in ["reason=bogus", "reason=pat&which=bogus", "reason="] {
        assert_eq!(cancel(&ids[1], bad).await.status(), S::BAD_REQUEST, "{bad}");
    }
    assert_eq!(cancel("nosuch", "reason=pat").await.status(), S::NOT_FOUND);
    assert_eq!(statuses(&appointments(&s, &desk_token, &aino).await), ["booked"; 6], "nothing changed");
    let r = cancel(&ids[1], "reason=pat&which=one").await;
    assert_eq!(r.status(), S::SEE_OTHER);
    assert_eq!(r.headers()["location"].to_str().unwrap(), "/calendar?view=day&date=2027-03-22");
    let list = appointments(&s, &desk_token, &aino).await;
    assert_eq!(statuses(&list), ["booked", "cancelled", "booked", "booked", "booked", "booked"]);
    assert_eq!(list[1]["cancelationReason"]["coding"][0]["code"], "pat");
    assert_eq!(
        list[1]["cancelationReason"]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
    );
    // A cancelled time is free again.
    assert_eq!(book(&cilla, "date=2027-03-22&time=10:00&length=60").await.status(), S::SEE_OTHER);
    assert_eq!(cancel(&ids[4], "reason=prov&which=rest").await.status(), S::SEE_OTHER);
    let list = appointments(&s, &desk_token, &aino).await;
    assert_eq!(statuses(&list), ["booked", "cancelled", "booked", "booked", "cancelled", "cancelled"]);
    assert_eq!(cancel(&ids[4], "reason=pat").await.status(), S::BAD_REQUEST, "already cancelled");
    // A clinician changes only their own calendar: clin2 cannot touch clin1's appointments.
    assert_eq!(clin2.post(&format!("/appointments/{}/cancel", ids[0]), "reason=pat").await.status(), S::NOT_FOUND);

    // Reschedule one: the third to Tuesday 30 March 09:00 (07:00 in summer time, UTC 06:00).
    let move_to = |id: &str, form: &str| {
        let path = format!("/appointments/{id}/reschedule");
        let body = form.to_owned();
        let clin1 = &clin1;
        async move { clin1.post(&path, &body).await }
    };
    assert_eq!(move_to(&ids[2], "date=2027-03-30&time=09:00").await.status(), S::SEE_OTHER);
    let list = appointments(&s, &desk_token, &aino).await;
    let a3 = list.iter().find(|a| a["id"] == ids[2].as_str()).unwrap();
    assert_eq!(a3["start"].as_str().unwrap()[..16], *"2027-03-30T06:00");
    assert_eq!(a3["end"].as_str().unwrap()[..16], *"2027-03-30T07:00");
    // Reschedule the rest from the first: a day later at 12:00 each (local, across the change).
    assert_eq!(move_to(&ids[0], "date=2027-03-16&time=12:00&which=rest").await.status(), S::SEE_OTHER);
    let list = appointments(&s, &desk_token, &aino).await;
    let booked: Vec<String> = list
        .iter()
        .filter(|a| a["status"] == "booked")
        .map(|a| a["start"].as_str().unwrap()[..16].to_owned())
        .collect();
    assert_eq!(booked, ["2027-03-16T10:00", "2027-03-31T09:00", "2027-04-06T09:00"]);
    // Onto a booked time: 409, nothing moved; bad input: 400.
    let r = move_to(&ids[0], "date=2027-03-22&time=10:30").await;
    assert_eq!(r.status(), S::CONFLICT);
    assert!(r.text().await.unwrap().contains("2027-03-22 10:00"));
    for bad in ["date=2027-02-30&time=10:00", "date=2027-03-16&time=10", "date=2027-03-16&time=10:00&which=all"] {
        assert_eq!(move_to(&ids[0], bad).await.status(), S::BAD_REQUEST, "{bad}");
    }
    let again = appointments(&s, &desk_token, &aino).await;
    assert_eq!(starts(&again), starts(&list), "nothing moved");

    // No-show: only once it has started (a past booking), and only a booked one.
    assert_eq!(book(&cilla, "date=2026-11-02&time=10:00").await.status(), S::SEE_OTHER);
    let past = appointments(&s, &desk_token, &cilla).await;
    let past_id = past[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(past[0]["start"].as_str().unwrap()[..10], *"2026-11-02");
    let r = clin1.post(&format!("/appointments/{}/no-show", ids[0]), "").await;
    assert_eq!(r.status(), S::BAD_REQUEST, "not started yet");
    assert_eq!(clin1.post(&format!("/appointments/{past_id}/no-show"), "").await.status(), S::SEE_OTHER);
    let past = appointments(&s, &desk_token, &cilla).await;
    assert_eq!(past[0]["status"], "noshow");
    assert_eq!(clin1.post(&format!("/appointments/{past_id}/no-show"), "").await.status(), S::BAD_REQUEST);
    // Without the CSRF token: refused, nothing changed.
    let r = clin1.post_raw(&format!("/appointments/{}/cancel", ids[0]), "reason=pat").await;
    assert_eq!(r.status(), S::FORBIDDEN);
    assert_eq!(appointments(&s, &desk_token, &aino).await[0]["status"], "booked");

    // The FHIR API refuses a double booking too (create and update), 409 with an OperationOutcome;
    // an update that keeps its own time is no clash with itself.
    let clash = serde_json::json!({"resourceType": "Appointment", "status": "booked",
        "start": "2027-03-16T10:15:00Z", "end": "2027-03-16T10:45:00Z",
        "participant": [{"actor": {"reference": format!("Patient/{bert}")}, "status": "accepted"},
                        {"actor": {"reference": format!("Practitioner/{pr1}")}, "status": "accepted"}]});
    let bert_before = appointments(&s, &desk_token, &bert).await.len();
    let r = s.http.post(s.fhir("Appointment")).bearer_auth(&desk_token).json(&clash).send().await.unwrap();
    assert_eq!(r.status(), S::CONFLICT);
    let outcome: Value = r.json().await.unwrap();
    assert!(
        outcome.to_string().contains("double booking") && !outcome.to_string().contains("Calendarperson"),
        "{outcome}"
    );
    let mut first = appointments(&s, &desk_token, &aino).await[0].clone();
    let path = s.fhir(&format!("Appointment/{}", first["id"].as_str().unwrap()));
    let r = s.http.put(&path).bearer_auth(&desk_token).json(&first).send().await.unwrap();
    assert_eq!(r.status(), S::OK, "its own time");
    first["start"] = "2027-03-22T08:30:00Z".into();
    first["end"] = "2027-03-22T09:00:00Z".into();
    let r = s.http.put(&path).bearer_auth(&desk_token).json(&first).send().await.unwrap();
    assert_eq!(r.status(), S::CONFLICT, "moved onto another booking");
    assert_eq!(appointments(&s, &desk_token, &bert).await.len(), bert_before, "nothing written");

    // Working hours (a FHIR Schedule per clinician): the admin sets them; wrong role, no CSRF
    // token and hostile input change nothing.
    let page = admin.get("/admin/hours").await;
    assert_eq!(page.status(), S::OK);
    assert!(page.text().await.unwrap().contains("Test Clinician"));
    for b in [&desk, &clin1] {
        assert_eq!(b.get("/admin/hours").await.status(), S::FORBIDDEN);
        let r = b.post("/admin/hours", &format!("practitioner={pr1}&mon_start=08:00&mon_end=16:00")).await;
        assert_eq!(r.status(), S::FORBIDDEN);
    }
    let hours = format!("practitioner={pr1}&mon_start=08:00&mon_end=16:00&tue_start=08:00&tue_end=12:00");
    assert_eq!(admin.post_raw("/admin/hours", &hours).await.status(), S::FORBIDDEN, "no CSRF token");
    for bad in [
        format!("practitioner={pr1}&mon_start=16:00&mon_end=08:00"),
        format!("practitioner={pr1}&mon_start=08:00"),
        format!("practitioner={pr1}&mon_start=8&mon_end=16:00"),
        "practitioner=nosuch&mon_start=08:00&mon_end=16:00".to_owned(),
    ] {
        assert_eq!(admin.post("/admin/hours", &bad).await.status(), S::BAD_REQUEST, "{bad}");
    }
    assert_eq!(found(format!("Schedule?actor=Practitioner/{pr1}")).await, 0, "nothing saved");
    assert_eq!(
        admin.post("/admin/hours", &format!("practitioner={pr1}&mon_start=09:00&mon_end=10:00")).await.status(),
        S::SEE_OTHER
    );
    assert_eq!(admin.post("/admin/hours", &hours).await.status(), S::SEE_OTHER, "saved again: updated");
    assert_eq!(found(format!("Schedule?actor=Practitioner/{pr1}")).await, 1);
    assert_eq!(found(format!("Schedule?actor={pr2}")).await, 0);
    // The calendar shows them: Tuesday's 12:00 appointment is outside, Wednesday is no working day.
    let tue = clin1.get("/calendar?view=day&date=2027-03-16").await.text().await.unwrap();
    assert!(tue.contains("Working hours: 08:00–12:00") && tue.contains("Outside working hours"), "{tue}");
    let wed = clin1.get("/calendar?view=day&date=2027-03-17").await.text().await.unwrap();
    assert!(wed.contains("No working hours this day."), "{wed}");
    // Booking outside them asks first (nothing booked), then books when confirmed; inside, at once.
    let before = appointments(&s, &desk_token, &cilla).await.len();
    let r = book(&cilla, "date=2027-06-07&time=17:00").await;
    assert_eq!(r.status(), S::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("2027-06-07 17:00 is outside this clinician's working hours") && text.contains("Book anyway"),
        "{text}"
    );
    assert_eq!(appointments(&s, &desk_token, &cilla).await.len(), before, "nothing booked yet");
    assert_eq!(book(&cilla, "date=2027-06-07&time=17:00&confirm=yes").await.status(), S::SEE_OTHER);
    assert_eq!(book(&cilla, "date=2027-06-07&time=09:00").await.status(), S::SEE_OTHER);
    assert_eq!(appointments(&s, &desk_token, &cilla).await.len(), before + 2);

    // The calendar's reads are audited: reception's week view shows in the patient's access log.
    let log: Value = s
        .http
        .get(s.fhir(&format!("AuditEvent?patient={aino}")))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hits = log["entry"].as_array().unwrap().iter().filter(|e| e.to_string().contains("search-hit")).count();
    assert!(hits > 5, "{log}");
    s.stop();
}
both_backends!(calendar);
