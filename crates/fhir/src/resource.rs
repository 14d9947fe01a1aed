//! The resource types Confidant serves and their validation.

use serde_json::{Map, Value};

use crate::search::ValueKind;

/// The FHIR R4 resource types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Patient,
    Practitioner,
    Encounter,
    DocumentReference,
    CareTeam,
    Appointment,
}

impl ResourceType {
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Patient,
        ResourceType::Practitioner,
        ResourceType::Encounter,
        ResourceType::DocumentReference,
        ResourceType::CareTeam,
        ResourceType::Appointment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::Practitioner => "Practitioner",
            ResourceType::Encounter => "Encounter",
            ResourceType::DocumentReference => "DocumentReference",
            ResourceType::CareTeam => "CareTeam",
            ResourceType::Appointment => "Appointment",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether records of this type belong to a patient through `subject`.
    pub fn has_subject(self) -> bool {
        matches!(
            self,
            ResourceType::Encounter
                | ResourceType::DocumentReference
                | ResourceType::CareTeam
                | ResourceType::Appointment
        )
    }

    /// The elements R4 defines for this type (besides the common ones).
    fn elements(self) -> &'static [&'static str] {
        match self {
            ResourceType::Patient => &[
                "identifier",
                "active",
                "name",
                "telecom",
                "gender",
                "birthDate",
                "deceasedBoolean",
                "deceasedDateTime",
                "address",
                "maritalStatus",
                "multipleBirthBoolean",
                "multipleBirthInteger",
                "photo",
                "contact",
                "communication",
                "generalPractitioner",
                "managingOrganization",
                "link",
            ],
            ResourceType::Practitioner => &[
                "identifier",
                "active",
                "name",
                "telecom",
                "address",
                "gender",
                "birthDate",
                "photo",
                "qualification",
                "communication",
            ],
            ResourceType::Encounter => &[
                "identifier",
                "status",
                "statusHistory",
                "class",
                "classHistory",
                "type",
                "serviceType",
                "priority",
                "subject",
                "episodeOfCare",
                "basedOn",
                "participant",
                "appointment",
                "period",
                "length",
                "reasonCode",
                "reasonReference",
                "diagnosis",
                "account",
                "hospitalization",
                "location",
                "serviceProvider",
                "partOf",
            ],
            ResourceType::DocumentReference => &[
                "masterIdentifier",
                "identifier",
                "status",
                "docStatus",
                "type",
                "category",
                "subject",
                "date",
                "author",
                "authenticator",
                "custodian",
                "relatesTo",
                "description",
                "securityLabel",
                "content",
                "context",
            ],
            ResourceType::CareTeam => &[
                // Membership only: reasons and notes are clinical content, and
                // reception and admins read care teams (separation of duties).
                "identifier",
                "status",
                "category",
                "name",
                "subject",
                "period",
                "participant",
                "managingOrganization",
                "telecom",
            ],
            ResourceType::Appointment => &[
                "identifier",
                "status",
                "cancelationReason",
                "serviceCategory",
                "serviceType",
                "specialty",
                "appointmentType",
                "reasonCode",
                "reasonReference",
                "priority",
                "description",
                "supportingInformation",
                "start",
                "end",
                "minutesDuration",
                "slot",
                "created",
                "comment",
                "patientInstruction",
                "basedOn",
                "participant",
                "requestedPeriod",
            ],
        }
    }
}

/// Elements every DomainResource has.
const COMMON_ELEMENTS: &[&str] =
    &["resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension"];

/// The v3 Confidentiality code system (used in `meta.security`).
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const CONFIDENTIALITY_CODES: &[&str] = &["U", "L", "M", "N", "R", "V"];

/// v3 ActCode, whose `PSYTHPN` marks a psychotherapy note (the therapist's
/// process notes, in the HIPAA sense): readable by its author alone.
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const PSYCHOTHERAPY_NOTE: &str = "PSYTHPN";
/// Confidant's sharing tags (in `meta.tag`).
pub const SHARING_SYSTEM: &str = "urn:confidant:sharing";
/// A note the patient may read in the portal.
pub const SHARED_WITH_PATIENT: &str = "shared-with-patient";
/// A psychotherapy note its author released to the care team.
pub const RELEASED_TO_CARE_TEAM: &str = "released-to-care-team";

