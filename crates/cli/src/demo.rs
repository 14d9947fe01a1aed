//! `confidant demo`: a throwaway instance with synthetic patients.

use anyhow::{Context, Result};
use base64::Engine as _;
use confidant_fhir::ResourceType;
use confidant_records::Records;
use serde_json::json;

use crate::instance;

/// Synthetic people; any likeness to real persons is coincidence.
const PATIENTS: &[(&str, &str, &str, &str)] = &[
    ("Aino", "Virtanen", "1985-03-14", "female"),
    ("Eero", "Korhonen", "1990-11-02", "male"),
    ("Helmi", "Mäkinen", "1978-07-21", "female"),
    ("Onni", "Nieminen", "2001-01-30", "male"),
    ("Sofia", "Hämäläinen", "1995-09-09", "female"),
    ("Väinö", "Laine", "1969-05-17", "male"),
];

const CLINICIANS: &[(&str, &str)] = &[
    ("Maria", "Lindqvist"),
    ("Juhani", "Salo"),
    ("Kaisa", "Heikkinen"),
];

const NOTES: &[&str] = &[
    "Initial assessment. Client describes low mood for several months and difficulty sleeping. Agreed on weekly sessions.",
    "Worked on identifying automatic thoughts around work stress. Homework: thought record.",
    "Client reports some improvement. Explored family history; plan to continue CBT.",
];

/// A synthetic Finnish personal identity code with a valid check character,
/// from the 900–999 individual-number range used for test identities.
fn synthetic_hetu(birth: &str, n: usize) -> String {
    const CHECK: &[u8] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
    let (y, rest) = birth.split_at(4);
    let (m, d) = (&rest[1..3], &rest[4..6]);
    let individual = 900 + n;
    let digits = format!("{d}{m}{}{individual}", &y[2..]);
    let number: u64 = digits.parse().unwrap_or(0);
    let sep = if y.starts_with("19") { '-' } else { 'A' };
    format!(
        "{d}{m}{}{sep}{individual}{}",
        &y[2..],
        CHECK[(number % 31) as usize] as char
    )
}

async fn seed(records: &Records) -> Result<()> {
    let mut practitioners = Vec::new();
    for (given, family) in CLINICIANS {
        let p = records
            .create(
                ResourceType::Practitioner,
                json!({"resourceType": "Practitioner", "active": true,
                       "name": [{"family": family, "given": [given], "prefix": ["PsM"]}],
                       "qualification": [{"code": {"text": "Licensed psychotherapist"}}]}),
            )
            .await?;
        practitioners.push(p.id);
    }
    for (i, (given, family, birth, gender)) in PATIENTS.iter().enumerate() {
        let patient = records
            .create(
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
        let clinician = &practitioners[i % practitioners.len()];
        for (s, note) in NOTES.iter().enumerate().take(1 + i % NOTES.len()) {
            let day = format!("2026-11-{:02}", 2 + 7 * s);
            let enc = records
                .create(
                    ResourceType::Encounter,
                    json!({
                        "resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                        "type": [{"text": "Psychotherapy session"}],
                        "subject": {"reference": format!("Patient/{}", patient.id)},
                        "participant": [{"individual": {"reference": format!("Practitioner/{clinician}")}}],
                        "period": {"start": format!("{day}T09:00:00Z"), "end": format!("{day}T09:50:00Z")}
                    }),
                )
                .await?;
            records
                .create(
                    ResourceType::DocumentReference,
                    json!({
                        "resourceType": "DocumentReference", "status": "current",
                        "type": {"text": "Session note"},
                        "subject": {"reference": format!("Patient/{}", patient.id)},
                        "date": format!("{day}T10:00:00Z"),
                        "author": [{"reference": format!("Practitioner/{clinician}")}],
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
    Ok(())
}

pub async fn run(listen: &str) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("confidant-demo-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let dir = tmp.path().join("data");
    let key_file = tmp.path().join("keys").join("demo.kek");
    instance::init_quiet(&dir, Some(key_file.clone()), None).await?;
    let (config, records) = instance::open(&dir).await?;
    seed(&records)
        .await
        .context("cannot create the synthetic patients")?;
    let (_, token) = instance::create_token(records.store(), "demo").await?;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on localhost")?,
    };
    let url = format!("http://{}", listener.local_addr()?);
    println!(
        "Confidant demo: a throwaway instance with {} synthetic patients.",
        PATIENTS.len()
    );
    println!("  data:      {} (deleted on exit)", dir.display());
    println!("  key file:  {}", key_file.display());
    println!("  FHIR API:  {url}/fhir/r4");
    println!("  API token: {token}");
    println!();
    println!("Try:");
    println!("  curl -H 'Authorization: Bearer {token}' '{url}/fhir/r4/Patient?family=virtanen'");
    println!(
        "  curl -H 'Authorization: Bearer {token}' '{url}/fhir/r4/DocumentReference?_count=5'"
    );
    println!("Press Ctrl-C to stop and delete everything.");
    instance::run_server(&config, records, listener).await?;
    drop(tmp);
    println!("Demo stopped; temporary data deleted.");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hetu_check_character() {
        // 131052-308T is the public example code of the Finnish Digital Agency.
        let code = super::synthetic_hetu("1952-10-13", 0);
        assert_eq!(code.len(), 11);
        assert!(code.starts_with("131052-900"));
        let number: u64 = "131052308".parse().unwrap_or(0);
        assert_eq!(
            b"0123456789ABCDEFHJKLMNPRSTUVWXY"[(number % 31) as usize],
            b'T'
        );
    }
}
