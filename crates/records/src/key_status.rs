//! The keys' state, one account for `confidant keys status` and the admin's
//! page: which KEK is current, every version the provider holds, how many data
//! keys each wraps, which wraps the blind-index key, and how old each is. No
//! key material (a key check value identifies a version, it reveals nothing).

use confidant_keyring::{SETTING_BLIND_KEY, kek_version};
use confidant_policy::Principal;
use confidant_store::Store;
use confidant_vault::{KeyProvider, WrappedKey};

use crate::{Records, RecordsError, Result};

/// One KEK version.
#[derive(Debug, Clone)]
pub struct KekVersion {
    pub version: u32,
    /// The key check value, where the provider computes one (`None`: a token).
    pub check_value: Option<String>,
    /// How many data keys it wraps (0: it can be retired, unless it is current).
    pub data_keys: i64,
    /// When it was made (Unix ms), where known.
    pub created_at: Option<i64>,
    pub current: bool,
    /// It wraps the blind-index key.
    pub blind_index: bool,
}

impl KekVersion {
    /// Nothing is wrapped under it and it is not current: it can be retired.
    pub fn retirable(&self) -> bool {
        !self.current && self.data_keys == 0 && !self.blind_index
    }
}

/// Every KEK version `provider` holds, and any other still wrapping a data
/// key in `store`, oldest first.
pub async fn kek_versions(store: &Store, provider: &dyn KeyProvider) -> Result<Vec<KekVersion>> {
    let current = provider.current_version();
    let usage = store.kek_usage().await?;
    let blind = store.setting(SETTING_BLIND_KEY).await?.map(WrappedKey);
    let blind_version = blind.as_ref().and_then(|w| kek_version(w).ok()).and_then(|v| u32::try_from(v).ok());
    let mut held: Vec<(u32, Option<String>)> =
        provider.versions().into_iter().map(|v| (v.version, v.check_value)).collect();
    for (v, _) in &usage {
        if let Ok(v) = u32::try_from(*v)
            && !held.iter().any(|(h, _)| *h == v)
        {
            held.push((v, None));
        }
    }
    held.sort_by_key(|(v, _)| *v);
    let mut versions = Vec::with_capacity(held.len());
    for (version, check_value) in held {
        versions.push(KekVersion {
            version,
            check_value,
            data_keys: usage.iter().find(|(v, _)| *v == i64::from(version)).map(|(_, n)| *n).unwrap_or(0),
            created_at: kek_made_at(store, version).await?,
            current: version == current,
            blind_index: blind_version == Some(version),
        });
    }
    Ok(versions)
}

#[derive(Debug, Clone)]
pub struct KeyStatus {
    /// The key provider, as it describes itself (a file, a token: never key material).
    pub provider: String,
    pub current: u32,
    /// Oldest first: see [`kek_versions`].
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
        let provider = self.keyring.vault().provider();
        let current = provider.current_version();
        let versions = kek_versions(&self.store, provider).await?;
        Ok(KeyStatus { provider: self.keyring.vault().provider().describe(), current, versions })
    }
}
