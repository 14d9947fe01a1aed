//! Rotation of the key-encryption key: every wrapped key re-wrapped under the
//! provider's current KEK version, online. Data keys do not change, so records
//! are not re-encrypted and running servers' key caches stay valid.
//!
//! Resumable by construction: each key is re-wrapped by a conditional update
//! of its own row, so a crash loses at most the key in hand, and running again
//! finds exactly the keys still under an older version.

use confidant_store::Store;
use confidant_vault::{Vault, WrappedKey};

use crate::{KeyringError, Result, SETTING_BLIND_KEY};

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
    let wrapped = store.setting(SETTING_BLIND_KEY).await?.ok_or(KeyringError::NotInitialised("no blind-index key"))?;
    if WrappedKey(wrapped.clone()).kek_version().map_err(KeyringError::Vault)? < target {
        let new = vault.rewrap_blind_index_key(&WrappedKey(wrapped.clone())).map_err(KeyringError::Vault)?;
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
            let version = u32::try_from(row.version).map_err(|_| KeyringError::Integrity)?;
            let new = vault
                .rewrap_data_key(&row.compartment, version, &WrappedKey(row.wrapped.clone()))
                .map_err(KeyringError::Vault)?;
            if store.rewrap_data_key(&row, &new.0, target_i).await? {
                done += 1;
            }
            progress(done, total.max(0) as u64);
        }
    }
    Ok(Rewrapped { kek_version: target, data_keys: done, blind_index_key: blind })
}
