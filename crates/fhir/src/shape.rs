//! Element allowlists for the resource types that non-clinical roles read
//! (Patient, Practitioner, CareTeam, Appointment), and the checks every
//! resource's strings get.
//!
//! Reception and admins read these types (DESIGN.md §6: separation of
//! duties), so they hold structured data only: no narrative (`text`), no
//! `extension`, no `contained`, no free-text element (`comment`,
//! `description`, `reasonCode`, `CodeableConcept.text`, `Coding.display`,
//! `Reference.display`, ...). Anything not listed is refused, naming the
//! element, never its value.

use serde_json::{Map, Value};

/// The longest string accepted in a type reception and admins read (a name,
/// an address line, an identifier). Generous for real data; a 500,000-character
/// family name is an attack on every screen that shows it.
pub(crate) const MAX_DEMOGRAPHIC_CHARS: usize = 1_000;
/// The longest string accepted anywhere else, except base64 attachment data
/// (bounded by the request body limit).
pub(crate) const MAX_STRING_CHARS: usize = 65_536;

/// A primitive FHIR type, as far as its JSON form goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prim {
    String,
    Code,
    Uri,
    Boolean,
    Integer,
    PositiveInt,
    UnsignedInt,
    Date,
    DateTime,
    Instant,
    /// `HH:MM:SS` (a time of day).
    Time,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Prim(Prim),
    Object(&'static [Field]),
}

/// One allowed element: name, whether it repeats (a JSON array), its shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field(pub &'static str, pub bool, pub Shape);

const ONE: bool = false;
const MANY: bool = true;
use Prim as P;
use Shape::{Object as O, Prim as S};

const PERIOD: &[Field] = &[Field("start", ONE, S(P::DateTime)), Field("end", ONE, S(P::DateTime))];
/// Codes only: `display` is text a person typed as often as not.
const CODING: &[Field] = &[
    Field("system", ONE, S(P::Uri)),
    Field("version", ONE, S(P::String)),
    Field("code", ONE, S(P::Code)),
    Field("userSelected", ONE, S(P::Boolean)),
];
const CODEABLE_CONCEPT: &[Field] = &[Field("coding", MANY, O(CODING))];
const REFERENCE: &[Field] = &[Field("reference", ONE, S(P::String)), Field("type", ONE, S(P::Uri))];
const IDENTIFIER: &[Field] = &[
    Field("use", ONE, S(P::Code)),
    Field("type", ONE, O(CODEABLE_CONCEPT)),
    Field("system", ONE, S(P::Uri)),
    Field("value", ONE, S(P::String)),
    Field("period", ONE, O(PERIOD)),
];
const HUMAN_NAME: &[Field] = &[
    Field("use", ONE, S(P::Code)),
    Field("text", ONE, S(P::String)),
    Field("family", ONE, S(P::String)),
    Field("given", MANY, S(P::String)),
    Field("prefix", MANY, S(P::String)),
    Field("suffix", MANY, S(P::String)),
    Field("period", ONE, O(PERIOD)),
];
const CONTACT_POINT: &[Field] = &[
    Field("system", ONE, S(P::Code)),
    Field("value", ONE, S(P::String)),
    Field("use", ONE, S(P::Code)),
    Field("rank", ONE, S(P::PositiveInt)),
    Field("period", ONE, O(PERIOD)),
];
const ADDRESS: &[Field] = &[
    Field("use", ONE, S(P::Code)),
    Field("type", ONE, S(P::Code)),
    Field("text", ONE, S(P::String)),
    Field("line", MANY, S(P::String)),
    Field("city", ONE, S(P::String)),
    Field("district", ONE, S(P::String)),
    Field("state", ONE, S(P::String)),
    Field("postalCode", ONE, S(P::String)),
    Field("country", ONE, S(P::String)),
    Field("period", ONE, O(PERIOD)),
];
const META: &[Field] = &[
    Field("versionId", ONE, S(P::String)),
    Field("lastUpdated", ONE, S(P::Instant)),
    Field("source", ONE, S(P::Uri)),
    Field("profile", MANY, S(P::Uri)),
    Field("security", MANY, O(CODING)),
    Field("tag", MANY, O(CODING)),
];

/// Elements every one of these types may have.
const BASE: [Field; 3] =
    [Field("resourceType", ONE, S(P::Code)), Field("id", ONE, S(P::String)), Field("meta", ONE, O(META))];