/// What validation learned about a resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Validated {
    /// For Encounter, DocumentReference and CareTeam: the id of the Patient in `subject`.
    pub subject_patient: Option<String>,
    /// Values to blind-index: search parameter, normalisation, value.
    pub index: Vec<(&'static str, ValueKind, String)>,
    /// A note labelled as a psychotherapy note (`meta.security` PSYTHPN).
    pub psychotherapy_note: bool,
    /// Tagged `released-to-care-team` by its author.
    pub released_to_care_team: bool,
    /// Tagged `shared-with-patient`.
    pub shared_with_patient: bool,
    /// For an active CareTeam: the Practitioner ids among its members.
    pub care_team_members: Vec<String>,
}

fn has_coding(m: &Map<String, Value>, element: &str, system: &str, code: &str) -> bool {
    m.get("meta").and_then(|meta| meta.get(element)).and_then(Value::as_array).is_some_and(|codings| {
        codings.iter().any(|c| {
            c.get("system").and_then(Value::as_str) == Some(system)
                && c.get("code").and_then(Value::as_str) == Some(code)
        })
    })
}

fn check_tags(m: &Map<String, Value>) -> Check<()> {
    if let Some(meta) = m.get("meta").and_then(Value::as_object) {
        for (i, c) in array(meta, "tag", "meta")?.iter().enumerate() {
            let path = format!("meta.tag[{i}]");
            let c = obj(c, &path)?;
            string(c, "system", &path)?;
            string(c, "code", &path)?;
        }
    }
    Ok(())
}

fn reference_id(v: &Value, path: &str, target: &str) -> Check<String> {
    let r = obj(v, path)?;
    let reference = string(r, "reference", path)?.ok_or_else(|| format!("{path}.reference is required"))?;
    match reference.split_once('/') {
        Some((t, id)) if t == target && is_valid_id(id) => Ok(id.to_owned()),
        _ => Err(format!("{path}.reference must be '{target}/{{id}}'")),
    }
}

/// A FHIR id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

type Check<T> = Result<T, String>;

fn obj<'a>(v: &'a Value, path: &str) -> Check<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| format!("{path} must be a JSON object"))
}

fn array<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Check<&'a [Value]> {
    match m.get(key) {
        None => Ok(&[]),
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        Some(Value::Array(_)) => Err(format!("{path}.{key} must not be an empty array (omit it instead)")),
        Some(_) => Err(format!("{path}.{key} must be an array")),
    }
}

fn string<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> Check<Option<&'a str>> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
        Some(Value::String(_)) => Err(format!("{path}.{key} must not be empty")),
        Some(_) => Err(format!("{path}.{key} must be a string")),
    }
}

fn code_in(m: &Map<String, Value>, key: &str, path: &str, allowed: &[&str], required: bool) -> Check<()> {
    match string(m, key, path)? {
        None if required => Err(format!("{path}.{key} is required")),
        None => Ok(()),
        Some(c) if allowed.contains(&c) => Ok(()),
        Some(_) => Err(format!("{path}.{key} must be one of: {}", allowed.join(", "))),
    }
}

/// FHIR `date`: YYYY, YYYY-MM or YYYY-MM-DD with a real calendar day.
fn is_fhir_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let num = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [y] => num(y, 4),
        [y, m] => num(y, 4) && num(m, 2) && matches!(m.parse::<u8>(), Ok(1..=12)),
        [y, m, d] => {
            num(y, 4)
                && num(m, 2)
                && num(d, 2)
                && time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
        }
        _ => false,
    }
}

fn check_elements(rt: ResourceType, m: &Map<String, Value>) -> Check<()> {
    for key in m.keys() {
        let known = COMMON_ELEMENTS.contains(&key.as_str())
            || rt.elements().contains(&key.as_str())
            // Primitive extensions (`_birthDate`) accompany a known element.
            || key.strip_prefix('_').is_some_and(|k| rt.elements().contains(&k));
        if !known {
            return Err(format!("{} has no element named '{}'", rt.as_str(), key.escape_default()));
        }
    }
    Ok(())
}

