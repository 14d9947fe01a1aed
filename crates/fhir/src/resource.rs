//! The resource types Confidant serves and their validation.
//!
//! Over 600 lines with its unit tests (the code is under 700): one validation function per
//! resource type served, beside the shared element checks they call (the outcome measures'
//! two types are validated in `resource/measures.rs`).

use serde_json::{Map, Value};

use crate::search::ValueKind;

mod measures;

/// The FHIR R4 resource types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Patient,
    Practitioner,
    Encounter,
    DocumentReference,
    CareTeam,
    Appointment,
    /// A practitioner's working hours (not patient data: like Practitioner).
    Schedule,
    QuestionnaireResponse,
    Observation,
}

impl ResourceType {
    pub const ALL: [ResourceType; 9] = [
        ResourceType::Patient,
        ResourceType::Practitioner,
        ResourceType::Encounter,
        ResourceType::DocumentReference,
        ResourceType::CareTeam,
        ResourceType::Appointment,
        ResourceType::Schedule,
        ResourceType::QuestionnaireResponse,
        ResourceType::Observation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::Practitioner => "Practitioner",
            ResourceType::Encounter => "Encounter",
            ResourceType::DocumentReference => "DocumentReference",
            ResourceType::CareTeam => "CareTeam",
            ResourceType::Appointment => "Appointment",
            ResourceType::Schedule => "Schedule",
            ResourceType::QuestionnaireResponse => "QuestionnaireResponse",
            ResourceType::Observation => "Observation",
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
                | ResourceType::QuestionnaireResponse
                | ResourceType::Observation
        )
    }

    /// Records the server writes itself and clients only read: a measure's
    /// answers (checked against the instrument) and its score (computed).
    pub fn written_by_server(self) -> bool {
        matches!(self, ResourceType::QuestionnaireResponse | ResourceType::Observation)
    }

    /// The elements R4 defines for this type (besides the common ones), for
    /// the types only clinicians read. The types reception and admins read
    /// have allowlists of their own, down to every nested element (`shape.rs`).
    fn elements(self) -> &'static [&'static str] {
        match self {
            ResourceType::Patient
            | ResourceType::Practitioner
            | ResourceType::CareTeam
            | ResourceType::Appointment
            | ResourceType::Schedule => &[],
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
            ResourceType::QuestionnaireResponse => measures::QUESTIONNAIRE_RESPONSE_ELEMENTS,
            ResourceType::Observation => measures::OBSERVATION_ELEMENTS,
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
    /// For an active CareTeam: its Practitioner members, each with the time
    /// their membership counts (checked at access time, against the clock).
    pub care_team_members: Vec<Membership>,
}

/// A practitioner's place on an active care team: from `from` (inclusive) until
/// `until` (exclusive), Unix ms; `None` is open-ended. The team's period and the
/// participant's period, intersected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub practitioner_id: String,
    pub from: Option<i64>,
    pub until: Option<i64>,
}

/// A FHIR date or dateTime as the half-open range of Unix ms it covers:
/// `2026` is the whole year, `2026-11-29` the whole day, an instant one millisecond.
pub fn time_range(s: &str) -> Option<(i64, i64)> {
    if crate::shape::is_instant(s) {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?;
        return Some((ms, ms + 1));
    }
    if !is_fhir_date(s) {
        return None;
    }
    let mut parts = s.split('-').map(|p| p.parse::<i32>().ok());
    let year = parts.next()??;
    let month = parts.next().flatten();
    let day = parts.next().flatten();
    let date = |y: i32, m: u8, d: u8| {
        time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d)
            .ok()
            .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
    };
    let m8 = |m: i32| u8::try_from(m).ok();
    Some(match (month, day) {
        (None, _) => (date(year, 1, 1)?, date(year + 1, 1, 1)?),
        (Some(m), None) => {
            let (ny, nm) = if m == 12 { (year + 1, 1) } else { (year, m + 1) };
            (date(year, m8(m)?, 1)?, date(ny, m8(nm)?, 1)?)
        }
        (Some(m), Some(d)) => {
            let start = date(year, m8(m)?, u8::try_from(d).ok()?)?;
            (start, start + 86_400_000)
        }
    })
}

