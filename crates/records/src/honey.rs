//! Honey records (DESIGN.md §7): synthetic patients stored and sealed exactly
//! like real ones, in no care team, that nobody has a reason to open. Which
//! patients they are is itself sealed (under the organisation's key), so a
//! copy of the database does not tell them from real ones; the detector
//! alerts on any touch.

use std::collections::HashSet;

use confidant_audit::{Action as AuditAction, Entry};
use confidant_fhir::ResourceType;
use confidant_store::{AuditRow, Write};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result};

const SETTING_HONEY: &str = "honey_records";
const SEALED_KIND: &str = "HoneyRecords";
const SEALED_OWNER: &str = "instance";

impl Records {
    /// Plant one synthetic patient with their `related` records (Encounters,
    /// DocumentReferences; their subject is set here), sealed under a data key
    /// of their own like any patient's, in one transaction with the audit
    /// entries of their creation at the console. Returns the patient's id.
    pub async fn plant(&self, mut patient: Value, related: Vec<(ResourceType, Value)>) -> Result<String> {
        let now = self.clock.now_millis();
        let pid = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        let (key, key_row) = self.keyring.new_compartment_key(&pid)?;
        let mut items = vec![(ResourceType::Patient, patient.take(), pid.clone())];
        for (rt, mut v) in related {
            v["subject"] = json!({"reference": format!("Patient/{pid}")});
            items.push((rt, v, confidant_vault::random_id().map_err(RecordsError::Vault)?));
        }
        let mut rows = Vec::new();
        for (rt, mut v, id) in items {
            let checked = confidant_fhir::validate(rt, &mut v, now).map_err(RecordsError::Invalid)?;
            Self::stamp(&mut v, &id, 1, now);
            let body = self.seal_body(&key, rt, &id, 1, &pid, &v)?;
            let row = Self::version_row(rt, &id, 1, &pid, &key, now, body, (None, false));
            let tokens = self.tokens(rt, &checked.index);
            rows.push((row, tokens));
        }
        let writes: Vec<Write<'_>> = rows
            .iter()
            .enumerate()
            .map(|(i, (row, tokens))| Write { row, tokens, new_key: (i == 0).then_some(&key_row), care_team: None })
            .collect();
        let audit: Vec<AuditRow> = rows
            .iter()
            .map(|(row, _)| {
                let mut e = Entry::by_console(now, AuditAction::Create);
                e.resource = Some(format!("{}/{}", row.resource_type, row.id));
                e.version = Some(1);
                e.patient = Some(pid.clone());
                e.to_row()
            })
            .collect();
        self.store.create_all(&writes, &audit).await?;
        self.committed(None, &audit).await;
        Ok(pid)
    }

    /// The honey records' patient ids (empty if none were planted).
    pub async fn honey_records(&self) -> Result<HashSet<String>> {
        let Some(sealed) = self.store.setting(SETTING_HONEY).await? else { return Ok(HashSet::new()) };
        let plain = self.open_secret(SEALED_KIND, SEALED_OWNER, &sealed).await?;
        let ids: Vec<String> = serde_json::from_slice(&plain).map_err(|_| RecordsError::Integrity)?;
        Ok(ids.into_iter().collect())
    }

    /// Add patients to the honey records' sealed list.
    pub async fn add_honey_records(&self, ids: &[String]) -> Result<()> {
        let mut all: Vec<String> = self.honey_records().await?.into_iter().collect();
        all.extend(ids.iter().cloned());
        all.sort();
        all.dedup();
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&all).map_err(|_| RecordsError::Integrity)?);
        let sealed = self.seal_secret(SEALED_KIND, SEALED_OWNER, &plain).await?;
        match self.store.setting(SETTING_HONEY).await? {
            Some(old) => {
                if !self.store.replace_setting(SETTING_HONEY, &old, &sealed).await? {
                    return Err(RecordsError::Conflict);
                }
            }
            None => self.store.insert_setting(SETTING_HONEY, &sealed, self.clock.now_millis()).await?,
        }
        Ok(())
    }
}