const PATIENT_CONTACT: &[Field] = &[
    Field("relationship", MANY, O(CODEABLE_CONCEPT)),
    Field("name", ONE, O(HUMAN_NAME)),
    Field("telecom", MANY, O(CONTACT_POINT)),
    Field("address", ONE, O(ADDRESS)),
    Field("gender", ONE, S(P::Code)),
    Field("organization", ONE, O(REFERENCE)),
    Field("period", ONE, O(PERIOD)),
];
const PATIENT_COMMUNICATION: &[Field] =
    &[Field("language", ONE, O(CODEABLE_CONCEPT)), Field("preferred", ONE, S(P::Boolean))];
const PATIENT_LINK: &[Field] = &[Field("other", ONE, O(REFERENCE)), Field("type", ONE, S(P::Code))];

pub(crate) const PATIENT: &[Field] = &[
    BASE[0],
    BASE[1],
    BASE[2],
    Field("language", ONE, S(P::Code)),
    Field("identifier", MANY, O(IDENTIFIER)),
    Field("active", ONE, S(P::Boolean)),
    Field("name", MANY, O(HUMAN_NAME)),
    Field("telecom", MANY, O(CONTACT_POINT)),
    Field("gender", ONE, S(P::Code)),
    Field("birthDate", ONE, S(P::Date)),
    Field("deceasedBoolean", ONE, S(P::Boolean)),
    Field("deceasedDateTime", ONE, S(P::DateTime)),
    Field("address", MANY, O(ADDRESS)),
    Field("maritalStatus", ONE, O(CODEABLE_CONCEPT)),
    Field("multipleBirthBoolean", ONE, S(P::Boolean)),
    Field("multipleBirthInteger", ONE, S(P::Integer)),
    Field("contact", MANY, O(PATIENT_CONTACT)),
    Field("communication", MANY, O(PATIENT_COMMUNICATION)),
    Field("generalPractitioner", MANY, O(REFERENCE)),
    Field("managingOrganization", ONE, O(REFERENCE)),
    Field("link", MANY, O(PATIENT_LINK)),
];

const QUALIFICATION: &[Field] = &[
    Field("identifier", MANY, O(IDENTIFIER)),
    Field("code", ONE, O(CODEABLE_CONCEPT)),
    Field("period", ONE, O(PERIOD)),
    Field("issuer", ONE, O(REFERENCE)),
];

pub(crate) const PRACTITIONER: &[Field] = &[
    BASE[0],
    BASE[1],
    BASE[2],
    Field("language", ONE, S(P::Code)),
    Field("identifier", MANY, O(IDENTIFIER)),
    Field("active", ONE, S(P::Boolean)),
    Field("name", MANY, O(HUMAN_NAME)),
    Field("telecom", MANY, O(CONTACT_POINT)),
    Field("address", MANY, O(ADDRESS)),
    Field("gender", ONE, S(P::Code)),
    Field("birthDate", ONE, S(P::Date)),
    Field("qualification", MANY, O(QUALIFICATION)),
    Field("communication", MANY, O(CODEABLE_CONCEPT)),
];

const CARE_TEAM_PARTICIPANT: &[Field] = &[
    Field("role", MANY, O(CODEABLE_CONCEPT)),
    Field("member", ONE, O(REFERENCE)),
    Field("onBehalfOf", ONE, O(REFERENCE)),
    Field("period", ONE, O(PERIOD)),
];

/// Membership only: a team's name, category, reasons and notes are clinical
/// content (a team named after a diagnosis), and reception and admins read care teams.
pub(crate) const CARE_TEAM: &[Field] = &[
    BASE[0],
    BASE[1],
    BASE[2],
    Field("language", ONE, S(P::Code)),
    Field("identifier", MANY, O(IDENTIFIER)),
    Field("status", ONE, S(P::Code)),
    Field("subject", ONE, O(REFERENCE)),
    Field("period", ONE, O(PERIOD)),
    Field("participant", MANY, O(CARE_TEAM_PARTICIPANT)),
    Field("managingOrganization", MANY, O(REFERENCE)),
    Field("telecom", MANY, O(CONTACT_POINT)),
];

const APPOINTMENT_PARTICIPANT: &[Field] = &[
    Field("type", MANY, O(CODEABLE_CONCEPT)),
    Field("actor", ONE, O(REFERENCE)),
    Field("required", ONE, S(P::Code)),
    Field("status", ONE, S(P::Code)),
    Field("period", ONE, O(PERIOD)),
];