/// A `period` element: its (from, until), either open; refused if it ends before it starts.
fn period_range(v: Option<&Value>, path: &str) -> Check<(Option<i64>, Option<i64>)> {
    let Some(v) = v else { return Ok((None, None)) };
    let p = obj(v, path)?;
    let bound = |key: &str| -> Check<Option<(i64, i64)>> {
        match string(p, key, path)? {
            None => Ok(None),
            Some(s) => time_range(s).map(Some).ok_or_else(|| {
                format!("{path}.{key} must be a date (YYYY-MM-DD) or an instant (2026-11-29T10:00:00Z)")
            }),
        }
    };
    // A period ending on a day lasts to the end of that day.
    let from = bound("start")?.map(|(s, _)| s);
    let until = bound("end")?.map(|(_, e)| e);
    if let (Some(f), Some(u)) = (from, until)
        && u <= f
    {
        return Err(format!("{path}.end must not be before {path}.start"));
    }
    Ok((from, until))
}

/// Is the psychotherapy-note label this coding, or meant to be? Looked at
/// loosely (any case, spaces), so that a near miss is refused, not ignored.
fn looks_like_psychotherapy_label(c: &Map<String, Value>) -> bool {
    c.get("code").and_then(Value::as_str).is_some_and(|code| code.trim().eq_ignore_ascii_case(PSYCHOTHERAPY_NOTE))
}

const PSYCHOTHERAPY_LABEL_HELP: &str = "the psychotherapy-note label must be exactly meta.security \
     {\"system\": \"http://terminology.hl7.org/CodeSystem/v3-ActCode\", \"code\": \"PSYTHPN\"}";

/// The psychotherapy-note label, exactly as the server enforces it, or a 400:
/// a label spelt any other way (no system, a trailing space, lower case, in
/// `meta.tag` or anywhere else) would be stored and not enforced, failing open.
fn psychotherapy_label(rt: ResourceType, m: &Map<String, Value>) -> Check<bool> {
    let mut labelled = false;
    if let Some(security) = m.get("meta").and_then(|meta| meta.get("security")).and_then(Value::as_array) {
        for (i, c) in security.iter().enumerate() {
            let Some(c) = c.as_object() else { continue };
            if !looks_like_psychotherapy_label(c) {
                continue;
            }
            let exact = c.get("system").and_then(Value::as_str) == Some(ACT_CODE_SYSTEM)
                && c.get("code").and_then(Value::as_str) == Some(PSYCHOTHERAPY_NOTE);
            if !exact {
                return Err(format!("meta.security[{i}]: {PSYCHOTHERAPY_LABEL_HELP}"));
            }
            labelled = true;
        }
    }
    // Anywhere else (meta.tag, a category, an extension) it would not be enforced.
    fn elsewhere(v: &Value, path: &str) -> Option<String> {
        match v {
            Value::Object(o) => {
                if path != "meta.security[]" && looks_like_psychotherapy_label(o) {
                    return Some(if path.is_empty() { "the resource".to_owned() } else { path.to_owned() });
                }
                o.iter().find_map(|(k, v)| {
                    let here = match crate::shape::element_name(k) {
                        Some(k) if path.is_empty() => k.to_owned(),
                        Some(k) => format!("{path}.{k}"),
                        None => format!("{path}.?"),
                    };
                    elsewhere(v, &here)
                })
            }
            Value::Array(a) => a.iter().find_map(|v| elsewhere(v, &format!("{path}[]"))),
            _ => None,
        }
    }
    if let Some(path) = m.iter().find_map(|(k, v)| elsewhere(v, crate::shape::element_name(k).unwrap_or("?"))) {
        return Err(format!("{path}: {PSYCHOTHERAPY_LABEL_HELP}"));
    }
    if labelled && rt != ResourceType::DocumentReference {
        return Err("the psychotherapy-note label (PSYTHPN) applies to notes (DocumentReference) only".into());
    }
    Ok(labelled)
}

