//! The search parameters each resource type supports.
//!
//! Names are found by their start (FHIR `string` search: starts-with, case- and
//! accent-insensitive) through blind-indexed prefixes: at write time each name
//! part's folded value gives one token for each prefix of [`PREFIX_MIN`]..=[`PREFIX_MAX`]
//! characters, padded with dummy tokens to [`PREFIX_TOKENS`] per part so that the
//! number of tokens does not tell a name's length.

use unicode_normalization::UnicodeNormalization;

use crate::ResourceType;

/// The shortest start of a name that can be searched: shorter prefixes would
/// each match a large share of the patients, and their tokens would tell a
/// stolen database's reader little less than the letters themselves.
pub const PREFIX_MIN: usize = 3;

/// The longest prefix indexed. Twelve characters single out nearly every name
/// (most Finnish family names are shorter: Korhonen, Hämäläinen, Kärkkäinen), and
/// each further character would cost a token per name part on every write. A
/// longer search term is matched on its first twelve characters and then
/// compared whole after decryption.
pub const PREFIX_MAX: usize = 12;

/// Prefix tokens per name part, real and dummy: one for each length `PREFIX_MIN..=PREFIX_MAX`.
pub const PREFIX_TOKENS: usize = PREFIX_MAX - PREFIX_MIN + 1;

/// The index column of every name-prefix token (family and given alike: their
/// tokens are told apart by the key, not by the column, so that `name` can
/// search both at once).
pub const PREFIX_INDEX: &str = "name.prefix";

/// A name as prefix search compares it: NFC, trimmed, lower-cased, inner
/// whitespace collapsed, and accents removed (`Hämäläinen` and `hamalainen`
/// meet, as FHIR string search prescribes).
pub fn fold_name(value: &str) -> String {
    let folded: String =
        value.nfd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).collect::<String>().to_lowercase();
    folded.split_whitespace().collect::<Vec<_>>().join(" ").nfc().collect()
}

/// The prefix a search term is looked up by: its folded form cut to
/// [`PREFIX_MAX`] characters, and whether it was cut (the whole term is then
/// compared after decryption). `Err` if it is shorter than [`PREFIX_MIN`].
pub fn search_prefix(term: &str) -> Result<(String, bool), String> {
    let folded = fold_name(term);
    let len = folded.chars().count();
    if len < PREFIX_MIN {
        return Err(format!("a name search needs at least {PREFIX_MIN} characters"));
    }
    Ok((folded.chars().take(PREFIX_MAX).collect(), len > PREFIX_MAX))
}

