//! The outcome measures' resources: QuestionnaireResponse (the answers) and
//! Observation (the score). The server writes both itself (the answers
//! checked against the instrument, the score computed, never taken from a
//! client); this is the shape every stored version must have.

use serde_json::{Map, Value};

use super::{Check, array, code_in, obj, reference_id, string, subject_patient};

pub(super) const QUESTIONNAIRE_RESPONSE_ELEMENTS: &[&str] = &[
    "identifier",
    "basedOn",
    "partOf",
    "questionnaire",
    "status",
    "subject",
    "encounter",
    "authored",
    "author",
    "source",
    "item",
];

pub(super) const OBSERVATION_ELEMENTS: &[&str] = &[
    "identifier",
    "basedOn",
    "partOf",
    "status",
    "category",
    "code",
    "subject",
    "focus",
    "encounter",
    "effectiveDateTime",
    "issued",
    "performer",
    "valueInteger",
    "dataAbsentReason",
    "interpretation",
    "note",
    "method",
    "derivedFrom",
    "component",
];

fn instant(m: &Map<String, Value>, key: &str) -> Check<()> {
    if let Some(t) = string(m, key, "")?
        && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(format!("{key} must be an instant, e.g. 2026-11-29T10:00:00Z"));
    }
    Ok(())
}

fn integer(m: &Map<String, Value>, key: &str, path: &str) -> Check<Option<i64>> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{path}.{key} must be a whole number")),
    }
}

fn codings(v: &Value, path: &str) -> Check<()> {
    let c = obj(v, path)?;
    for (i, coding) in array(c, "coding", path)?.iter().enumerate() {
        let cp = format!("{path}.coding[{i}]");
        let coding = obj(coding, &cp)?;
        string(coding, "system", &cp)?;
        string(coding, "code", &cp)?;
        string(coding, "display", &cp)?;
    }
    string(c, "text", path)?;
    Ok(())
}

/// A QuestionnaireResponse: its status, the questionnaire it answers, the
/// patient, and items of `linkId` with integer or coded answers. Returns the patient.
pub(super) fn questionnaire_response(m: &Map<String, Value>) -> Check<String> {
    code_in(m, "status", "", &["in-progress", "completed", "amended", "entered-in-error", "stopped"], true)?;
    string(m, "questionnaire", "")?.ok_or("questionnaire is required (the canonical URL of the Questionnaire)")?;
    instant(m, "authored")?;
    for key in ["author", "source"] {
        if let Some(r) = m.get(key) {
            string(obj(r, key)?, "reference", key)?;
        }
    }
    for (i, item) in array(m, "item", "")?.iter().enumerate() {
        let path = format!("item[{i}]");
        let item = obj(item, &path)?;
        string(item, "linkId", &path)?.ok_or_else(|| format!("{path}.linkId is required"))?;
        string(item, "text", &path)?;
        for (j, a) in array(item, "answer", &path)?.iter().enumerate() {
            let ap = format!("{path}.answer[{j}]");
            let a = obj(a, &ap)?;
            let values = a.keys().filter(|k| k.starts_with("value")).count();
            if values != 1 {
                return Err(format!("{ap} needs exactly one value (valueInteger or valueCoding)"));
            }
            integer(a, "valueInteger", &ap)?;
            if let Some(c) = a.get("valueCoding") {
                let cp = format!("{ap}.valueCoding");
                let c = obj(c, &cp)?;
                string(c, "system", &cp)?;
                string(c, "code", &cp)?;
                string(c, "display", &cp)?;
            } else if !a.contains_key("valueInteger") {
                return Err(format!("{ap}: only valueInteger and valueCoding answers are accepted"));
            }
        }
    }
    subject_patient(m)
}

