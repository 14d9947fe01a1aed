//! `confidant demo`: a throwaway instance with synthetic patients.

use anyhow::{Context, Result};
use base64::Engine as _;
use confidant_app::Console;
use confidant_app::instance;
use confidant_app::synthetic::synthetic_hetu;
use confidant_fhir::ResourceType;
use confidant_identity::Identity;
use confidant_policy::{Principal, Role};
use confidant_records::Records;
use serde_json::json;

/// Synthetic people; any likeness to real persons is coincidence.
const PATIENTS: &[(&str, &str, &str, &str)] = &[
    ("Aino", "Virtanen", "1985-03-14", "female"),
    ("Eero", "Korhonen", "1990-11-02", "male"),
    ("Helmi", "Mäkinen", "1978-07-21", "female"),
    ("Onni", "Nieminen", "2001-01-30", "male"),
    ("Sofia", "Hämäläinen", "1995-09-09", "female"),
    ("Väinö", "Laine", "1969-05-17", "male"),
];

const CLINICIANS: &[(&str, &str)] = &[("Maria", "Lindqvist"), ("Juhani", "Salo"), ("Kaisa", "Heikkinen")];

const NOTES: &[&str] = &[
    "Initial assessment. Client describes low mood for several months and difficulty sleeping. Agreed on weekly sessions.",
    "Worked on identifying automatic thoughts around work stress. Homework: thought record.",
    "Client reports some improvement. Explored family history; plan to continue CBT.",
];

/// A demo account as printed.
struct DemoUser {
    username: String,
    role: Role,
    password: String,
    totp_secret: Option<String>,
}

fn clinician(user_id: &str, practitioner_id: &str) -> Principal {
    Principal {
        user_id: user_id.into(),
        role: Role::Clinician,
        practitioner_id: Some(practitioner_id.into()),
        patient_id: None,
        scopes: None,
        source: None,
        credential: None,
        training: Default::default(),
    }
}

/// Random demo password: 20 hex characters (never on any common list).
fn demo_password() -> Result<String> {
    Ok(confidant_vault::random_id()?[..20].to_owned())
}

/// `now_secs`: the instance clock's time, for the demo's own TOTP code.
async fn add_user(
    identity: &Identity,
    now_secs: u64,
    users: &mut Vec<DemoUser>,
    username: &str,
    role: Role,
    practitioner: Option<&str>,
    patient: Option<&str>,
) -> Result<String> {
    let password = demo_password()?;
    let id = identity.add_user(username, role, &password, practitioner, patient).await?;
    let mut totp_secret = None;
    if role.is_staff() {
        // Enrol TOTP now, so that every role can log in at once (demo only).
        let e = identity.totp_begin(&id).await?;
        let secret = confidant_vault::totp::TotpSecret::from_bytes(
            &data_encoding::BASE32_NOPAD.decode(e.secret_base32.as_bytes()).context("base32")?,
        );
        identity.totp_confirm(&id, None, &confidant_vault::totp::code_at(&secret, now_secs)).await?;
        totp_secret = Some(e.secret_base32);
    }
    users.push(DemoUser { username: username.into(), role, password, totp_secret });
    Ok(id)
}