/// Whether the name `value` starts with the search term `term` (both folded).
pub fn name_starts_with(value: &str, term: &str) -> bool {
    fold_name(value).starts_with(&fold_name(term))
}

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
    /// A name, found by its start through blind-indexed prefixes of the name
    /// parts `parts` (the FHIR elements of HumanName). `exact` is the exact index
    /// that `:exact` searches, if there is one.
    Name { name: &'static str, parts: &'static [&'static str], exact: Option<&'static str>, doc: &'static str },
}

impl SearchParam {
    pub fn name(&self) -> &'static str {
        match self {
            SearchParam::Blind { name, .. } | SearchParam::Patient { name } | SearchParam::Name { name, .. } => name,
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
    SearchParam::Name {
        name: "name",
        parts: &["family", "given"],
        exact: None,
        doc: "A family or given name that starts with the value (at least 3 characters; \
              case- and accent-insensitive; blind-indexed prefixes)",
    },
    SearchParam::Name {
        name: "family",
        parts: &["family"],
        exact: Some("family"),
        doc: "Family name that starts with the value (at least 3 characters; case- and accent-insensitive; \
              blind-indexed prefixes); family:exact matches the whole name",
    },
    SearchParam::Name {
        name: "given",
        parts: &["given"],
        exact: Some("given"),
        doc: "Given name that starts with the value (at least 3 characters; case- and accent-insensitive; \
              blind-indexed prefixes); given:exact matches the whole name",
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

const APPOINTMENT: &[SearchParam] = &[
    SearchParam::Id,
    SearchParam::Patient { name: "patient" },
    SearchParam::Patient { name: "subject" },
    SearchParam::Blind {
        name: "practitioner",
        fhir_type: "reference",
        kind: ValueKind::Identifier,
        doc: "The practitioner taking part, as Practitioner/{id} or {id} (blind-indexed)",
    },
    SearchParam::Blind {
        name: "identifier",
        fhir_type: "token",
        kind: ValueKind::Identifier,
        doc: "Exact identifier, as value or system|value; a recurring series is urn:confidant:series|{value} (blind-indexed)",
    },
];

const SCHEDULE: &[SearchParam] = &[
    SearchParam::Id,
    SearchParam::Blind {
        name: "actor",
        fhir_type: "reference",
        kind: ValueKind::Identifier,
        doc: "The practitioner whose schedule it is, as Practitioner/{id} or {id} (blind-indexed)",
    },
];

/// The search parameters of `rt`, besides `_count`.
pub fn search_params(rt: ResourceType) -> &'static [SearchParam] {
    match rt {
        ResourceType::Patient | ResourceType::Practitioner => PERSON,
        ResourceType::Encounter
        | ResourceType::DocumentReference
        | ResourceType::CareTeam
        | ResourceType::QuestionnaireResponse
        | ResourceType::Observation => BY_PATIENT,
        ResourceType::Appointment => APPOINTMENT,
        ResourceType::Schedule => SCHEDULE,
    }
}

/// Whether `param` of `rt` is a name part whose prefixes are indexed.
pub fn prefix_indexed(rt: ResourceType, param: &str) -> bool {
    search_params(rt).iter().any(|p| matches!(p, SearchParam::Name { parts, .. } if parts.contains(&param)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_accents_and_spaces() {
        assert_eq!(fold_name("  Hämäläinen "), "hamalainen");
        assert_eq!(fold_name("ÅSTRÖM"), "astrom");
        // Decomposed and precomposed meet.
        assert_eq!(fold_name("A\u{30a}berg"), fold_name("\u{c5}berg"));
        assert_eq!(fold_name("van  der Berg"), "van der berg");
        assert_eq!(fold_name("O'Brien-Ñúñez"), "o'brien-nunez");
    }

    #[test]
    fn search_prefixes() {
        assert_eq!(search_prefix("Vir"), Ok(("vir".into(), false)));
        assert_eq!(search_prefix("HÄMÄLÄINEN"), Ok(("hamalainen".into(), false)));
        assert_eq!(search_prefix("abcdefghijkl"), Ok(("abcdefghijkl".into(), false)));
        assert_eq!(search_prefix("abcdefghijklm"), Ok(("abcdefghijkl".into(), true)));
        for short in ["", "a", "ab", " ab ", "ä\u{308}"] {
            assert!(search_prefix(short).unwrap_err().contains("at least 3 characters"), "{short:?}");
        }
        // Characters, not bytes: three letters of a non-Latin script are enough.
        assert_eq!(search_prefix("Åäö"), Ok(("aao".into(), false)));
        assert_eq!(search_prefix("Ли Бо"), Ok(("ли бо".into(), false)));
        assert!(name_starts_with("Virtanen-Korhonen", "virtanen-korh"));
        assert!(!name_starts_with("Virtanen", "virtanen-korh"));
    }

    #[test]
    fn names_are_prefix_indexed() {
        for rt in [ResourceType::Patient, ResourceType::Practitioner] {
            assert!(prefix_indexed(rt, "family") && prefix_indexed(rt, "given"));
            assert!(!prefix_indexed(rt, "identifier") && !prefix_indexed(rt, "name"));
        }
        assert!(!prefix_indexed(ResourceType::Encounter, "family"));
        assert_eq!(PREFIX_TOKENS, 10);
    }
}
