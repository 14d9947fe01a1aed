//! Bringing the blind index up to date for records written before an index
//! existed: the name prefixes (`name.prefix`) of Patients and Practitioners
//! stored before prefix search, and the calendar's tokens of Appointments
//! stored before the calendar. Run when an instance is opened
//! with its key ([`Records::reindex_names`]): SQL alone cannot blind a value.
//!
//! Idempotent: each resource's tokens are recomputed from its current version
//! and replace the old set as a whole; an instance setting records that the
//! whole pass finished, so later openings skip it.

use confidant_audit::{Action as AuditAction, Entry};
use confidant_fhir::ResourceType;

use crate::{Records, RecordsError, Result};

/// The instance setting written once every name has its prefix tokens
/// (its value says which index generation; a new generation gets a new name).
pub const SETTING_NAME_PREFIXES: &str = "search_index_name_prefixes";

/// The instance setting written once every Appointment has the calendar's
/// tokens (practitioner, practitioner-day).
pub const SETTING_APPOINTMENT_DAYS: &str = "search_index_appointment_days";

/// Resources re-indexed per store page.
const PAGE: i64 = 200;

/// What [`Records::reindex_names`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reindexed {
    /// Resources whose tokens were rebuilt.
    pub resources: usize,
    /// Resources left as they were: they failed to open or no longer validate
    /// (logged by id, never content; their old exact tokens still work).
    pub skipped: usize,
}

impl Records {
    /// Give every current Patient and Practitioner written before prefix search
    /// its name-prefix tokens (and the rest of today's token set). Nothing to do,
    /// and nothing audited, once done. The pass is audited (one entry, as the
    /// console) before any record is opened; no record leaves the server.
    /// Then the same for Appointments written before the calendar's
    /// practitioner and practitioner-day tokens ([`SETTING_APPOINTMENT_DAYS`]).
    pub async fn reindex_names(&self) -> Result<Reindexed> {
        let names = [ResourceType::Patient, ResourceType::Practitioner];
        let mut done = self.reindex_pass(SETTING_NAME_PREFIXES, "search-index/name-prefixes", &names).await?;
        let days = [ResourceType::Appointment];
        let more = self.reindex_pass(SETTING_APPOINTMENT_DAYS, "search-index/appointment-days", &days).await?;
        done.resources += more.resources;
        done.skipped += more.skipped;
        Ok(done)
    }

    /// One pass: every current resource of `types` gets today's token set,
    /// unless `setting` says it was done; audited as `target` first.
    async fn reindex_pass(&self, setting: &str, target: &str, types: &[ResourceType]) -> Result<Reindexed> {
        if self.store.setting(setting).await?.is_some() {
            return Ok(Reindexed::default());
        }
        let mut entry = Entry::by_console(self.clock.now_millis(), AuditAction::KeyOperation);
        entry.target = Some(target.into());
        self.auditor.append(&[entry]).await.map_err(|_| RecordsError::AuditFailed)?;
        let mut done = Reindexed::default();
        for &rt in types {
            let mut after: Option<String> = None;
            loop {
                let (rows, _) = self.store.search(rt.as_str(), &[], after.as_deref(), PAGE).await?;
                let Some((last, _)) = rows.last() else { break };
                after = Some(last.id.clone());
                let full = rows.len() as i64 == PAGE;
                for (row, _) in rows {
                    let (id, version) = (row.id.clone(), row.version_id);
                    let tokens = match self.open_record(row).await {
                        Ok(mut stored) => {
                            match confidant_fhir::validate(rt, &mut stored.resource, self.clock.now_millis()) {
                                Ok(checked) => self.tokens(rt, &checked.index),
                                Err(_) => {
                                    tracing::warn!(resource_type = rt.as_str(), %id, "not re-indexed: no longer valid");
                                    done.skipped += 1;
                                    continue;
                                }
                            }
                        }
                        // Logged by id and alerted by `open_record`.
                        Err(RecordsError::Integrity) => {
                            done.skipped += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    // A newer version written meanwhile came with its own tokens.
                    if self.store.replace_search_tokens(rt.as_str(), &id, version, &tokens).await? {
                        done.resources += 1;
                    }
                }
                if !full {
                    break;
                }
            }
        }
        if let Err(e) = self.store.insert_setting(setting, b"1", self.clock.now_millis()).await {
            // Another process finished the same pass first: the same result.
            if self.store.setting(setting).await?.is_none() {
                return Err(e.into());
            }
        }
        if done.resources + done.skipped > 0 {
            tracing::info!(
                resources = done.resources,
                skipped = done.skipped,
                index = target,
                "search index brought up to date"
            );
        }
        Ok(done)
    }

    /// A new instance needs no re-index: every record it stores is indexed as written.
    pub(crate) async fn mark_indexed(store: &confidant_store::Store, now: i64) -> Result<()> {
        store.insert_setting(SETTING_NAME_PREFIXES, b"1", now).await?;
        store.insert_setting(SETTING_APPOINTMENT_DAYS, b"1", now).await?;
        Ok(())
    }
}