/// Synthetic practitioners, users of every role, patients on their
/// clinicians' care teams, encounters and notes. Returns the accounts and
/// an API token of the first clinician.
async fn seed(records: &Records, identity: &Identity) -> Result<(Vec<DemoUser>, String)> {
    let admin = Console::principal();
    let now_secs = u64::try_from(records.now_millis() / 1000).unwrap_or(0);
    let mut users = Vec::new();
    let mut practitioners = Vec::new();
    for (i, (given, family)) in CLINICIANS.iter().enumerate() {
        let p = records
            .create(
                &admin,
                ResourceType::Practitioner,
                json!({"resourceType": "Practitioner", "active": true,
                       "name": [{"family": family, "given": [given], "prefix": ["PsM"]}],
                       "qualification": [{"code": {"coding": [{"system": "urn:confidant:demo:qualification", "code": "psychotherapist"}]}}]}),
            )
            .await?;
        let user_id =
            add_user(identity, now_secs, &mut users, &given.to_lowercase(), Role::Clinician, Some(&p.id), None).await?;
        practitioners.push(clinician(&user_id, &p.id));
        let _ = i;
    }
    let mut first_patient = None;
    for (i, (given, family, birth, gender)) in PATIENTS.iter().enumerate() {
        let by = &practitioners[i % practitioners.len()];
        let pr = by.practitioner_id.clone().unwrap_or_default();
        let patient = records
            .create(
                by,
                ResourceType::Patient,
                json!({
                    "resourceType": "Patient", "active": true,
                    "identifier": [{"system": "urn:oid:1.2.246.21", "value": synthetic_hetu(birth, i)}],
                    "name": [{"family": family, "given": [given]}],
                    "gender": gender, "birthDate": birth,
                    "telecom": [
                        {"system": "phone", "value": format!("+358 40 555 01{i:02}")},
                        {"system": "email", "value": format!("{}.{}@example.invalid", given.to_lowercase(), family.to_lowercase())}
                    ]
                }),
            )
            .await?;
        first_patient.get_or_insert(patient.id.clone());
        records
            .create(
                by,
                ResourceType::Appointment,
                json!({
                    "resourceType": "Appointment", "status": "booked",
                    "start": format!("2026-12-{:02}T{:02}:00:00Z", 1 + i, 9 + i % 6),
                    "end": format!("2026-12-{:02}T{:02}:50:00Z", 1 + i, 9 + i % 6),
                    "participant": [
                        {"actor": {"reference": format!("Patient/{}", patient.id)}, "status": "accepted"},
                        {"actor": {"reference": format!("Practitioner/{pr}")}, "status": "accepted"}
                    ]
                }),
            )
            .await?;
        for (s, note) in NOTES.iter().enumerate().take(1 + i % NOTES.len()) {
            let day = format!("2026-11-{:02}", 2 + 7 * s);
            let enc = records
                .create(
                    by,
                    ResourceType::Encounter,
                    json!({
                        "resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                        "type": [{"text": "Psychotherapy session"}],
                        "subject": {"reference": format!("Patient/{}", patient.id)},
                        "participant": [{"individual": {"reference": format!("Practitioner/{pr}")}}],
                        "period": {"start": format!("{day}T09:00:00Z"), "end": format!("{day}T09:50:00Z")}
                    }),
                )
                .await?;
            // The first note of each patient is shared with them; later ones are
            // the therapist's psychotherapy (process) notes.
            let meta = if s == 0 {
                json!({"tag": [{"system": confidant_fhir::SHARING_SYSTEM, "code": confidant_fhir::SHARED_WITH_PATIENT}]})
            } else {
                json!({"security": [{"system": confidant_fhir::ACT_CODE_SYSTEM, "code": confidant_fhir::PSYCHOTHERAPY_NOTE}]})
            };
            records
                .create(
                    by,
                    ResourceType::DocumentReference,
                    json!({
                        "resourceType": "DocumentReference", "status": "current",
                        "meta": meta,
                        "type": {"text": if s == 0 { "Session summary" } else { "Psychotherapy note" }},
                        "subject": {"reference": format!("Patient/{}", patient.id)},
                        "date": format!("{day}T10:00:00Z"),
                        "content": [{"attachment": {
                            "contentType": "text/plain; charset=utf-8",
                            "data": base64::engine::general_purpose::STANDARD.encode(note)
                        }}],
                        "context": {"encounter": [{"reference": format!("Encounter/{}", enc.id)}]}
                    }),
                )
                .await?;
        }
    }
    add_user(identity, now_secs, &mut users, "admin", Role::Admin, None, None).await?;
    add_user(identity, now_secs, &mut users, "reception", Role::Reception, None, None).await?;
    add_user(identity, now_secs, &mut users, "auditor", Role::Auditor, None, None).await?;
    add_user(identity, now_secs, &mut users, "aino", Role::Patient, None, first_patient.as_deref()).await?;
    let (_, token) = identity.create_api_token("maria", "demo", "user/*.*", 24 * 3_600_000).await?;
    Ok((users, token))
}

pub async fn run(console: &Console, listen: &str) -> Result<()> {
    let tmp =
        tempfile::Builder::new().prefix("confidant-demo-").tempdir().context("cannot create a temporary folder")?;
    let dir = tmp.path().join("data");
    let key_file = tmp.path().join("keys").join("demo.kek");
    let options = instance::InitOptions {
        key_file: Some(key_file.clone()),
        database_url: None,
        passphrase: false,
        token: None,
        honey_records: confidant_detect::Settings::default().honey_records,
    };
    instance::init(console, &dir, options).await?;
    let opened = instance::Instance::open(console, &dir).await?;
    let (users, token) = seed(&opened.records, &opened.identity).await.context("cannot create the synthetic clinic")?;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on localhost")?,
    };
    let url = format!("http://{}", listener.local_addr()?);
    println!("Confidant demo: a throwaway clinic with {} synthetic patients.", PATIENTS.len());
    println!("  web UI:    {url}/   (sign in with an account below)");
    println!("  data:      {} (deleted on exit)", dir.display());
    println!("  key file:  {}", key_file.display());
    println!("  FHIR API:  {url}/fhir/r4");
    println!("  API token: {token}");
    println!("             (acts as clinician maria, scope user/*.*: she sees her own patients only)");
    println!();
    println!("Accounts (demo only: passwords and TOTP secrets are printed here and nowhere else):");
    println!("  {:<10} {:<10} {:<22} TOTP secret (add to an authenticator app)", "username", "role", "password");
    for u in &users {
        println!(
            "  {:<10} {:<10} {:<22} {}",
            u.username,
            u.role.as_str(),
            u.password,
            u.totp_secret.as_deref().unwrap_or("- (patients need none)")
        );
    }
    println!();
    println!("Try:");
    println!("  curl -H 'Authorization: Bearer {token}' '{url}/fhir/r4/Patient?family=virtanen'");
    println!("  curl -H 'Authorization: Bearer {token}' '{url}/fhir/r4/DocumentReference?_count=5'");
    println!(
        "  curl -H 'Content-Type: application/json' -d '{{\"username\":\"reception\",\"password\":\"...\",\"code\":\"<TOTP>\",\"client\":\"bearer\"}}' {url}/api/v1/session"
    );
    println!("Every access above is in the audit log; while the demo runs, check it with:");
    println!("  confidant audit verify --dir {}", dir.display());
    println!("  (as the auditor, or as patient aino for her own access log: GET {url}/fhir/r4/AuditEvent)");
    println!("Press Ctrl-C to stop and delete everything.");
    opened.serve(console, listener, crate::instance::announce).await?;
    drop(tmp);
    println!("Demo stopped; temporary data deleted.");
    Ok(())
}