/// When, who and what kind: reasons, comments, descriptions and patient
/// instructions are clinical content and stay in the clinical record.
pub(crate) const APPOINTMENT: &[Field] = &[
    BASE[0],
    BASE[1],
    BASE[2],
    Field("language", ONE, S(P::Code)),
    Field("identifier", MANY, O(IDENTIFIER)),
    Field("status", ONE, S(P::Code)),
    Field("cancelationReason", ONE, O(CODEABLE_CONCEPT)),
    Field("serviceCategory", MANY, O(CODEABLE_CONCEPT)),
    Field("serviceType", MANY, O(CODEABLE_CONCEPT)),
    Field("specialty", MANY, O(CODEABLE_CONCEPT)),
    Field("appointmentType", ONE, O(CODEABLE_CONCEPT)),
    Field("priority", ONE, S(P::UnsignedInt)),
    Field("start", ONE, S(P::Instant)),
    Field("end", ONE, S(P::Instant)),
    Field("minutesDuration", ONE, S(P::PositiveInt)),
    Field("created", ONE, S(P::DateTime)),
    Field("participant", MANY, O(APPOINTMENT_PARTICIPANT)),
    Field("requestedPeriod", MANY, O(PERIOD)),
];

const WORKING_HOURS_PART: &[Field] =
    &[Field("url", ONE, S(P::Uri)), Field("valueCode", ONE, S(P::Code)), Field("valueTime", ONE, S(P::Time))];
const WORKING_HOURS: &[Field] = &[Field("url", ONE, S(P::Uri)), Field("extension", MANY, O(WORKING_HOURS_PART))];

/// A practitioner's schedule: who, and their weekly working hours (an
/// extension of Confidant's, `crate::schedule::WORKING_HOURS_URL`).
pub(crate) const SCHEDULE: &[Field] = &[
    BASE[0],
    BASE[1],
    BASE[2],
    Field("identifier", MANY, O(IDENTIFIER)),
    Field("active", ONE, S(P::Boolean)),
    Field("serviceType", MANY, O(CODEABLE_CONCEPT)),
    Field("actor", MANY, O(REFERENCE)),
    Field("planningHorizon", ONE, O(PERIOD)),
    Field("extension", MANY, O(WORKING_HOURS)),
];

/// `[x]` elements of which at most one may be given.
pub(crate) const CHOICES: &[(&str, &[&str])] = &[
    ("multipleBirth[x]", &["multipleBirthBoolean", "multipleBirthInteger"]),
    ("deceased[x]", &["deceasedBoolean", "deceasedDateTime"]),
];

