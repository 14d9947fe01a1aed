//! Key rotation. Of the key-encryption key ([`rewrap_to_current`], in the
//! keyring): every wrapped key re-wrapped under the provider's current KEK
//! version, online; records are not re-encrypted.
//!
//! Of a patient's data key ([`rotate_patient_key`]): their records are
//! re-encrypted under a new data key and the old one is destroyed, in one
//! transaction (a crash leaves everything as it was; run it again).

use confidant_audit::Entry;
use confidant_store::{Rekeyed, Store};
use confidant_vault::Vault;

pub use confidant_keyring::Rewrapped;

use crate::{Records, RecordsError, Result};

/// Re-wrap the blind-index key and every data key under an older KEK version
/// than the provider's current one. `progress(done, total)` after each key.
/// See [`confidant_keyring::rewrap_to_current`].
pub async fn rewrap_to_current(
    store: &Store,
    vault: &Vault,
    batch: i64,
    progress: impl FnMut(u64, u64),
) -> Result<Rewrapped> {
    Ok(confidant_keyring::rewrap_to_current(store, vault, batch, progress).await?)
}

/// A patient's data key replaced by a new version: every version of every
/// record of theirs, and the reasons of break-glass accesses to them,
/// re-encrypted under it (by the keyring's [`confidant_keyring::Resealer`]),
/// the old versions deleted (crypto-shredded), and `audit` appended: one
/// transaction. Writes racing it re-seal under the new key (see
/// [`Records::create`]); reads pick the key by each row's version.
pub async fn rotate_patient_key(records: &Records, patient_id: &str, audit: &[Entry]) -> Result<Rekeyed> {
    let store = &records.store;
    let not_found = || RecordsError::NotFound(format!("Patient/{patient_id}"));
    if !confidant_fhir::is_valid_id(patient_id) {
        return Err(not_found());
    }
    if store.compartment_of("Patient", patient_id).await?.as_deref() != Some(patient_id) {
        return Err(not_found());
    }
    let resealer = records.keyring.resealer(patient_id).await?;
    let rows: Vec<_> = audit.iter().map(Entry::to_row).collect();
    let done =
        store.rekey_compartment(resealer.key_row(), |s| resealer.reseal(s), &rows, records.clock.now_millis()).await?;
    records.committed(None, &rows).await;
    records.keyring.forget_current_key(patient_id);
    Ok(done)
}
