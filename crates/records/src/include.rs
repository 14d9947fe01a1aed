//! `_include` and `_revinclude` (issue 19): the resources a page of search
//! results refers to, or that refer to it, under the same rule as any read.
//!
//! Each included resource is found through the caller's visibility (the same
//! SQL criterion as a search: care team, break-glass, the psychotherapy
//! label, the patient's own record), so what the caller may not see is never
//! fetched, never decrypted and leaves no trace of its existence; what is
//! returned is audited as a read, one entry each, before it is released (the
//! bulk-read rule sees it there, as it sees any read).

use std::collections::BTreeSet;

use confidant_audit::Action as AuditAction;
use confidant_fhir::{Include, MAX_INCLUDED, ResourceType};
use confidant_policy::{Action, Principal};
use confidant_store::Criterion;

use crate::{Records, RecordsError, Result, Stored};

/// What a page of matches brings along.
#[derive(Debug, Default)]
pub struct Included {
    /// The included resources, each once, none of them among the matches.
    pub entries: Vec<Stored>,
    /// More would have been included than [`MAX_INCLUDED`]: the first ones are.
    pub truncated: bool,
}

impl Records {
    /// May `p` read the types `include` and `revinclude` bring along at all?
    /// Asked before the search, so that a refused include leaves no search
    /// hits behind; a refusal is audited as a refused read.
    pub async fn permit_includes(&self, p: &Principal, include: &[&Include], revinclude: &[&Include]) -> Result<()> {
        for i in include {
            self.permit(p, i.target, Action::Read, AuditAction::Read).await?;
        }
        for i in revinclude {
            self.permit(p, i.source, Action::Read, AuditAction::Read).await?;
        }
        Ok(())
    }

    /// The resources `include` and `revinclude` bring along for `matches` (a
    /// page of a search of `rt`, already checked to apply to it: see
    /// [`confidant_fhir::check_includes`]). A role that may not read an
    /// included type at all is refused ([`RecordsError::Forbidden`], audited);
    /// records of it the caller does not see are left out.
    pub async fn included(
        &self,
        p: &Principal,
        rt: ResourceType,
        matches: &[Stored],
        include: &[&Include],
        revinclude: &[&Include],
    ) -> Result<Included> {
        self.permit_includes(p, include, revinclude).await?;
        let now = self.clock.now_millis();
        let mut seen: BTreeSet<(&str, String)> =
            matches.iter().map(|s| (s.resource_type.as_str(), s.id.clone())).collect();
        let mut rows = Vec::new();
        let mut truncated = false;
        // Forward: the resources the matches refer to, each looked up by id within what the caller sees.
        'forward: for i in include {
            for m in matches.iter().filter(|m| m.resource_type == rt) {
                for id in i.references(&m.resource) {
                    if seen.contains(&(i.target.as_str(), id.clone())) {
                        continue;
                    }
                    if rows.len() == MAX_INCLUDED {
                        truncated = true;
                        break 'forward;
                    }
                    let mut criteria: Vec<Criterion> =
                        Self::visibility_criterion(p, i.target, now).into_iter().collect();
                    criteria.push(Criterion::Id(id.clone()));
                    let (found, _) = self.store.search(i.target.as_str(), &criteria, None, 1).await?;
                    seen.insert((i.target.as_str(), id));
                    rows.extend(found);
                }
            }
        }
        // Reverse: the resources in each matched patient's record that refer to them.
        'reverse: for i in revinclude {
            for m in matches.iter().filter(|m| m.resource_type == rt) {
                if truncated {
                    break 'reverse;
                }
                let mut criteria: Vec<Criterion> = Self::visibility_criterion(p, i.source, now).into_iter().collect();
                criteria.push(Criterion::Compartment(m.id.clone()));
                let room = (MAX_INCLUDED - rows.len()) as i64;
                let (found, _) = self.store.search(i.source.as_str(), &criteria, None, room + 1).await?;
                for row in found {
                    if rows.len() == MAX_INCLUDED {
                        truncated = true;
                        break;
                    }
                    let found_type = ResourceType::parse(&row.0.resource_type).ok_or(RecordsError::Integrity)?;
                    if seen.insert((found_type.as_str(), row.0.id.clone())) {
                        rows.push(row);
                    }
                }
            }
        }
        // One entry per included resource, as for a read of it.
        let (entries, audit, _) = self.open_found(p, AuditAction::Read, rows).await?;
        self.audited(p, &audit, Included { entries, truncated }).await
    }
}
