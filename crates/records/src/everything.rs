//! `Patient/{id}/$everything` (issue 19): the patient and every record in
//! their compartment that the caller may read, a page at a time.
//!
//! The patient is looked up as a read is (404 alike for "no such patient"
//! and "not in your care", the refusal audited); each type of their record
//! is searched through the caller's visibility (the same SQL criterion as a
//! search), so nothing the caller may not see is fetched or decrypted. Each
//! resource returned is audited as a read, one entry each, before the page is
//! released: the bulk-read rule counts the patient as it counts any read.

use confidant_audit::Action as AuditAction;
use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{Action, Principal};
use confidant_store::Criterion;

use crate::{Records, Result, Stored};

/// The types of a patient's record, in the order `$everything` returns them
/// (after the Patient itself).
pub const COMPARTMENT: [ResourceType; 6] = [
    ResourceType::CareTeam,
    ResourceType::Appointment,
    ResourceType::Encounter,
    ResourceType::DocumentReference,
    ResourceType::QuestionnaireResponse,
    ResourceType::Observation,
];

/// Where a page of `$everything` starts: at the type at `index` in
/// [`COMPARTMENT`], after its record `after` if given (the Patient comes
/// before every cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EverythingCursor {
    pub index: usize,
    pub after: Option<String>,
}

impl EverythingCursor {
    /// The cursor as a Bundle's `next` link carries it: `{index}` or `{index}.{id}`.
    pub fn encode(&self) -> String {
        match &self.after {
            Some(id) => format!("{}.{id}", self.index),
            None => self.index.to_string(),
        }
    }

    /// A cursor from a `next` link, or `None` if it is not one.
    pub fn decode(s: &str) -> Option<EverythingCursor> {
        let (index, after) = match s.split_once('.') {
            Some((index, id)) if confidant_fhir::is_valid_id(id) => (index, Some(id.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        if index.len() != 1 {
            return None;
        }
        let index: usize = index.parse().ok().filter(|i| *i < COMPARTMENT.len())?;
        Some(EverythingCursor { index, after })
    }
}

/// A `$everything` request.
#[derive(Debug, Clone, Default)]
pub struct EverythingRequest {
    /// Resources per page (1 to 100).
    pub count: i64,
    pub after: Option<EverythingCursor>,
    /// `_type`: only these types (the Patient only if named); `None`: all.
    pub types: Option<Vec<ResourceType>>,
}

/// One page of `$everything`.
#[derive(Debug)]
pub struct EverythingPage {
    pub entries: Vec<Stored>,
    /// Every resource of all pages.
    pub total: i64,
    pub next: Option<EverythingCursor>,
}

impl Records {
    /// `Patient/{id}/$everything`: a page of the patient and their records
    /// that `p` may read. Types the caller's role does not read are left out,
    /// unless named in `_type` (then refused, audited).
    pub async fn everything(&self, p: &Principal, patient: &str, req: &EverythingRequest) -> Result<EverythingPage> {
        self.permit(p, ResourceType::Patient, Action::Read, AuditAction::Read).await?;
        let (patient_row, patient_seen) =
            self.visible_head(p, ResourceType::Patient, patient, AuditAction::Read).await?;
        let with_patient = req.types.as_ref().is_none_or(|t| t.contains(&ResourceType::Patient));
        let mut readable = [false; COMPARTMENT.len()];
        for (i, rt) in COMPARTMENT.iter().enumerate() {
            readable[i] = match &req.types {
                None => Self::allow(p, *rt, Action::Read).is_ok(),
                Some(types) if types.contains(rt) => {
                    self.permit(p, *rt, Action::Read, AuditAction::Read).await?;
                    true
                }
                Some(_) => false,
            };
        }
        let count = req.count.clamp(1, 100) as usize;
        let now = self.clock.now_millis();
        let mut rows = Vec::with_capacity(count);
        let mut total = 0;
        if with_patient {
            total += 1;
            if req.after.is_none() {
                rows.push((patient_row, patient_seen == Seen::ByBreakGlass));
            }
        }
        // Where a next page would start: after the last row taken so far.
        let mut pending = EverythingCursor { index: 0, after: None };
        let mut next = None;
        for (i, rt) in COMPARTMENT.iter().enumerate().filter(|(i, _)| readable[*i]) {
            let mut criteria: Vec<Criterion> = Self::visibility_criterion(p, *rt, now).into_iter().collect();
            criteria.push(Criterion::Compartment(patient.to_owned()));
            // A type before the cursor's: on an earlier page; counted only.
            if req.after.as_ref().is_some_and(|c| i < c.index) {
                total += self.store.search(rt.as_str(), &criteria, None, 1).await?.1;
                continue;
            }
            let after = req.after.as_ref().filter(|c| c.index == i).and_then(|c| c.after.as_deref());
            let room = count - rows.len();
            // The store's total is of the whole type, whatever the cursor.
            let (found, n) = self.store.search(rt.as_str(), &criteria, after, room as i64 + 1).await?;
            total += n;
            let more = found.len() > room;
            let taken: Vec<_> = found.into_iter().take(room).collect();
            if let Some((last, _)) = taken.last() {
                pending = EverythingCursor { index: i, after: Some(last.id.clone()) };
            }
            rows.extend(taken);
            if more && next.is_none() {
                next = Some(pending.clone());
            }
        }
        // One read entry per resource returned.
        let (entries, audit, skipped) = self.open_found(p, AuditAction::Read, rows).await?;
        let total = total - skipped;
        self.audited(p, &audit, EverythingPage { entries, total, next }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nothing_else_decodes() {
        for c in
            [EverythingCursor { index: 0, after: None }, EverythingCursor { index: 5, after: Some("0123abcd".into()) }]
        {
            assert_eq!(EverythingCursor::decode(&c.encode()), Some(c));
        }
        for bad in ["", "6", "9.x", "01", "-1", "a.b", "1.", "1.<script>", "1.a/b", "1' OR '1'='1"] {
            assert_eq!(EverythingCursor::decode(bad), None, "{bad}");
        }
    }
}
