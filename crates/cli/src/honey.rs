//! Honey records: synthetic patients planted by `init` (and `honey plant`),
//! shaped like a clinic's real ones — demographics, a few sessions, notes —
//! and sealed like them. Which patients they are is sealed too; the detector
//! alerts on any touch (see confidant-detect).

use anyhow::{Context, Result};
use base64::Engine as _;
use confidant_fhir::ResourceType;
use confidant_records::Records;
use serde_json::{Value, json};

const GIVEN_F: &[&str] =
    &["Kerttu", "Iida", "Elina", "Hanna", "Maija", "Saara", "Linnea", "Tuulikki", "Riikka", "Ella"];
const GIVEN_M: &[&str] =
    &["Arvo", "Jaakko", "Mikael", "Teemu", "Ilmari", "Ossi", "Santeri", "Pekka", "Rasmus", "Lauri"];
const FAMILY: &[&str] = &[
    "Saarinen",
    "Kivelä",
    "Ahonen",
    "Rautio",
    "Lehtola",
    "Honkanen",
    "Vainio",
    "Peltonen",
    "Ruotsalainen",
    "Kettunen",
    "Lindholm",
    "Aaltonen",
];
const OPENINGS: &[&str] = &[
    "Client arrived on time and engaged well.",
    "Session held as planned.",
    "Client reports a difficult week.",
    "Follow-up session.",
];
const BODIES: &[&str] = &[
    "We discussed sleep and the pattern of early waking; agreed to keep a sleep diary.",
    "Explored tension at work and the urge to withdraw; practised naming the feeling before acting on it.",
    "Reviewed the thought record. Catastrophising around health worries remains the main theme.",
    "Talked about the relationship with a parent and the guilt that follows visits.",
    "Anxiety in social situations was lower this week; exposure steps were partly completed.",
    "Grief around a recent loss came up; mostly listening and normalising today.",
];
const PLANS: &[&str] = &[
    "Plan: continue CBT, next session in two weeks.",
    "Plan: weekly sessions for now; review goals in a month.",
    "Plan: homework as agreed; revisit safety plan next time.",
];

/// A uniformly random index below `n` (n > 0).
fn pick(n: usize) -> Result<usize> {
    let mut b = [0u8; 8];
    confidant_vault::random_bytes(&mut b)?;
    Ok((u64::from_le_bytes(b) % n.max(1) as u64) as usize)
}

fn one<'a>(items: &[&'a str]) -> Result<&'a str> {
    Ok(items[pick(items.len())?])
}

fn note_text() -> Result<String> {
    Ok(format!("{} {} {}", one(OPENINGS)?, one(BODIES)?, one(PLANS)?))
}

/// One synthetic patient with their sessions and notes.
fn synthetic_patient(n: usize) -> Result<(Value, Vec<(ResourceType, Value)>)> {
    let female = pick(2)? == 0;
    let given = one(if female { GIVEN_F } else { GIVEN_M })?;
    let family = one(FAMILY)?;
    let birth = format!("{}-{:02}-{:02}", 1950 + pick(55)?, 1 + pick(12)?, 1 + pick(28)?);
    let patient = json!({
        "resourceType": "Patient", "active": true,
        "identifier": [{"system": "urn:oid:1.2.246.21", "value": crate::demo::synthetic_hetu(&birth, 50 + n % 49)}],
        "name": [{"family": family, "given": [given]}],
        "gender": if female { "female" } else { "male" }, "birthDate": birth,
        "telecom": [
            {"system": "phone", "value": format!("+358 50 {:03} {:04}", pick(1000)?, pick(10_000)?)},
            {"system": "email", "value": format!("{}.{}@example.invalid", given.to_lowercase(), family.to_lowercase())}
        ]
    });
    let mut related = Vec::new();
    let sessions = 2 + pick(3)?;
    for s in 0..sessions {
        let day = format!("2026-{:02}-{:02}", 1 + (s * 2 + pick(2)?) % 11, 1 + pick(28)?);
        related.push((
            ResourceType::Encounter,
            json!({
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "type": [{"text": "Psychotherapy session"}],
                "period": {"start": format!("{day}T{:02}:00:00Z", 8 + pick(8)?), "end": format!("{day}T{:02}:50:00Z", 8 + pick(8)?)}
            }),
        ));
        related.push((
            ResourceType::DocumentReference,
            json!({
                "resourceType": "DocumentReference", "status": "current",
                "type": {"text": "Session note"},
                "date": format!("{day}T10:00:00Z"),
                "content": [{"attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64::engine::general_purpose::STANDARD.encode(note_text()?)
                }}]
            }),
        ));
    }
    Ok((patient, related))
}

/// Plant `count` honey records and add them to the sealed list.
pub async fn plant(records: &Records, count: u32) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in 0..count as usize {
        let (patient, related) = synthetic_patient(n)?;
        ids.push(records.plant(patient, related).await.context("cannot store a honey record")?);
    }
    if !ids.is_empty() {
        records.add_honey_records(&ids).await.context("cannot store the honey records' list")?;
    }
    Ok(ids)
}

/// `confidant honey plant`.
pub async fn plant_command(dir: &std::path::Path, count: u32) -> Result<()> {
    let (_, records) = crate::instance::open(dir).await?;
    let result = plant(&records, count).await;
    let total = records.honey_records().await.map(|h| h.len());
    records.store().close().await;
    result?;
    // The ids are not printed: a terminal's scrollback is no place for them.
    println!("Planted {count} honey records ({} in all). Restart `confidant serve` to watch them.", total?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2100-01-01: no synthetic birth date is later.
    const IN_2100: i64 = 4_102_444_800_000;

    #[test]
    fn synthetic_patients_are_valid_fhir_with_sessions_and_notes() {
        for n in 0..20 {
            let (mut p, related) = synthetic_patient(n).unwrap();
            confidant_fhir::validate(ResourceType::Patient, &mut p, IN_2100).unwrap();
            assert!(related.len() >= 4);
            for (rt, mut v) in related {
                v["subject"] = json!({"reference": "Patient/x"});
                confidant_fhir::validate(rt, &mut v, IN_2100).unwrap();
            }
        }
    }
}
