//! The keys' state for the admin's page: which KEK is current, how many data
//! keys each KEK version wraps, and how old each version is. No key material.

use confidant_policy::Principal;

use crate::{Records, RecordsError, Result};

/// One KEK version.
#[derive(Debug, Clone)]
pub struct KekVersion {
    pub version: u32,
    /// How many data keys it wraps (0: it can be retired, unless it is current).
    pub data_keys: i64,
    /// When it was made (Unix ms), where known.
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct KeyStatus {
    /// The key provider, as it describes itself (a file, a token: never key material).
    pub provider: String,
    pub current: u32,
    /// Oldest first: every version still wrapping a key, and the current one.
    pub versions: Vec<KekVersion>,
}

/// The instance setting that records when KEK version `v` was made (version 1
/// is as old as the instance; a rotation notes each later one).
pub fn kek_made_setting(v: u32) -> String {
    if v == 1 { "instance_id".to_owned() } else { format!("kek_v{v}_created") }
}

/// When KEK version `v` was made (Unix ms), where known.
pub async fn kek_made_at(store: &confidant_store::Store, v: u32) -> Result<Option<i64>> {
    Ok(store.setting_created(&kek_made_setting(v)).await?)
}

impl Records {
    /// The KEK version new keys are wrapped with.
    pub fn current_kek_version(&self) -> u32 {
        self.keyring.vault().provider().current_version()
    }

    /// The KEK versions in use (admins only).
    pub async fn key_status(&self, p: &Principal) -> Result<KeyStatus> {
        confidant_policy::may_manage_keys(p).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        let current = self.keyring.vault().provider().current_version();
        let mut versions: Vec<KekVersion> = Vec::new();
        let mut usage = self.store.kek_usage().await?;
        if !usage.iter().any(|(v, _)| *v == i64::from(current)) {
            usage.push((i64::from(current), 0));
        }
        for (v, n) in usage {
            let Ok(version) = u32::try_from(v) else { continue };
            versions.push(KekVersion { version, data_keys: n, created_at: kek_made_at(&self.store, version).await? });
        }
        versions.sort_by_key(|k| k.version);
        Ok(KeyStatus { provider: self.keyring.vault().provider().describe(), current, versions })
    }
}