/// Does this (stored) note carry the psychotherapy-note label, exactly as
/// [`validate`] accepts it?
pub fn is_psychotherapy_note(resource: &Value) -> bool {
    resource.as_object().is_some_and(|m| has_coding(m, "security", ACT_CODE_SYSTEM, PSYCHOTHERAPY_NOTE))
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
pub(crate) fn is_fhir_date(s: &str) -> bool {
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
    // Contained resources would escape every check made here (their type,
    // their subject, their labels): refer to resources stored on their own.
    if m.contains_key("contained") {
        return Err(format!(
            "{}.contained is not supported: create each resource on its own and refer to it",
            rt.as_str()
        ));
    }
    let strict = match rt {
        ResourceType::Patient => Some(crate::shape::PATIENT),
        ResourceType::Practitioner => Some(crate::shape::PRACTITIONER),
        ResourceType::CareTeam => Some(crate::shape::CARE_TEAM),
        ResourceType::Appointment => Some(crate::shape::APPOINTMENT),
        ResourceType::Schedule => Some(crate::shape::SCHEDULE),
        ResourceType::Encounter
        | ResourceType::DocumentReference
        | ResourceType::QuestionnaireResponse
        | ResourceType::Observation => None,
    };
    if let Some(fields) = strict {
        return crate::shape::check_object(rt.as_str(), m, fields, "");
    }
    if rt == ResourceType::DocumentReference && m.contains_key("securityLabel") {
        return Err("DocumentReference.securityLabel is not supported: put security labels in meta.security, \
             where the server enforces them"
            .into());
    }
    for key in m.keys() {
        let known = (COMMON_ELEMENTS.contains(&key.as_str()) && key != "contained")
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
///
/// `now` (Unix ms, from the injected clock) bounds dates that cannot be in
/// the future, such as a birth date.
pub fn validate(rt: ResourceType, resource: &mut Value, now: i64) -> Result<Validated, String> {
    crate::shape::check_strings(resource, "")?;
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
    // FHIR's element-level invariants (ele-1, ext-1, txt-1, cpt-2, app-3, ...), every type.
    crate::invariants::check(rt, m)?;
    check_meta(rt, m)?;
    check_tags(m)?;
    let psychotherapy_note = psychotherapy_label(rt, m)?;
    let mut index = Vec::new();
    let mut subject = None;
    let mut members = Vec::new();
    match rt {
        ResourceType::Patient | ResourceType::Practitioner => {
            index_person(rt, m, &mut index)?;
            for key in ["birthDate", "deceasedDateTime"] {
                if let Some((from, _)) = m.get(key).and_then(Value::as_str).and_then(time_range)
                    && from > now
                {
                    return Err(format!("{key} must not be in the future"));
                }
            }
        }
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
            // The session a note belongs to: its date, never in the future (a day's
            // slack for the clinic's time zone, which the web form checks exactly).
            if let Some(ctx) = m.get("context") {
                let (from, _) = period_range(obj(ctx, "context")?.get("period"), "context.period")?;
                if from.is_some_and(|f| f > now + 86_400_000) {
                    return Err("context.period.start (the session's date) must not be in the future".into());
                }
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
            let mut span = [None, None];
            for (i, key) in ["start", "end"].into_iter().enumerate() {
                if let Some(t) = string(m, key, "")? {
                    match time_range(t).filter(|_| crate::shape::is_instant(t)) {
                        Some((ms, _)) => span[i] = Some(ms),
                        None => return Err(format!("{key} must be an instant, e.g. 2026-11-29T10:00:00Z")),
                    }
                }
            }
            if let [Some(start), Some(end)] = span
                && end <= start
            {
                return Err("end must be after start".into());
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
                    let reference = string(r, "reference", &path)?;
                    if reference.is_some_and(|r| r.starts_with("Patient/")) {
                        patients.push(reference_id(actor, &format!("{path}.actor"), "Patient")?);
                    }
                    if reference.is_some_and(|r| r.starts_with("Practitioner/")) {
                        let id = reference_id(actor, &format!("{path}.actor"), "Practitioner")?;
                        crate::schedule::index_practitioner(&id, span, &mut index);
                    }
                }
            }
            match patients.as_slice() {
                [one] => subject = Some(one.clone()),
                _ => return Err("an appointment needs exactly one participant whose actor is 'Patient/{id}'".into()),
            }
            crate::schedule::index_series(m, &mut index)?;
        }
        ResourceType::Schedule => crate::schedule::check_schedule(m, &mut index)?,
        ResourceType::CareTeam => {
            // Required: a team without a status is not known to be active, and
            // only an active team grants its members access.
            code_in(m, "status", "", &["proposed", "active", "suspended", "inactive", "entered-in-error"], true)?;
            subject = Some(subject_patient(m)?);
            let active = m.get("status").and_then(Value::as_str) == Some("active");
            let (team_from, team_until) = period_range(m.get("period"), "period")?;
            for (i, p) in array(m, "participant", "")?.iter().enumerate() {
                let path = format!("participant[{i}]");
                let p = obj(p, &path)?;
                let member = p.get("member").ok_or_else(|| format!("{path}.member is required"))?;
                let id = reference_id(member, &format!("{path}.member"), "Practitioner")?;
                let (from, until) = period_range(p.get("period"), &format!("{path}.period"))?;
                let from = from.max(team_from);
                let until = match (until, team_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let empty = matches!((from, until), (Some(f), Some(u)) if u <= f);
                if active && !empty {
                    members.push(Membership { practitioner_id: id, from, until });
                }
            }
        }
        ResourceType::QuestionnaireResponse => subject = Some(measures::questionnaire_response(m)?),
        ResourceType::Observation => subject = Some(measures::observation(m)?),
    }
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

    /// 2026-12-01T00:00:00Z.
    const NOW: i64 = 1_796_083_200_000;

    fn refused(rt: ResourceType, mut v: Value) -> String {
        match validate(rt, &mut v, NOW) {
            Err(e) => e,
            Ok(_) => panic!("accepted: {v}"),
        }
    }

    fn note() -> Value {
        json!({
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/abc"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]
        })
    }

    #[test]
    fn free_text_is_refused_in_what_reception_and_admins_read() {
        let team = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/abc"},
            "participant": [{"member": {"reference": "Practitioner/p1"}}]});
        let mut ok = team.clone();
        validate(ResourceType::CareTeam, &mut ok, NOW).unwrap();
        let appt = json!({"resourceType": "Appointment", "status": "booked", "start": "2026-12-01T09:00:00Z",
            "end": "2026-12-01T09:50:00Z", "participant": [{"actor": {"reference": "Patient/abc"}, "status": "accepted"}]});
        let mut ok = appt.clone();
        validate(ResourceType::Appointment, &mut ok, NOW).unwrap();
        let secret = "SECRETVALUE depression";
        let cases: Vec<(ResourceType, Value, &str, &str)> = vec![
            (ResourceType::CareTeam, json!({"name": secret}), "", "name"),
            (ResourceType::CareTeam, json!({"category": [{"text": secret}]}), "", "category"),
            (ResourceType::CareTeam, json!({"extension": [{"url": "x", "valueString": secret}]}), "", "extension"),
            (ResourceType::CareTeam, json!({"text": {"status": "generated", "div": secret}}), "", "text"),
            (ResourceType::CareTeam, json!({"note": [{"text": secret}]}), "", "note"),
            (
                ResourceType::CareTeam,
                json!({"participant": [{"member": {"reference": "Practitioner/p1", "display": secret}}]}),
                "",
                "participant[0].member.display",
            ),
            (ResourceType::Appointment, json!({"reasonCode": [{"text": secret}]}), "", "reasonCode"),
            (
                ResourceType::Appointment,
                json!({"reasonReference": [{"reference": "Condition/x"}]}),
                "",
                "reasonReference",
            ),
            (ResourceType::Appointment, json!({"comment": secret}), "", "comment"),
            (ResourceType::Appointment, json!({"description": secret}), "", "description"),
            (ResourceType::Appointment, json!({"patientInstruction": secret}), "", "patientInstruction"),
            (ResourceType::Appointment, json!({"serviceType": [{"text": secret}]}), "", "serviceType[0].text"),
            (
                ResourceType::Appointment,
                json!({"serviceType": [{"coding": [{"code": "x", "display": secret}]}]}),
                "",
                "serviceType[0].coding[0].display",
            ),
        ];
        for (rt, extra, _, element) in cases {
            let mut v = if rt == ResourceType::CareTeam { team.clone() } else { appt.clone() };
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let e = refused(rt, v);
            assert!(e.contains(&format!("'{element}'")), "{element}: {e}");
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
        let contained = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/abc"},
            "contained": [{"resourceType": "Evil"}]});
        assert!(refused(ResourceType::CareTeam, contained).contains("contained"));
        for rt in [ResourceType::Patient, ResourceType::Practitioner] {
            let mut v = json!({"resourceType": rt.as_str(), "name": [{"family": "Virtanen"}]});
            v["text"] = json!({"status": "generated", "div": secret});
            assert!(refused(rt, v.clone()).contains("'text'"));
            v.as_object_mut().unwrap().remove("text");
            v["extension"] = json!([{"url": "x", "valueString": secret}]);
            assert!(refused(rt, v).contains("'extension'"));
        }
        // A key that is not an element name is not echoed either.
        let e = refused(ResourceType::Patient, json!({"resourceType": "Patient", "SECRETVALUE has depression": 1}));
        assert!(!e.contains("SECRETVALUE"), "{e}");
    }

    #[test]
    fn hostile_demographics_are_refused() {
        let p = |extra: Value| {
            let mut v = json!({"resourceType": "Patient", "name": [{"family": "Virtanen"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        for (extra, says) in [
            (json!({"multipleBirthInteger": 1.5}), "multipleBirthInteger must be a whole number"),
            (json!({"multipleBirthInteger": "2"}), "multipleBirthInteger must be a whole number"),
            (json!({"multipleBirthBoolean": true, "multipleBirthInteger": 2}), "only one of"),
            (json!({"deceasedBoolean": true, "deceasedDateTime": "2020-01-01"}), "only one of"),
            (json!({"contained": [{"resourceType": "Evil"}]}), "contained is not supported"),
            (json!({"name": [{"family": "Vir\u{0}tanen"}]}), "control character"),
            (json!({"name": [{"family": "x".repeat(500_000)}]}), "too long"),
            (json!({"birthDate": "3020-01-01"}), "birthDate must not be in the future"),
            (json!({"birthDate": "3020"}), "birthDate must not be in the future"),
            (json!({"deceasedDateTime": "2027-01-01T00:00:00Z"}), "deceasedDateTime must not be in the future"),
            (json!({"active": null}), "must be true or false"),
            (json!({"name": []}), "empty array"),
        ] {
            let e = refused(ResourceType::Patient, p(extra.clone()));
            assert!(e.contains(says), "{extra}: {e}");
        }
        let mut ok = p(json!({"multipleBirthInteger": 2, "birthDate": "2026-12-01", "deceasedBoolean": false}));
        validate(ResourceType::Patient, &mut ok, NOW).unwrap();
        // Every type: no NUL, no contained.
        let mut n = note();
        n["description"] = json!("a\u{0}b");
        assert!(refused(ResourceType::DocumentReference, n).contains("control character"));
        let mut n = note();
        n["contained"] = json!([{"resourceType": "Evil"}]);
        assert!(refused(ResourceType::DocumentReference, n).contains("contained"));
    }

    #[test]
    fn duplicate_keys_are_refused_without_quoting_them() {
        let e = crate::parse_json(br#"{"resourceType":"Patient","SECRET":1,"SECRET":2}"#).unwrap_err();
        assert!(e.contains("same key twice") && !e.contains("SECRET"), "{e}");
        let e = crate::parse_json(br#"{"a":{"b":1,"b":1}}"#).unwrap_err();
        assert!(e.contains("same key twice"), "{e}");
        assert!(crate::parse_json(br#"{"a":"SECRET""#).unwrap_err().find("SECRET").is_none());
        assert!(crate::parse_json(br#"{"a":1} x"#).is_err());
        assert_eq!(
            crate::parse_json(br#"{"a":[1,2.5,"x",null,true]}"#).unwrap(),
            json!({"a": [1, 2.5, "x", null, true]})
        );
    }

    #[test]
    fn the_psychotherapy_label_is_exact_or_refused() {
        let labelled = |security: Value| {
            let mut n = note();
            n["meta"] = json!({"security": security});
            n
        };
        let mut n = labelled(json!([{"system": ACT_CODE_SYSTEM, "code": PSYCHOTHERAPY_NOTE}]));
        assert!(validate(ResourceType::DocumentReference, &mut n, NOW).unwrap().psychotherapy_note);
        let near_misses = [
            labelled(json!([{"code": "PSYTHPN"}])),
            labelled(json!([{"system": format!("{ACT_CODE_SYSTEM} "), "code": "PSYTHPN"}])),
            labelled(json!([{"system": ACT_CODE_SYSTEM, "code": "psythpn"}])),
            labelled(json!([{"system": ACT_CODE_SYSTEM, "code": " PSYTHPN"}])),
            labelled(json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-actcode", "code": "PSYTHPN"}])),
            {
                let mut n = note();
                n["securityLabel"] = json!([{"coding": [{"system": ACT_CODE_SYSTEM, "code": "PSYTHPN"}]}]);
                n
            },
            {
                let mut n = note();
                n["meta"] = json!({"tag": [{"system": ACT_CODE_SYSTEM, "code": "PSYTHPN"}]});
                n
            },
            {
                let mut n = note();
                n["type"] = json!({"coding": [{"system": ACT_CODE_SYSTEM, "code": "PSYTHPN"}]});
                n
            },
        ];
        for n in near_misses {
            let e = refused(ResourceType::DocumentReference, n.clone());
            assert!(e.contains("PSYTHPN") || e.contains("securityLabel"), "{n}: {e}");
        }
        // On another type the label would not be enforced.
        let mut e = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": "Patient/abc"},
            "meta": {"security": [{"system": ACT_CODE_SYSTEM, "code": "PSYTHPN"}]}});
        let err = validate(ResourceType::Encounter, &mut e, NOW).unwrap_err();
        assert!(err.contains("(DocumentReference) only"), "{err}");
    }

    #[test]
    fn care_teams_count_when_active_and_current() {
        let team = |status: Option<&str>, period: Value, member_period: Value| {
            let mut t = json!({"resourceType": "CareTeam", "subject": {"reference": "Patient/abc"},
                "participant": [{"member": {"reference": "Practitioner/p1"}}]});
            if let Some(s) = status {
                t["status"] = json!(s);
            }
            if !period.is_null() {
                t["period"] = period;
            }
            if !member_period.is_null() {
                t["participant"][0]["period"] = member_period;
            }
            t
        };
        assert!(refused(ResourceType::CareTeam, team(None, Value::Null, Value::Null)).contains("status is required"));
        let mut t = team(Some("inactive"), Value::Null, Value::Null);
        assert!(validate(ResourceType::CareTeam, &mut t, NOW).unwrap().care_team_members.is_empty());
        let mut t = team(Some("active"), json!({"end": "2026-06-30"}), json!({"start": "2026-01-01T00:00:00Z"}));
        let m = validate(ResourceType::CareTeam, &mut t, NOW).unwrap().care_team_members;
        let (jan, jul) = (time_range("2026-01-01").unwrap().0, time_range("2026-07-01").unwrap().0);
        assert_eq!(m, vec![Membership { practitioner_id: "p1".into(), from: Some(jan), until: Some(jul) }]);
        let bad = team(Some("active"), Value::Null, json!({"start": "2026-02-01", "end": "2026-01-01"}));
        assert!(refused(ResourceType::CareTeam, bad).contains("must not be before"));
        assert_eq!(
            time_range("2026-12"),
            Some((time_range("2026-12-01").unwrap().0, time_range("2027-01-01").unwrap().0))
        );
    }

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
        let v = validate(ResourceType::Patient, &mut p, NOW).unwrap();
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
            let e = validate(ResourceType::Patient, &mut c, NOW).unwrap_err();
            assert!(!e.contains("SECRETVALUE") || e.contains("is not accepted"), "{e}");
        }
    }

    #[test]
    fn notes_need_a_patient_subject_and_get_a_label() {
        let mut n = json!({
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/abc"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]
        });
        let v = validate(ResourceType::DocumentReference, &mut n, NOW).unwrap();
        assert_eq!(v.subject_patient.as_deref(), Some("abc"));
        assert_eq!(n["meta"]["security"][0]["code"], "R");
        n["subject"]["reference"] = json!("Practitioner/abc");
        assert!(validate(ResourceType::DocumentReference, &mut n, NOW).is_err());
    }

    /// The session date (`context.period`): a date or instant, ending after it
    /// starts, not in the future (NOW is 2026-12-01T00:00Z; a day's slack for time zones).
    #[test]
    fn a_notes_session_date_is_a_date_not_in_the_future() {
        let with = |period: Value| {
            json!({
                "resourceType": "DocumentReference", "status": "current",
                "subject": {"reference": "Patient/abc"}, "context": {"period": period},
                "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]
            })
        };
        for ok in [
            json!({"start": "2026-11-30", "end": "2026-11-30"}),
            json!({"start": "2026-12-01"}),
            json!({"start": "2026-12-01T09:00:00Z"}),
        ] {
            assert!(validate(ResourceType::DocumentReference, &mut with(ok.clone()), NOW).is_ok(), "{ok}");
        }
        for (bad, says) in [
            (json!({"start": "2026-12-03"}), "future"),
            (json!({"start": "yesterday"}), "context.period.start must be a date"),
            (json!({"start": "2026-11-30", "end": "2026-11-29"}), "must not be before"),
            (json!("2026-11-30"), "context.period"),
            // FHIR's ele-1: an element has a value or children.
            (json!({}), "context.period must not be an empty object"),
        ] {
            let e = validate(ResourceType::DocumentReference, &mut with(bad.clone()), NOW).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let mut n = with(json!({"start": "2026-11-30"}));
        n["context"] = json!("not an object");
        assert!(validate(ResourceType::DocumentReference, &mut n, NOW).unwrap_err().contains("context"));
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
