//! `confidant import` (issue 19): CSV of patients and appointments, NDJSON and
//! Bundles through the transaction path; a dry run writes nothing; a refused
//! line refuses the whole import, named with its reason; exported search
//! Bundles re-import into a fresh instance; canaries never reach the output,
//! the logs or the files.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::common::{Db, Instance, files_under, note, patient, row_counts, run};
use crate::vastaamo::{canary, hits};

const PATIENTS_HEADER: &str = "identifier_system,identifier_value,family,given,birth_date,gender,phone,email";
const APPOINTMENTS_HEADER: &str = "patient_identifier,practitioner,start,end,status";

fn import(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["import", "--dir", dir.to_str().unwrap(), "--as", "clin1"];
    all.extend_from_slice(args);
    let out = run(&all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn practitioner_of_clin1(inst: &Instance) -> String {
    let out = run(&["user", "list", "--dir", inst.dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("clin1")).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace()
        .find(|w| w.starts_with("Practitioner/"))
        .map(|w| w.trim_start_matches("Practitioner/").to_owned())
        .unwrap_or_else(|| panic!("{line}"))
}

both_backends!(csv_imports_in_one_transaction_after_a_dry_run);
both_backends!(a_malformed_line_refuses_the_whole_import);
both_backends!(exported_search_bundles_reimport_into_a_fresh_instance);

/// Patients and their appointments from CSV: the dry run reports and writes
/// nothing; the import creates them (the clinician on each care team), the
/// appointment refers to its patient; importing again finds the patients.
async fn csv_imports_in_one_transaction_after_a_dry_run(db: Db) {
    let inst = Instance::new(db).await;
    let pr = practitioner_of_clin1(&inst);
    let files = inst.tmp.path();
    let patients = files.join("patients.csv");
    std::fs::write(
        &patients,
        format!(
            "{PATIENTS_HEADER}\nurn:oid:1.2.246.21,010180-123A,Virtanen,Aino Maria,1980-01-01,female,+358401234567,aino@example.org\n\
             urn:oid:1.2.246.21,020290-234B,\"Korhonen, jr\",Eero,1990-02-02,male,,\n"
        ),
    )
    .unwrap();
    let appointments = files.join("appointments.csv");
    std::fs::write(
        &appointments,
        format!(
            "{APPOINTMENTS_HEADER}\nurn:oid:1.2.246.21|010180-123A,{pr},2027-03-01T09:00:00Z,2027-03-01T09:45:00Z,\n"
        ),
    )
    .unwrap();
    let p = patients.to_str().unwrap();
    let a = appointments.to_str().unwrap();
    let before = row_counts(&inst).await;
    let (ok, out, err) = import(&inst.dir, &["--dry-run", p, a]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Would create: 2 Patient, 1 Appointment.") && out.contains("nothing was written"), "{out}");
    assert_eq!(row_counts(&inst).await, before, "a dry run writes nothing");
    let (ok, out, err) = import(&inst.dir, &[p, a]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Created: 2 Patient, 1 Appointment."), "{out}");
    let after = row_counts(&inst).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (5, 5), "2 patients, their care teams, 1 appointment");
    // Again: the patients are found by their identifiers, not duplicated.
    let (ok, out, err) = import(&inst.dir, &[p]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Created: nothing.")
            && out.contains("Already there (matched by identifier, not created again): 2."),
        "{out}"
    );
    // Appointments alone, for patients already stored: found by their identifiers.
    let one_appointment = |name: &str, patient: &str, day: u32| {
        let path = files.join(name);
        let line = format!("urn:oid:1.2.246.21|{patient},{pr},2027-03-{day:02}T09:00:00Z,2027-03-{day:02}T09:45:00Z,");
        std::fs::write(&path, format!("{APPOINTMENTS_HEADER}\n{line}\n")).unwrap();
        path.display().to_string()
    };
    let (ok, out, err) = import(&inst.dir, &[&one_appointment("later.csv", "020290-234B", 2)]);
    assert!(ok && out.contains("Created: 1 Appointment."), "{out}{err}");
    let (ok, out, err) = import(&inst.dir, &[&one_appointment("unknown.csv", "999999-999X", 3)]);
    assert!(!ok && err.contains("unknown.csv, line 2: ") && err.contains("matches no record"), "{out}{err}");
    // The same patient twice in one file: refused, the second line named.
    let twice = files.join("twice.csv");
    std::fs::write(
        &twice,
        format!("{PATIENTS_HEADER}\n,333333-333C,Kaksi,Kertaa,,,,\n,333333-333C,Kaksi,Kertaa,,,,\n"),
    )
    .unwrap();
    let (ok, out, err) = import(&inst.dir, &[twice.to_str().unwrap()]);
    assert!(!ok && err.contains("twice.csv, line 3: ") && err.contains("same conditions"), "{out}{err}");
    let s = inst.start();
    let (st, found) = s.get_json("Patient?identifier=010180-123A").await;
    assert_eq!((st, found["total"].as_i64()), (StatusCode::OK, Some(1)), "{found}");
    let pid = found["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(found["entry"][0]["resource"]["name"][0]["given"], json!(["Aino", "Maria"]));
    let (_, appts) = s.get_json(&format!("Appointment?patient={pid}")).await;
    assert_eq!(appts["total"], 1, "{appts}");
    assert_eq!(appts["entry"][0]["resource"]["participant"][0]["actor"]["reference"], format!("Patient/{pid}"));
    let (_, other) = s.get_json("Patient?identifier=020290-234B").await;
    assert_eq!(other["entry"][0]["resource"]["name"][0]["family"], "Korhonen, jr");
    let other_id = other["entry"][0]["resource"]["id"].as_str().unwrap();
    let (_, later_appts) = s.get_json(&format!("Appointment?patient={other_id}")).await;
    assert_eq!(later_appts["total"], 1, "{later_appts}");
}

/// A malformed NDJSON line, a CSV line with a bad date, a reference to no
/// record of the import: the import is refused with each place and reason,
/// nothing is written, and no canary of the refused files is in the output,
/// the logs or the instance's files — nor that of a record imported.
async fn a_malformed_line_refuses_the_whole_import(db: Db) {
    let inst = Instance::new(db).await;
    let files = inst.tmp.path();
    let (c1, c2, c3) = (canary(), canary(), canary());
    let ndjson = files.join("records.ndjson");
    std::fs::write(
        &ndjson,
        format!(
            "{}\n{{\"resourceType\": \"Patient\", \"name\": [{{\"family\": \"{c1}\"\n{}\n",
            serde_json::to_string(&patient(&c2, "Hyvä")).unwrap(),
            serde_json::to_string(&json!({"resourceType": "Patient", "name": [{}]})).unwrap(),
        ),
    )
    .unwrap();
    let csv = files.join("patients.csv");
    std::fs::write(&csv, format!("{PATIENTS_HEADER}\n,,Hyvä,Rivi,1980-01-01,,,\n,,{c3},Huono,1980-13-45,,,\n"))
        .unwrap();
    let before = row_counts(&inst).await;
    let (ok, out, err) = import(&inst.dir, &[ndjson.to_str().unwrap(), csv.to_str().unwrap()]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("records.ndjson, line 2: not a JSON resource"), "{err}");
    assert!(err.contains("records.ndjson, line 3: "), "{err}");
    assert!(err.contains("patients.csv, line 3: birth_date must be a date"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(row_counts(&inst).await, before, "nothing written");
    // A reference to no record: refused by the transaction, named.
    let dangling = files.join("dangling.ndjson");
    std::fs::write(&dangling, format!("{}\n", serde_json::to_string(&note("nosuchpatient", "x")).unwrap())).unwrap();
    let (ok, out2, err2) = import(&inst.dir, &[dangling.to_str().unwrap()]);
    assert!(!ok && err2.contains("dangling.ndjson, line 1: "), "{out2}{err2}");
    assert_eq!(row_counts(&inst).await, before, "nothing written");
    // A record that is imported: sealed like any other, its canary in no file and no output.
    let c4 = canary();
    let good = files.join("good.ndjson");
    std::fs::write(&good, format!("{}\n", serde_json::to_string(&patient(&c4, "Kanarialintu")).unwrap())).unwrap();
    let (ok, out3, err3) = import(&inst.dir, &[good.to_str().unwrap()]);
    assert!(ok && out3.contains("Created: 1 Patient."), "{out3}{err3}");
    let mut places = vec![
        ("stdout".to_owned(), (out + &out2 + &out3).into_bytes()),
        ("stderr".to_owned(), (err + &err2 + &err3).into_bytes()),
    ];
    for f in files_under(&inst.dir).into_iter().chain(files_under(&inst.logs_dir())) {
        places.push((f.display().to_string(), std::fs::read(&f).unwrap_or_default()));
    }
    let found = hits(&places, &[c1, c2, c3, c4]);
    assert!(found.is_empty(), "{found:?}");
}

/// What a clinician exports through search Bundles (their patients, each
/// patient's notes and appointments) imports into a fresh instance: the same
/// patients and notes, the references pointed at the new ids.
async fn exported_search_bundles_reimport_into_a_fresh_instance(db: Db) {
    let old = Instance::new(db).await;
    let s = old.start();
    let mut ids = Vec::new();
    for (family, text) in [("Vienti", "Ensimmäinen käynti."), ("Siirto", "Toinen potilas.")] {
        let p = s.create(&patient(family, "Testi")).await;
        let pid = p["id"].as_str().unwrap().to_owned();
        s.create(&note(&pid, text)).await;
        ids.push(pid);
    }
    let mut exported = Vec::new();
    let (_, patients) = s.get_json("Patient?_count=100").await;
    exported.push(patients);
    for pid in &ids {
        let (_, notes) = s.get_json(&format!("DocumentReference?patient={pid}")).await;
        exported.push(notes);
    }
    drop(s);
    let new = Instance::new(db).await;
    let mut files = Vec::new();
    for (i, b) in exported.iter().enumerate() {
        let f = new.tmp.path().join(format!("export-{i}.json"));
        std::fs::write(&f, serde_json::to_vec(b).unwrap()).unwrap();
        files.push(f.display().to_string());
    }
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (ok, out, err) = import(&new.dir, &args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Created: 2 Patient, 2 DocumentReference."), "{out}");
    let s = new.start();
    let (_, patients) = s.get_json("Patient?_count=100").await;
    assert_eq!(patients["total"], 2, "{patients}");
    let mut texts = Vec::new();
    for e in patients["entry"].as_array().unwrap() {
        let pid = e["resource"]["id"].as_str().unwrap();
        assert!(!ids.contains(&pid.to_owned()), "new ids");
        let (_, notes) = s.get_json(&format!("DocumentReference?patient={pid}")).await;
        assert_eq!(notes["total"], 1, "{notes}");
        let n: &Value = &notes["entry"][0]["resource"];
        assert_eq!(n["subject"]["reference"], format!("Patient/{pid}"));
        texts.push(n["content"][0]["attachment"]["data"].as_str().unwrap().to_owned());
    }
    let mut expected: Vec<String> = exported[1..]
        .iter()
        .map(|b| b["entry"][0]["resource"]["content"][0]["attachment"]["data"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    texts.sort();
    assert_eq!(texts, expected);
}

both_backends!(everything_exports_reimport_into_a_fresh_instance);

/// What a patient's `$everything` (the same Bundle as the portal's "download my
/// data") holds re-imports: the Patient and their notes, with new ids and the
/// references between them kept. What another instance's ids alone name (its
/// care team's Practitioner) is reported, not silently carried over.
async fn everything_exports_reimport_into_a_fresh_instance(db: Db) {
    let old = Instance::new(db).await;
    let s = old.start();
    let p = s.create(&patient("Kaikki", "Testi")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    for text in ["Ensimmäinen käynti.", "Toinen käynti."] {
        s.create(&note(&pid, text)).await;
    }
    let (status, everything) = s.get_json(&format!("Patient/{pid}/$everything")).await;
    assert_eq!(status, StatusCode::OK, "{everything}");
    let types: Vec<&str> = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"Patient") && types.iter().filter(|t| **t == "DocumentReference").count() == 2,
        "{types:?}"
    );
    drop(s);
    let new = Instance::new(db).await;
    let f = new.tmp.path().join("everything.json");
    std::fs::write(&f, serde_json::to_vec(&everything).unwrap()).unwrap();
    let (ok, out, err) = import(&new.dir, &["--dry-run", f.to_str().unwrap()]);
    assert!(ok, "the dry run of an exported $everything: {out}{err}");
    let (ok, out, err) = import(&new.dir, &[f.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 Patient") && out.contains("2 DocumentReference"), "{out}");
    let s = new.start();
    let (_, patients) = s.get_json("Patient?_count=100").await;
    assert_eq!(patients["total"], 1, "{patients}");
    let new_pid = patients["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_pid, pid, "a new id");
    let (_, again) = s.get_json(&format!("Patient/{new_pid}/$everything")).await;
    let mut texts: Vec<String> = again["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "DocumentReference")
        .map(|e| {
            assert_eq!(e["resource"]["subject"]["reference"], format!("Patient/{new_pid}"));
            e["resource"]["content"][0]["attachment"]["data"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut expected: Vec<String> = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "DocumentReference")
        .map(|e| e["resource"]["content"][0]["attachment"]["data"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    expected.sort();
    assert_eq!(texts, expected, "the notes came across whole");
}