/// An Observation (a measure's score): status, code, the patient, an integer
/// value, and the responses it is derived from. Returns the patient.
pub(super) fn observation(m: &Map<String, Value>) -> Check<String> {
    code_in(
        m,
        "status",
        "",
        &["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"],
        true,
    )?;
    codings(m.get("code").ok_or("code is required (what was measured)")?, "code")?;
    for (i, c) in array(m, "category", "")?.iter().enumerate() {
        codings(c, &format!("category[{i}]"))?;
    }
    for (i, c) in array(m, "interpretation", "")?.iter().enumerate() {
        codings(c, &format!("interpretation[{i}]"))?;
    }
    instant(m, "effectiveDateTime")?;
    instant(m, "issued")?;
    integer(m, "valueInteger", "")?;
    for (i, r) in array(m, "derivedFrom", "")?.iter().enumerate() {
        reference_id(r, &format!("derivedFrom[{i}]"), "QuestionnaireResponse")?;
    }
    for (i, r) in array(m, "performer", "")?.iter().enumerate() {
        string(obj(r, &format!("performer[{i}]"))?, "reference", &format!("performer[{i}]"))?;
    }
    subject_patient(m)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ResourceType;
    use crate::resource::validate;

    const NOW: i64 = 1_796_083_200_000;

    fn response() -> serde_json::Value {
        json!({"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": "urn:confidant:questionnaire:phq-9", "subject": {"reference": "Patient/abc"},
            "authored": "2026-11-30T10:00:00Z",
            "item": [{"linkId": "1", "text": "x", "answer": [{"valueInteger": 2}]}]})
    }

    fn score() -> serde_json::Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": "Patient/abc"}, "valueInteger": 12,
            "derivedFrom": [{"reference": "QuestionnaireResponse/r1"}]})
    }

    #[test]
    fn responses_and_scores_are_checked() {
        let v = validate(ResourceType::QuestionnaireResponse, &mut response(), NOW).unwrap();
        assert_eq!(v.subject_patient.as_deref(), Some("abc"));
        let v = validate(ResourceType::Observation, &mut score(), NOW).unwrap();
        assert_eq!(v.subject_patient.as_deref(), Some("abc"));
        let bad_responses = [
            (json!({"status": "done"}), "status must be one of"),
            (json!({"questionnaire": null}), "questionnaire"),
            (json!({"item": [{"answer": [{"valueInteger": 1}]}]}), "linkId is required"),
            (json!({"item": [{"linkId": "1", "answer": [{"valueInteger": 1.5}]}]}), "whole number"),
            (json!({"item": [{"linkId": "1", "answer": [{"valueString": "SECRET"}]}]}), "only valueInteger"),
            (json!({"item": [{"linkId": "1", "answer": [{"valueInteger": 1, "valueBoolean": true}]}]}), "exactly one"),
            (json!({"subject": {"reference": "Practitioner/x"}}), "subject.reference"),
            (json!({"score": 27}), "no element named 'score'"),
        ];
        for (change, says) in bad_responses {
            let mut r = response();
            for (k, v) in change.as_object().unwrap() {
                if v.is_null() {
                    r.as_object_mut().unwrap().remove(k);
                } else {
                    r[k] = v.clone();
                }
            }
            let e = validate(ResourceType::QuestionnaireResponse, &mut r, NOW).unwrap_err();
            assert!(e.contains(says) && !e.contains("SECRET"), "{change}: {e}");
        }
        for (change, says) in [
            (json!({"valueInteger": "12"}), "whole number"),
            (json!({"derivedFrom": [{"reference": "Patient/abc"}]}), "QuestionnaireResponse/{id}"),
            (json!({"code": "phq"}), "code must be a JSON object"),
            (json!({"status": "done"}), "status must be one of"),
        ] {
            let mut o = score();
            for (k, v) in change.as_object().unwrap() {
                o[k] = v.clone();
            }
            let e = validate(ResourceType::Observation, &mut o, NOW).unwrap_err();
            assert!(e.contains(says), "{change}: {e}");
        }
    }
}
