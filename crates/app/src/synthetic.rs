//! Synthetic people: patients with sessions and notes, shaped like a clinic's
//! real ones, and valid synthetic Finnish identity codes. Production uses
//! them for honey records; the demo uses them for its throwaway clinic. Any
//! likeness to real persons is coincidence.

use anyhow::Result;
use base64::Engine as _;
use confidant_fhir::ResourceType;
use serde_json::{Value, json};

/// A synthetic Finnish personal identity code with a valid check character,
/// from the 900–999 individual-number range used for test identities.
pub fn synthetic_hetu(birth: &str, n: usize) -> String {
    const CHECK: &[u8] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
    let (y, rest) = birth.split_at(4);
    let (m, d) = (&rest[1..3], &rest[4..6]);
    let individual = 900 + n;
    let digits = format!("{d}{m}{}{individual}", &y[2..]);
    let number: u64 = digits.parse().unwrap_or(0);
    let sep = if y.starts_with("19") { '-' } else { 'A' };
    format!("{d}{m}{}{sep}{individual}{}", &y[2..], CHECK[(number % 31) as usize] as char)
}

/// Common Finnish given names, female then male, and family names. The honey
/// keeper chooses among them as often as the clinic's own patients carry each
/// (counted by their blind tokens), so that names are shared as the clinic's are.
pub const GIVEN_FEMALE: &[&str] = &[
    "Aino", "Helmi", "Sofia", "Lumi", "Aada", "Emilia", "Kerttu", "Iida", "Elina", "Hanna", "Maija", "Saara", "Linnea",
    "Tuulikki", "Riikka", "Ella", "Anna", "Maria", "Johanna", "Liisa", "Laura", "Sanna", "Emma", "Eevi", "Olivia",
    "Aurora", "Venla", "Pirjo", "Marjatta", "Anneli",
];
pub const GIVEN_MALE: &[&str] = &[
    "Eero", "Onni", "Väinö", "Veeti", "Niilo", "Arvo", "Jaakko", "Mikael", "Teemu", "Ilmari", "Ossi", "Santeri",
    "Pekka", "Rasmus", "Lauri", "Juhani", "Matti", "Antti", "Timo", "Mikko", "Jari", "Kari", "Ville", "Eino", "Leo",
    "Elias", "Oliver", "Aleksi", "Juho", "Tapio",
];
pub const FAMILY_NAMES: &[&str] = &[
    "Korhonen",
    "Virtanen",
    "Mäkinen",
    "Nieminen",
    "Mäkelä",
    "Hämäläinen",
    "Laine",
    "Heikkinen",
    "Koskinen",
    "Järvinen",
    "Lehtonen",
    "Lehtinen",
    "Saarinen",
    "Salminen",
    "Heinonen",
    "Niemi",
    "Heikkilä",
    "Kinnunen",
    "Salonen",
    "Turunen",
    "Salo",
    "Laitinen",
    "Tuominen",
    "Rantanen",
    "Karjalainen",
    "Jokinen",
    "Mattila",
    "Savolainen",
    "Lahtinen",
    "Ahonen",
    "Kivelä",
    "Rautio",
    "Lehtola",
    "Honkanen",
    "Vainio",
    "Peltonen",
    "Ruotsalainen",
    "Kettunen",
    "Lindholm",
    "Aaltonen",
    "Hiltunen",
    "Miettinen",
    "Leinonen",
    "Pelkonen",
    "Hakala",
    "Anttila",
    "Räsänen",
    "Laaksonen",
    "Nurmi",
    "Lindroos",
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

/// One synthetic patient with their sessions and notes (the related
/// resources have no subject yet: the caller links them).
pub fn synthetic_patient(n: usize) -> Result<(Value, Vec<(ResourceType, Value)>)> {
    let female = pick(2)? == 0;
    let given = one(if female { GIVEN_FEMALE } else { GIVEN_MALE })?;
    let family = one(FAMILY_NAMES)?;
    named_patient(n, given, family, female)
}

/// [`synthetic_patient`]'s patient (no sessions) with this name.
fn named_patient(n: usize, given: &str, family: &str, female: bool) -> Result<(Value, Vec<(ResourceType, Value)>)> {
    let birth = format!("{}-{:02}-{:02}", 1950 + pick(55)?, 1 + pick(12)?, 1 + pick(28)?);
    let patient = json!({
        "resourceType": "Patient", "active": true,
        "identifier": [{"system": "urn:oid:1.2.246.21", "value": synthetic_hetu(&birth, 50 + n % 49)}],
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
        // One hour for start and end: a session ends 50 minutes after it starts (FHIR per-1).
        let hour = 8 + pick(8)?;
        related.push((
            ResourceType::Encounter,
            json!({
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "type": [{"text": "Psychotherapy session"}],
                "period": {"start": format!("{day}T{hour:02}:00:00Z"), "end": format!("{day}T{hour:02}:50:00Z")}
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

const STREETS: &[&str] =
    &["Mannerheimintie", "Hämeenkatu", "Kauppakatu", "Koulukatu", "Puistotie", "Rantatie", "Kirkkokatu", "Myllytie"];

/// A synthetic patient as a clinic registers one: identity code, `name`
/// (given, family, female) or a random one, gender, birth date, phone and
/// e-mail; an address when `address` says so.
pub fn patient(n: usize, name: Option<(&str, &str, bool)>, address: bool) -> Result<Value> {
    let (mut p, _) = match name {
        Some((given, family, female)) => named_patient(n, given, family, female)?,
        None => synthetic_patient(n)?,
    };
    if address {
        p["address"] = json!([{
            "line": [format!("{} {}", one(STREETS)?, 1 + pick(60)?)],
            "postalCode": format!("{:05}", 100 + pick(99_000)?),
            "city": one(&["Helsinki", "Tampere", "Turku", "Oulu", "Espoo", "Jyväskylä"])?
        }]);
    }
    Ok(p)
}

/// A finished session of `patient` with `practitioner` (ids), from `start` (Unix ms) for 50 minutes.
pub fn encounter(patient: &str, practitioner: &str, start: i64) -> Value {
    json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Psychotherapy session"}],
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{practitioner}")}}],
        "period": {"start": confidant_fhir::instant(start), "end": confidant_fhir::instant(start + 50 * 60_000)}
    })
}

/// How a note is labelled: the therapist's psychotherapy (process) note, a
/// summary shared with the patient, or an ordinary note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    Psychotherapy,
    Shared,
    Ordinary,
}

/// A session note of `patient` dated `date` (Unix ms), of `kind`, about
/// `text_len` characters long (at least one sentence).
pub fn note(patient: &str, encounter: Option<&str>, date: i64, kind: NoteKind, text_len: usize) -> Result<Value> {
    let mut text = note_text()?;
    while text.len() < text_len {
        text.push(' ');
        text.push_str(one(BODIES)?);
    }
    if text.len() > text_len {
        let mut cut = text_len.max(one(OPENINGS)?.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let (meta, title) = match kind {
        NoteKind::Psychotherapy => (
            json!({"security": [{"system": confidant_fhir::ACT_CODE_SYSTEM, "code": confidant_fhir::PSYCHOTHERAPY_NOTE}]}),
            "Psychotherapy note",
        ),
        NoteKind::Shared => (
            json!({"tag": [{"system": confidant_fhir::SHARING_SYSTEM, "code": confidant_fhir::SHARED_WITH_PATIENT}]}),
            "Session summary",
        ),
        NoteKind::Ordinary => (json!({}), "Session note"),
    };
    let mut n = json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": {"text": title},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": confidant_fhir::instant(date),
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": base64::engine::general_purpose::STANDARD.encode(text)
        }}]
    });
    if kind != NoteKind::Ordinary {
        n["meta"] = meta;
    }
    if let Some(e) = encounter {
        n["context"] = json!({"encounter": [{"reference": format!("Encounter/{e}")}]});
    }
    Ok(n)
}

/// A uniformly random number below `n` (n > 0), for the honey keeper's choices.
pub fn below(n: usize) -> Result<usize> {
    pick(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2100-01-01: no synthetic birth date is later.
    const IN_2100: i64 = 4_102_444_800_000;

    #[test]
    fn hetu_check_character() {
        // 131052-308T is the public example code of the Finnish Digital Agency.
        let code = synthetic_hetu("1952-10-13", 0);
        assert_eq!(code.len(), 11);
        assert!(code.starts_with("131052-900"));
        let number: u64 = "131052308".parse().unwrap_or(0);
        assert_eq!(b"0123456789ABCDEFHJKLMNPRSTUVWXY"[(number % 31) as usize], b'T');
    }

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
