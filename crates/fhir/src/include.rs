//! `_include` and `_revinclude`: the references this server holds between
//! resources, and what a search may ask to bring along through them.
//!
//! Every record of a patient belongs to that patient (its compartment), so
//! the references served are the ones to the Patient: a note's, a care team's
//! `subject` and an appointment's patient participant. Nothing else is
//! followed: `*` wildcards, `:iterate` and `:recurse` are refused.

use serde_json::Value;

use crate::ResourceType;

/// One reference a search can include through: `source:param` points at `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Include {
    /// The type holding the reference.
    pub source: ResourceType,
    /// The search parameter naming the reference (`subject`, `patient`).
    pub param: &'static str,
    /// The type referred to.
    pub target: ResourceType,
}

/// The includes served, each as `_include` (from a search of `source`) and as
/// `_revinclude` (from a search of `target`).
pub const INCLUDES: &[Include] = &[
    Include { source: ResourceType::DocumentReference, param: "subject", target: ResourceType::Patient },
    Include { source: ResourceType::Appointment, param: "patient", target: ResourceType::Patient },
    Include { source: ResourceType::CareTeam, param: "subject", target: ResourceType::Patient },
];

/// The most `_include` and `_revinclude` parameters in one request (there
/// are only [`INCLUDES`] to ask for; more is a client gone wrong, or a probe).
pub const MAX_INCLUDE_PARAMS: usize = 10;

/// The most resources included in one page of results: past it the page
/// carries an OperationOutcome saying that more exist (ask with a smaller `_count`).
pub const MAX_INCLUDED: usize = 200;

impl Include {
    /// `Type:param` as FHIR writes it (`DocumentReference:subject`).
    pub fn name(&self) -> String {
        format!("{}:{}", self.source.as_str(), self.param)
    }

    /// The ids of the `target` resources `resource` (of `source`) refers to through this include.
    pub fn references(&self, resource: &Value) -> Vec<String> {
        let prefix = format!("{}/", self.target.as_str());
        let ids: Vec<&str> = match self.source {
            ResourceType::Appointment => resource
                .get("participant")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("actor").and_then(|a| reference_id(a, &prefix)))
                .collect(),
            _ => resource.get(self.param).and_then(|r| reference_id(r, &prefix)).into_iter().collect(),
        };
        ids.into_iter().filter(|id| crate::is_valid_id(id)).map(str::to_owned).collect()
    }
}

/// The id of a Reference `{"reference": "{prefix}{id}"}`.
fn reference_id<'a>(reference: &'a Value, prefix: &str) -> Option<&'a str> {
    reference.get("reference").and_then(Value::as_str).and_then(|r| r.strip_prefix(prefix))
}

/// The value of an `_include` or `_revinclude`: `Type:param`, or
/// `Type:param:Target` naming the target type; only [`INCLUDES`].
pub fn parse_include(value: &str) -> Result<&'static Include, String> {
    let refused = || {
        let served: Vec<String> = INCLUDES.iter().map(Include::name).collect();
        format!(
            "'{}' is not an include this server serves; it serves {} (no wildcards)",
            value.escape_default(),
            served.join(", ")
        )
    };
    let mut parts = value.split(':');
    let (Some(source), Some(param)) = (parts.next(), parts.next()) else { return Err(refused()) };
    let target = parts.next();
    if parts.next().is_some() {
        return Err(refused());
    }
    INCLUDES
        .iter()
        .find(|i| i.source.as_str() == source && i.param == param && target.is_none_or(|t| t == i.target.as_str()))
        .ok_or_else(refused)
}

/// The includes a search of `rt` may ask for (`_include`).
pub fn includes_from(rt: ResourceType) -> impl Iterator<Item = &'static Include> {
    INCLUDES.iter().filter(move |i| i.source == rt)
}

/// The reverse includes a search of `rt` may ask for (`_revinclude`).
pub fn revincludes_into(rt: ResourceType) -> impl Iterator<Item = &'static Include> {
    INCLUDES.iter().filter(move |i| i.target == rt)
}

/// Whether the includes asked for apply to a search of `rt`: an `_include`
/// starts from `rt`, a `_revinclude` points at it. `Err` names the first that does not.
pub fn check_includes(rt: ResourceType, include: &[&Include], revinclude: &[&Include]) -> Result<(), String> {
    if let Some(i) = include.iter().find(|i| i.source != rt) {
        return Err(format!("_include={} applies to a {} search, not {}", i.name(), i.source.as_str(), rt.as_str()));
    }
    if let Some(i) = revinclude.iter().find(|i| i.target != rt) {
        return Err(format!("_revinclude={} applies to a {} search, not {}", i.name(), i.target.as_str(), rt.as_str()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_references_held_are_served() {
        assert_eq!(parse_include("DocumentReference:subject").unwrap().target, ResourceType::Patient);
        assert_eq!(parse_include("Appointment:patient:Patient").unwrap().source, ResourceType::Appointment);
        assert_eq!(parse_include("CareTeam:subject").unwrap().param, "subject");
        for bad in [
            "",
            "*",
            "DocumentReference:*",
            "*:subject",
            "Foo:bar",
            "DocumentReference",
            "DocumentReference:author",
            "DocumentReference:subject:Group",
            "DocumentReference:subject:Patient:x",
            "Appointment:practitioner",
            "documentreference:subject",
            "'; DROP TABLE versions; --",
        ] {
            let e = parse_include(bad).unwrap_err();
            assert!(e.contains("not an include this server serves"), "{bad}: {e}");
        }
        // Refusals never echo control characters.
        assert!(!parse_include("a\n<script>").unwrap_err().contains('\n'));
    }

    #[test]
    fn references_and_where_they_apply() {
        let note = json!({"resourceType": "DocumentReference", "subject": {"reference": "Patient/p1"}});
        assert_eq!(INCLUDES[0].references(&note), ["p1"]);
        let appt = json!({"resourceType": "Appointment", "participant": [
            {"actor": {"reference": "Practitioner/pr1"}}, {"actor": {"reference": "Patient/p2"}},
            {"actor": {"reference": "Patient/../x"}}, {"actor": {}}]});
        assert_eq!(INCLUDES[1].references(&appt), ["p2"]);
        assert!(INCLUDES[2].references(&json!({"subject": {"reference": "Group/g"}})).is_empty());
        let (doc, appt) = (&INCLUDES[0], &INCLUDES[1]);
        assert!(check_includes(ResourceType::DocumentReference, &[doc], &[]).is_ok());
        assert!(check_includes(ResourceType::Patient, &[], &[doc, appt]).is_ok());
        assert!(check_includes(ResourceType::Patient, &[doc], &[]).unwrap_err().contains("DocumentReference search"));
        assert!(check_includes(ResourceType::Encounter, &[], &[doc]).unwrap_err().contains("Patient search"));
        assert_eq!(includes_from(ResourceType::Patient).count(), 0);
        assert_eq!(revincludes_into(ResourceType::Patient).count(), 3);
    }
}