fn check_meta(rt: ResourceType, m: &mut Map<String, Value>) -> Check<()> {
    let meta = match m.get_mut("meta") {
        None => None,
        Some(Value::Object(meta)) => Some(meta),
        Some(_) => return Err("meta must be a JSON object".into()),
    };
    let mut security = Vec::new();
    if let Some(meta) = meta {
        // versionId and lastUpdated are the server's to set.
        meta.remove("versionId");
        meta.remove("lastUpdated");
        for (i, c) in array(meta, "security", "meta")?.iter().enumerate() {
            let path = format!("meta.security[{i}]");
            let c = obj(c, &path)?;
            string(c, "system", &path)?;
            string(c, "code", &path)?;
            if c.get("system").and_then(Value::as_str) == Some(CONFIDENTIALITY_SYSTEM) {
                code_in(c, "code", &path, CONFIDENTIALITY_CODES, true)?;
            }
        }
        security = meta.get("security").and_then(Value::as_array).cloned().unwrap_or_default();
    }
    // Session notes are restricted unless labelled otherwise (DESIGN.md §6).
    if rt == ResourceType::DocumentReference
        && !security.iter().any(|c| c.get("system").and_then(Value::as_str) == Some(CONFIDENTIALITY_SYSTEM))
    {
        security.push(serde_json::json!({
            "system": CONFIDENTIALITY_SYSTEM,
            "code": "R",
            "display": "restricted"
        }));
        let meta = m.entry("meta").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert("security".into(), Value::Array(security));
        }
    }
    Ok(())
}

fn index_person(
    rt: ResourceType,
    m: &Map<String, Value>,
    index: &mut Vec<(&'static str, ValueKind, String)>,
) -> Check<()> {
    let _ = rt;
    for (i, ident) in array(m, "identifier", "")?.iter().enumerate() {
        let path = format!("identifier[{i}]");
        let ident = obj(ident, &path)?;
        let system = string(ident, "system", &path)?;
        if let Some(value) = string(ident, "value", &path)? {
            index.push(("identifier", ValueKind::Identifier, value.to_owned()));
            if let Some(system) = system {
                index.push(("identifier", ValueKind::Identifier, format!("{system}|{value}")));
            }
        }
    }
    for (i, name) in array(m, "name", "")?.iter().enumerate() {
        let path = format!("name[{i}]");
        let name = obj(name, &path)?;
        if let Some(family) = string(name, "family", &path)? {
            index.push(("family", ValueKind::Text, family.to_owned()));
        }
        for (j, given) in array(name, "given", &path)?.iter().enumerate() {
            let given = given.as_str().ok_or_else(|| format!("{path}.given[{j}] must be a string"))?;
            index.push(("given", ValueKind::Text, given.to_owned()));
        }
        string(name, "text", &path)?;
    }
    for (i, t) in array(m, "telecom", "")?.iter().enumerate() {
        let path = format!("telecom[{i}]");
        let t = obj(t, &path)?;
        code_in(t, "system", &path, &["phone", "fax", "email", "pager", "url", "sms", "other"], false)?;
        let value = string(t, "value", &path)?;
        match (t.get("system").and_then(Value::as_str), value) {
            (Some("email"), Some(v)) => index.push(("email", ValueKind::Email, v.to_owned())),
            (Some("phone" | "sms"), Some(v)) => index.push(("phone", ValueKind::Phone, v.to_owned())),
            _ => {}
        }
    }
    code_in(m, "gender", "", &["male", "female", "other", "unknown"], false)?;
    if let Some(d) = string(m, "birthDate", "")? {
        if !is_fhir_date(d) {
            return Err("birthDate must be a date: YYYY, YYYY-MM or YYYY-MM-DD".into());
        }
        index.push(("birthdate", ValueKind::Date, d.to_owned()));
    }
    if let Some(a) = m.get("active")
        && !a.is_boolean()
    {
        return Err("active must be true or false".into());
    }
    Ok(())
}

/// The patient id in a `subject` reference, which must be `Patient/{id}`.
fn subject_patient(m: &Map<String, Value>) -> Check<String> {
    let subject = m.get("subject").ok_or("subject is required: a reference to the Patient")?;
    let subject = obj(subject, "subject")?;
    let reference = string(subject, "reference", "subject")?.ok_or("subject.reference is required")?;
    match reference.split_once('/') {
        Some(("Patient", id)) if is_valid_id(id) => Ok(id.to_owned()),
        _ => Err("subject.reference must be 'Patient/{id}'".into()),
    }
}

fn check_attachment(a: &Value, path: &str) -> Check<()> {
    use base64::Engine as _;
    let a = obj(a, path)?;
    string(a, "contentType", path)?;
    if let Some(data) = string(a, "data", path)? {
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| format!("{path}.data must be base64"))?;
    }
    if a.get("data").is_none() && a.get("url").is_none() {
        return Err(format!("{path} needs data (the note text, base64) or url"));
    }
    Ok(())
}

