//! The search parameters each resource type supports.

use crate::ResourceType;

/// How a searchable value is normalised before it is blinded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Identifier,
    Date,
    Email,
    Phone,
}

/// A supported search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchParam {
    /// Exact match through a blind index.
    Blind { name: &'static str, fhir_type: &'static str, kind: ValueKind, doc: &'static str },
    /// The owning patient (`patient` and `subject`), a reference.
    Patient { name: &'static str },
    /// The logical id.
    Id,
}

impl SearchParam {
    pub fn name(&self) -> &'static str {
        match self {
            SearchParam::Blind { name, .. } | SearchParam::Patient { name } => name,
            SearchParam::Id => "_id",
        }
    }
}

const PERSON: &[SearchParam] = &[
    SearchParam::Id,
    SearchParam::Blind {
        name: "identifier",
        fhir_type: "token",
        kind: ValueKind::Identifier,
        doc: "Exact identifier, as value or system|value (blind-indexed; case-insensitive)",
    },
    SearchParam::Blind {
        name: "family",
        fhir_type: "string",
        kind: ValueKind::Text,
        doc: "Exact family name (blind-indexed; case-insensitive, no prefix match)",
    },
    SearchParam::Blind {
        name: "given",
        fhir_type: "string",
        kind: ValueKind::Text,
        doc: "Exact given name (blind-indexed; case-insensitive, no prefix match)",
    },
    SearchParam::Blind {
        name: "birthdate",
        fhir_type: "date",
        kind: ValueKind::Date,
        doc: "Exact birth date as stored (blind-indexed; eq only)",
    },
    SearchParam::Blind {
        name: "email",
        fhir_type: "token",
        kind: ValueKind::Email,
        doc: "Exact e-mail address (blind-indexed; case-insensitive)",
    },
    SearchParam::Blind {
        name: "phone",
        fhir_type: "token",
        kind: ValueKind::Phone,
        doc: "Exact phone number, ignoring spaces, dashes, dots and parentheses (blind-indexed)",
    },
];

const BY_PATIENT: &[SearchParam] =
    &[SearchParam::Id, SearchParam::Patient { name: "patient" }, SearchParam::Patient { name: "subject" }];

/// The search parameters of `rt`, besides `_count`.
pub fn search_params(rt: ResourceType) -> &'static [SearchParam] {
    match rt {
        ResourceType::Patient | ResourceType::Practitioner => PERSON,
        ResourceType::Encounter
        | ResourceType::DocumentReference
        | ResourceType::CareTeam
        | ResourceType::Appointment => BY_PATIENT,
    }
}
