//! Unwrapped data keys, and which version is current per compartment. A
//! per-patient key rotation in another process makes `current` stale: the
//! store refuses a write sealed with a replaced key (`StoreError::StaleKey`),
//! and the write forgets the entry and seals again.

use std::collections::HashMap;
use std::sync::Arc;

use confidant_vault::DataKey;

/// Unwrapped data keys kept in memory; beyond this the cache starts over.
const KEY_CACHE_LIMIT: usize = 4096;

#[derive(Default)]
pub(crate) struct KeyCache {
    keys: HashMap<(String, i64), Arc<DataKey>>,
    current: HashMap<String, i64>,
}

impl KeyCache {
    /// The given version, or the current one if known.
    pub(crate) fn get(&self, compartment: &str, version: Option<i64>) -> Option<Arc<DataKey>> {
        let version = version.or_else(|| self.current.get(compartment).copied())?;
        self.keys.get(&(compartment.to_owned(), version)).cloned()
    }

    pub(crate) fn insert(&mut self, compartment: &str, version: i64, key: Arc<DataKey>, current: bool) {
        if self.keys.len() >= KEY_CACHE_LIMIT {
            self.keys.clear();
            self.current.clear();
        }
        self.keys.insert((compartment.to_owned(), version), key);
        if current {
            self.current.insert(compartment.to_owned(), version);
        }
    }

    pub(crate) fn forget_current(&mut self, compartment: &str) {
        self.current.remove(compartment);
    }
}
