//! Key rotation. Of the key-encryption key: every wrapped key re-wrapped under the
//! provider's current KEK version, online. Data keys do not change, so records
//! are not re-encrypted and running servers' key caches stay valid.
//!
//! Resumable by construction: each key is re-wrapped by a conditional update
//! of its own row, so a crash loses at most the key in hand, and running again
//! finds exactly the keys still under an older version.
//!
//! Of a patient's data key ([`rotate_patient_key`]): their records are
//! re-encrypted under a new data key and the old one is destroyed, in one
//! transaction (a crash leaves everything as it was; run it again).

use std::collections::HashMap;

use confidant_audit::Entry;
use confidant_store::{DataKeyRow, Rekeyed, Sealed, Store};
use confidant_vault::{RecordContext, Vault, WrappedKey};

use crate::{Records, RecordsError, Result, SETTING_BLIND_KEY};

/// What a rewrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    /// The KEK version everything is now wrapped under.
    pub kek_version: u32,
    pub data_keys: u64,
    pub blind_index_key: bool,
}

/// Re-wrap the blind-index key and every data key under an older KEK version
/// than the provider's current one. `progress(done, total)` after each key.
pub async fn rewrap_to_current(
    store: &Store,
    vault: &Vault,
    batch: i64,
    mut progress: impl FnMut(u64, u64),
) -> Result<Rewrapped> {
    let target = vault.provider().current_version();
    let target_i = i64::from(target);
    let mut blind = false;
    let wrapped = store.setting(SETTING_BLIND_KEY).await?.ok_or(RecordsError::NotInitialised("no blind-index key"))?;
    if WrappedKey(wrapped.clone()).kek_version().map_err(RecordsError::Vault)? < target {
        let new = vault.rewrap_blind_index_key(&WrappedKey(wrapped.clone())).map_err(RecordsError::Vault)?;
        blind = store.replace_setting(SETTING_BLIND_KEY, &wrapped, &new.0).await?;
    }
    let total: i64 = store.kek_usage().await?.iter().filter(|(v, _)| *v < target_i).map(|(_, n)| n).sum();
    let mut done = 0u64;
    loop {
        let rows = store.data_keys_older_than(target_i, batch.max(1)).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let version = u32::try_from(row.version).map_err(|_| RecordsError::Integrity)?;
            let new = vault
                .rewrap_data_key(&row.compartment, version, &WrappedKey(row.wrapped.clone()))
                .map_err(RecordsError::Vault)?;
            if store.rewrap_data_key(&row, &new.0, target_i).await? {
                done += 1;
            }
            progress(done, total.max(0) as u64);
        }
    }
    Ok(Rewrapped { kek_version: target, data_keys: done, blind_index_key: blind })
}

/// A patient's data key replaced by a new version: every version of every
/// record of theirs, and the reasons of break-glass accesses to them,
/// re-encrypted under it, the old versions deleted (crypto-shredded), and
/// `audit` appended: one transaction. Writes racing it re-seal under the new
/// key (see [`Records::create`]); reads pick the key by each row's version.
pub async fn rotate_patient_key(records: &Records, patient_id: &str, audit: &[Entry]) -> Result<Rekeyed> {
    let store = &records.store;
    let not_found = || RecordsError::NotFound(format!("Patient/{patient_id}"));
    if !confidant_fhir::is_valid_id(patient_id) {
        return Err(not_found());
    }
    if store.compartment_of("Patient", patient_id).await?.as_deref() != Some(patient_id) {
        return Err(not_found());
    }
    let mut old = HashMap::new();
    for row in store.data_keys_of(patient_id).await? {
        let v = u32::try_from(row.version).map_err(|_| RecordsError::Integrity)?;
        let key = records.vault.open_data_key(patient_id, v, &WrappedKey(row.wrapped)).map_err(RecordsError::Vault)?;
        old.insert(row.version, key);
    }
    let latest = old.keys().max().copied().ok_or(RecordsError::Integrity)?;
    let next = u32::try_from(latest + 1).map_err(|_| RecordsError::Integrity)?;
    let (new_key, wrapped) = records.vault.new_data_key(patient_id, next).map_err(RecordsError::Vault)?;
    let row = DataKeyRow {
        compartment: patient_id.to_owned(),
        version: i64::from(next),
        kek_version: i64::from(wrapped.kek_version().map_err(RecordsError::Vault)?),
        wrapped: wrapped.0,
    };
    let reseal = |s: Sealed<'_>| -> std::result::Result<Vec<u8>, String> {
        let (ctx, sealed) = match s {
            Sealed::Version(v) => (
                RecordContext {
                    resource_type: &v.resource_type,
                    id: &v.id,
                    version: v.version_id,
                    compartment: &v.compartment,
                },
                &v.body[..],
            ),
            Sealed::BreakGlassReason { id, sealed } => {
                (RecordContext { resource_type: "BreakGlass", id, version: 1, compartment: patient_id }, sealed)
            }
        };
        let version = confidant_vault::envelope::Header::parse(sealed)
            .map_err(|_| format!("{}/{}: not an envelope", ctx.resource_type, ctx.id))?
            .key_version;
        let key = old
            .get(&i64::from(version))
            .ok_or_else(|| format!("{}/{}: its data key version {version} is missing", ctx.resource_type, ctx.id))?;
        // Ids only in the message: never content.
        let plain =
            key.open(&ctx, sealed).map_err(|_| format!("{}/{}: integrity check failed", ctx.resource_type, ctx.id))?;
        new_key.seal(&ctx, &plain).map_err(|e| e.to_string())
    };
    let rows: Vec<_> = audit.iter().map(Entry::to_row).collect();
    let done = store.rekey_compartment(&row, reseal, &rows, records.clock.now_millis()).await?;
    records.committed(None, &rows).await;
    records.forget_current_key(patient_id);
    Ok(done)
}