/// Validate `resource` as `rt`, normalising server-managed parts (the
/// `meta` elements the server sets, a default confidentiality label on
/// notes), and return what the server needs from it. Errors name the
/// element and what is expected; they never quote values.
pub fn validate(rt: ResourceType, resource: &mut Value) -> Result<Validated, String> {
    let m = resource.as_object_mut().ok_or("the body must be a JSON object (a FHIR resource)")?;
    match m.get("resourceType") {
        Some(Value::String(t)) if t == rt.as_str() => {}
        Some(Value::String(_)) => {
            return Err(format!("resourceType must be '{}' at this endpoint", rt.as_str()));
        }
        _ => return Err("resourceType is required".into()),
    }
    if let Some(id) = m.get("id")
        && !id.as_str().is_some_and(is_valid_id)
    {
        return Err("id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'".into());
    }
    check_elements(rt, m)?;
    check_meta(rt, m)?;
    check_tags(m)?;
    let mut index = Vec::new();
    let mut subject = None;
    let mut members = Vec::new();
    match rt {
        ResourceType::Patient | ResourceType::Practitioner => index_person(rt, m, &mut index)?,
        ResourceType::Encounter => {
            code_in(
                m,
                "status",
                "",
                &[
                    "planned",
                    "arrived",
                    "triaged",
                    "in-progress",
                    "onleave",
                    "finished",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ],
                true,
            )?;
            obj(m.get("class").ok_or("class is required (a Coding, e.g. AMB)")?, "class")?;
            subject = Some(subject_patient(m)?);
        }
        ResourceType::DocumentReference => {
            code_in(m, "status", "", &["current", "superseded", "entered-in-error"], true)?;
            let content = array(m, "content", "")?;
            if content.is_empty() {
                return Err("content is required: at least one attachment".into());
            }
            for (i, c) in content.iter().enumerate() {
                let path = format!("content[{i}]");
                let c = obj(c, &path)?;
                check_attachment(
                    c.get("attachment").ok_or(format!("{path}.attachment is required"))?,
                    &format!("{path}.attachment"),
                )?;
            }
            if let Some(d) = string(m, "date", "")?
                && time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).is_err()
            {
                return Err("date must be an instant, e.g. 2026-11-29T10:00:00Z".into());
            }
            subject = Some(subject_patient(m)?);
        }
        ResourceType::Appointment => {
            code_in(
                m,
                "status",
                "",
                &[
                    "proposed",
                    "pending",
                    "booked",
                    "arrived",
                    "fulfilled",
                    "cancelled",
                    "noshow",
                    "entered-in-error",
                    "checked-in",
                    "waitlist",
                ],
                true,
            )?;
            for key in ["start", "end"] {
                if let Some(t) = string(m, key, "")?
                    && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err()
                {
                    return Err(format!("{key} must be an instant, e.g. 2026-11-29T10:00:00Z"));
                }
            }
            let participants = array(m, "participant", "")?;
            if participants.is_empty() {
                return Err("participant is required: the patient (and usually a practitioner)".into());
            }
            let mut patients = Vec::new();
            for (i, p) in participants.iter().enumerate() {
                let path = format!("participant[{i}]");
                let p = obj(p, &path)?;
                code_in(p, "status", &path, &["accepted", "declined", "tentative", "needs-action"], true)?;
                if let Some(actor) = p.get("actor") {
                    let r = obj(actor, &format!("{path}.actor"))?;
                    if string(r, "reference", &path)?.is_some_and(|r| r.starts_with("Patient/")) {
                        patients.push(reference_id(actor, &format!("{path}.actor"), "Patient")?);
                    }
                }
            }
            match patients.as_slice() {
                [one] => subject = Some(one.clone()),
                _ => return Err("an appointment needs exactly one participant whose actor is 'Patient/{id}'".into()),
            }
        }
        ResourceType::CareTeam => {
            code_in(m, "status", "", &["proposed", "active", "suspended", "inactive", "entered-in-error"], false)?;
            subject = Some(subject_patient(m)?);
            let active = matches!(m.get("status").and_then(Value::as_str), None | Some("active"));
            for (i, p) in array(m, "participant", "")?.iter().enumerate() {
                let path = format!("participant[{i}]");
                let p = obj(p, &path)?;
                let member = p.get("member").ok_or_else(|| format!("{path}.member is required"))?;
                let id = reference_id(member, &format!("{path}.member"), "Practitioner")?;
                if active {
                    members.push(id);
                }
            }
        }
    }
    let psychotherapy_note =
        rt == ResourceType::DocumentReference && has_coding(m, "security", ACT_CODE_SYSTEM, PSYCHOTHERAPY_NOTE);
    Ok(Validated {
        subject_patient: subject,
        index,
        psychotherapy_note,
        released_to_care_team: has_coding(m, "tag", SHARING_SYSTEM, RELEASED_TO_CARE_TEAM),
        shared_with_patient: has_coding(m, "tag", SHARING_SYSTEM, SHARED_WITH_PATIENT),
        care_team_members: members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_patient_is_indexed() {
        let mut p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.246.21", "value": "131052-308T"}],
            "name": [{"family": "Virtanen", "given": ["Aino", "Maria"]}],
            "telecom": [{"system": "email", "value": "a@example.fi"}, {"system": "phone", "value": "+358 40 123"}],
            "birthDate": "1952-10-13",
            "meta": {"versionId": "7"}
        });
        let v = validate(ResourceType::Patient, &mut p).unwrap();
        assert_eq!(v.subject_patient, None);
        let params: Vec<&str> = v.index.iter().map(|(p, _, _)| *p).collect();
        assert_eq!(params, ["identifier", "identifier", "family", "given", "given", "email", "phone", "birthdate"]);
        assert!(p["meta"].get("versionId").is_none(), "client versionId is dropped");
    }

    #[test]
    fn invalid_resources_are_refused_without_quoting_values() {
        let cases = [
            json!([]),
            json!({"resourceType": "Practitioner"}),
            json!({"resourceType": "Patient", "id": "../etc"}),
            json!({"resourceType": "Patient", "birthDate": "1952-02-30"}),
            json!({"resourceType": "Patient", "name": "Virtanen"}),
            json!({"resourceType": "Patient", "gender": "SECRETVALUE"}),
            json!({"resourceType": "Patient", "SECRETVALUE": 1}),
        ];
        for mut c in cases {
            let e = validate(ResourceType::Patient, &mut c).unwrap_err();
            assert!(!e.contains("SECRETVALUE") || e.contains("no element named"), "{e}");
        }
    }

    #[test]
    fn notes_need_a_patient_subject_and_get_a_label() {
        let mut n = json!({
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/abc"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]
        });
        let v = validate(ResourceType::DocumentReference, &mut n).unwrap();
        assert_eq!(v.subject_patient.as_deref(), Some("abc"));
        assert_eq!(n["meta"]["security"][0]["code"], "R");
        n["subject"]["reference"] = json!("Practitioner/abc");
        assert!(validate(ResourceType::DocumentReference, &mut n).is_err());
    }

    #[test]
    fn dates() {
        for ok in ["1980", "1980-02", "1980-02-29"] {
            assert!(is_fhir_date(ok), "{ok}");
        }
        for bad in ["80", "1981-02-29", "1980-13", "1980-1-1", "x"] {
            assert!(!is_fhir_date(bad), "{bad}");
        }
    }
}