/// An element name safe to repeat in an error: what FHIR names look like.
/// Anything else (a key that could be a value pasted in) is not echoed.
pub(crate) fn element_name(key: &str) -> Option<&str> {
    let plausible = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    plausible.then_some(key)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// Check `m` against an allowlist. `rt` names the type in messages.
pub(crate) fn check_object(rt: &str, m: &Map<String, Value>, fields: &[Field], path: &str) -> Result<(), String> {
    if m.is_empty() {
        return Err(format!(
            "{} must not be an empty object (omit it instead)",
            if path.is_empty() { rt } else { path }
        ));
    }
    for (key, value) in m {
        let Some(Field(_, many, shape)) = fields.iter().find(|f| f.0 == key) else {
            return Err(match element_name(key) {
                Some(k) => format!(
                    "{rt}: element '{}' is not accepted: {rt} holds structured data only, because reception and admins read it",
                    join(path, k)
                ),
                None => format!(
                    "{rt}: an element name under '{}' is not a FHIR element name",
                    if path.is_empty() { rt } else { path }
                ),
            });
        };
        let here = join(path, key);
        if *many {
            let items = match value {
                Value::Array(a) if !a.is_empty() => a,
                Value::Array(_) => return Err(format!("{here} must not be an empty array (omit it instead)")),
                _ => return Err(format!("{here} must be an array")),
            };
            for (i, item) in items.iter().enumerate() {
                check_value(rt, item, *shape, &format!("{here}[{i}]"))?;
            }
        } else {
            check_value(rt, value, *shape, &here)?;
        }
    }
    for (name, options) in CHOICES {
        if options.iter().filter(|o| m.contains_key(**o)).count() > 1 && fields.iter().any(|f| f.0 == options[0]) {
            return Err(format!("{}: give only one of {}", join(path, name), options.join(", ")));
        }
    }
    Ok(())
}

fn check_value(rt: &str, v: &Value, shape: Shape, path: &str) -> Result<(), String> {
    match shape {
        Shape::Object(fields) => match v {
            Value::Object(m) => check_object(rt, m, fields, path),
            _ => Err(format!("{path} must be a JSON object")),
        },
        Shape::Prim(p) => check_prim(v, p, path),
    }
}

fn check_prim(v: &Value, p: Prim, path: &str) -> Result<(), String> {
    let int = |v: &Value, min: i64| -> Result<(), String> {
        match v.as_i64() {
            Some(n) if v.is_i64() || v.is_u64() => {
                if n >= min {
                    Ok(())
                } else {
                    Err(format!("{path} must be a whole number of at least {min}"))
                }
            }
            _ => Err(format!("{path} must be a whole number")),
        }
    };
    match p {
        Prim::Boolean if v.is_boolean() => Ok(()),
        Prim::Boolean => Err(format!("{path} must be true or false")),
        Prim::Integer => int(v, i64::from(i32::MIN)).and_then(|()| {
            if v.as_i64().is_some_and(|n| n <= i64::from(i32::MAX)) {
                Ok(())
            } else {
                Err(format!("{path} is too large"))
            }
        }),
        Prim::PositiveInt => int(v, 1),
        Prim::UnsignedInt => int(v, 0),
        _ => {
            let s = v.as_str().ok_or_else(|| format!("{path} must be a string"))?;
            if s.trim().is_empty() {
                return Err(format!("{path} must not be empty"));
            }
            if s.chars().count() > MAX_DEMOGRAPHIC_CHARS {
                return Err(format!("{path} is too long (at most {MAX_DEMOGRAPHIC_CHARS} characters)"));
            }
            let ok = match p {
                Prim::Code => s.trim() == s && !s.contains(['\n', '\r', '\t']),
                Prim::Uri => !s.chars().any(char::is_whitespace),
                Prim::Date => crate::resource::is_fhir_date(s),
                Prim::DateTime => crate::resource::is_fhir_date(s) || is_instant(s),
                Prim::Instant => is_instant(s),
                Prim::Time => crate::schedule::parse_time(s).is_some(),
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{path} {}",
                    match p {
                        Prim::Code => "must be a code: no leading, trailing or inner line whitespace",
                        Prim::Uri => "must be a URI: no whitespace",
                        Prim::Date => "must be a date: YYYY, YYYY-MM or YYYY-MM-DD",
                        Prim::DateTime => "must be a date (YYYY-MM-DD) or an instant (2026-11-29T10:00:00Z)",
                        _ => "must be an instant, e.g. 2026-11-29T10:00:00Z",
                    }
                ))
            }
        }
    }
}

pub(crate) fn is_instant(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// Every string of a resource (keys too): no control characters but tab and
/// line breaks (FHIR's `string` type), and not longer than the limit. Base64
/// attachment data (`data`) is bounded by the request body limit instead.
pub(crate) fn check_strings(v: &Value, path: &str) -> Result<(), String> {
    let text_ok = |s: &str| !s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'));
    match v {
        Value::String(s) => {
            if !text_ok(s) {
                return Err(format!("{path} holds a control character (such as NUL): not allowed in FHIR strings"));
            }
            if s.chars().count() > MAX_STRING_CHARS && !path.ends_with(".data") {
                return Err(format!("{path} is too long (at most {MAX_STRING_CHARS} characters)"));
            }
            Ok(())
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                check_strings(item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Object(m) => {
            for (k, item) in m {
                if !text_ok(k) || k.len() > 256 {
                    return Err(format!(
                        "an element name under '{}' is not a FHIR element name",
                        if path.is_empty() { "the resource" } else { path }
                    ));
                }
                let here = match element_name(k) {
                    Some(k) => join(path, k),
                    None => join(path, "?"),
                };
                check_strings(item, &here)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Parse a request body as JSON, refusing an object with the same key twice
/// (`serde_json` would silently keep the last one: two readers of one
/// document could then see two different resources). Errors give a
/// position, never the input.
pub fn parse_json(body: &[u8]) -> Result<Value, String> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = StrictValue.deserialize(&mut de).map_err(|e| describe(&e))?;
    de.end().map_err(|e| describe(&e))?;
    Ok(v)
}

fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => format!(
            "request body is not valid JSON: an object has the same key twice (line {}, column {})",
            e.line(),
            e.column()
        ),
        Category::Eof => "request body is not valid JSON: it ends too early".into(),
        _ => format!("request body is not valid JSON: syntax error at line {}, column {}", e.line(), e.column()),
    }
}

struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                // The key is not quoted: it could be anything the client sent.
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}
