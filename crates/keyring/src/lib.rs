//! The keyring: the one place where envelopes are sealed and opened and
//! search values blinded, between the vault (keys, AEAD) and the services
//! above it (records, identity).
//!
//! * Where is a note encrypted? [`Keyring::seal_version`]; decrypted?
//!   [`Keyring::open_version`]. Break-glass reasons: [`Keyring::seal_break_glass`],
//!   [`Keyring::open_break_glass`]. The identity service's secrets:
//!   [`Keyring::seal_secret`], [`Keyring::open_secret`]. A patient's key
//!   rotation re-seals through [`Resealer`].
//! * Where are values blinded? [`Keyring::tokens`], [`Keyring::search_token`],
//!   [`Keyring::blind`].
//! * Every ciphertext is bound to a typed [`RecordContext`]
//!   (`record`, `break_glass`, `secret`): no context is built by hand here.
//!
//! Data keys are unwrapped by the vault on first use and kept in memory
//! (bounded) by compartment and version.
#![forbid(unsafe_code)]

mod cache;
pub mod rewrap;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use confidant_store::{DataKeyRow, ORGANISATION, Sealed, SearchToken, Store, StoreError, VersionRow};
use confidant_vault::envelope::Header;
use confidant_vault::{BlindIndexKey, BlindKind, DataKey, RecordContext, Vault, VaultError, WrappedKey};
use zeroize::Zeroizing;

use cache::KeyCache;
pub use rewrap::{Rewrapped, rewrap_to_current};

/// The instance setting that holds the wrapped blind-index key.
pub const SETTING_BLIND_KEY: &str = "blind_index_key";

/// Errors of the keyring. Messages name ids, never content.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A ciphertext or wrapped key that does not open (altered, moved, or its key missing).
    #[error("stored data failed its integrity check")]
    Integrity,
    /// The vault's KEK cannot open the blind-index key: another instance's key.
    #[error("the key-encryption key does not match this instance's data")]
    WrongKey,
    /// The store has no keys yet.
    #[error("instance is not initialised: {0}")]
    NotInitialised(&'static str),
    #[error(transparent)]
    Store(StoreError),
    #[error("key error: {0}")]
    Vault(VaultError),
}

impl From<StoreError> for KeyringError {
    fn from(e: StoreError) -> Self {
        KeyringError::Store(e)
    }
}

pub type Result<T, E = KeyringError> = std::result::Result<T, E>;

/// The KEK version that wrapped `w`, as the store keeps it.
pub fn kek_version(w: &WrappedKey) -> Result<i64> {
    Ok(i64::from(w.kek_version().map_err(KeyringError::Vault)?))
}

/// The keys of a new instance, made but not yet stored.
pub struct InstanceKeys {
    blind: WrappedKey,
    organisation: DataKeyRow,
}

impl std::fmt::Debug for InstanceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceKeys(wrapped)")
    }
}

impl InstanceKeys {
    /// A blind-index key and the organisation's data key, wrapped by the vault's KEK.
    pub fn new(vault: &Vault) -> Result<InstanceKeys> {
        let (_, blind) = vault.new_blind_index_key().map_err(KeyringError::Vault)?;
        let (_, org) = vault.new_data_key(ORGANISATION, 1).map_err(KeyringError::Vault)?;
        let organisation = DataKeyRow {
            compartment: ORGANISATION.into(),
            version: 1,
            kek_version: kek_version(&org)?,
            wrapped: org.0,
        };
        Ok(InstanceKeys { blind, organisation })
    }

    /// Store them in a new, empty, migrated store.
    pub async fn store(self, store: &Store, now: i64) -> Result<()> {
        store.insert_setting(SETTING_BLIND_KEY, &self.blind.0, now).await?;
        store.insert_data_key(&self.organisation, now).await?;
        Ok(())
    }
}

/// The keyring of one instance.
pub struct Keyring {
    store: Store,
    vault: Vault,
    blind: BlindIndexKey,
    keys: Mutex<KeyCache>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({:?})", self.vault)
    }
}

impl Keyring {
    /// The keyring of an initialised store. Fails with [`KeyringError::WrongKey`]
    /// if the vault's KEK is not this instance's.
    pub async fn open(store: Store, vault: Vault) -> Result<Keyring> {
        let wrapped =
            store.setting(SETTING_BLIND_KEY).await?.ok_or(KeyringError::NotInitialised("no blind-index key"))?;
        let blind = vault.open_blind_index_key(&WrappedKey(wrapped)).map_err(|e| match e {
            VaultError::Integrity | VaultError::MissingKeyVersion(_) => KeyringError::WrongKey,
            other => KeyringError::Vault(other),
        })?;
        Ok(Keyring { store, vault, blind, keys: Mutex::new(KeyCache::default()) })
    }

    /// The vault underneath (its key provider: versions, description).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    // ----- data keys -------------------------------------------------------------------

    /// A compartment's data key: the given version, or the current one.
    async fn data_key(&self, compartment: &str, version: Option<i64>) -> Result<Arc<DataKey>> {
        if let Some(k) = self.cached(compartment, version) {
            return Ok(k);
        }
        let row = match version {
            Some(v) => self.store.data_key(compartment, v).await?,
            None => self.store.current_data_key(compartment).await?,
        };
        let row = row.ok_or_else(|| {
            tracing::error!(compartment, "data key missing");
            KeyringError::Integrity
        })?;
        let version_u32 = u32::try_from(row.version).map_err(|_| KeyringError::Integrity)?;
        let key = self.vault.open_data_key(compartment, version_u32, &WrappedKey(row.wrapped)).map_err(|e| {
            tracing::error!(compartment, version = row.version, error = %e, "data key could not be unwrapped");
            KeyringError::Integrity
        })?;
        let key = Arc::new(key);
        self.remember(compartment, row.version, key.clone(), version.is_none());
        Ok(key)
    }

    fn cached(&self, compartment: &str, version: Option<i64>) -> Option<Arc<DataKey>> {
        self.keys.lock().ok()?.get(compartment, version)
    }

    fn remember(&self, compartment: &str, version: i64, key: Arc<DataKey>, current: bool) {
        if let Ok(mut cache) = self.keys.lock() {
            cache.insert(compartment, version, key, current);
        }
    }

    /// The current data key of `compartment`, to seal new versions with.
    pub async fn current_key(&self, compartment: &str) -> Result<Arc<DataKey>> {
        self.data_key(compartment, None).await
    }

    /// A first data key (version 1) for a new compartment (a new patient),
    /// and its wrapped row for the store. Not cached until [`Keyring::stored_new_key`].
    pub fn new_compartment_key(&self, compartment: &str) -> Result<(Arc<DataKey>, DataKeyRow)> {
        let (key, wrapped) = self.vault.new_data_key(compartment, 1).map_err(KeyringError::Vault)?;
        let row = DataKeyRow {
            compartment: compartment.to_owned(),
            version: 1,
            kek_version: kek_version(&wrapped)?,
            wrapped: wrapped.0,
        };
        Ok((Arc::new(key), row))
    }

    /// A key of [`Keyring::new_compartment_key`] was committed: it is current.
    pub fn stored_new_key(&self, compartment: &str, version: i64, key: Arc<DataKey>) {
        self.remember(compartment, version, key, true);
    }

    /// Forget which data key version is current for `compartment` (a rotation
    /// replaced it; the store refused a write sealed with it as
    /// [`StoreError::StaleKey`]); the next write looks it up again.
    pub fn forget_current_key(&self, compartment: &str) {
        if let Ok(mut cache) = self.keys.lock() {
            cache.forget_current(compartment);
        }
    }

    // ----- record versions --------------------------------------------------------------

    /// Encrypt one resource version with `key` (the compartment's). The only
    /// place a record is sealed.
    pub fn seal_version(
        &self,
        key: &DataKey,
        resource_type: &str,
        id: &str,
        version: i64,
        compartment: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let ctx = RecordContext::record(resource_type, id, version, compartment);
        key.seal(&ctx, plaintext).map_err(KeyringError::Vault)
    }

    /// Decrypt one stored version, with the key version that sealed it. The
    /// only place a record is opened. A failed check is logged by id (never content).
    pub async fn open_version(&self, row: &VersionRow) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.data_key(&row.compartment, Some(row.key_version)).await?;
        let ctx = RecordContext::record(&row.resource_type, &row.id, row.version_id, &row.compartment);
        key.open(&ctx, &row.body).map_err(|e| {
            // Ids only: never content (DESIGN.md §11.2).
            tracing::error!(
                resource_type = %row.resource_type, id = %row.id, version = row.version_id,
                error = %e, "stored record failed its integrity check"
            );
            KeyringError::Integrity
        })
    }

    // ----- break-glass reasons ----------------------------------------------------------

    /// Seal the reason of the break-glass `id` with `patient`'s current key.
    /// Returns the envelope and the key version (for the store's stale-key check).
    pub async fn seal_break_glass(&self, id: &str, patient: &str, reason: &[u8]) -> Result<(Vec<u8>, i64)> {
        let key = self.current_key(patient).await?;
        let sealed = key.seal(&RecordContext::break_glass(id, patient), reason).map_err(KeyringError::Vault)?;
        Ok((sealed, i64::from(key.version())))
    }

    /// Open a reason sealed by [`Keyring::seal_break_glass`] (with the key
    /// version that sealed it: a rotation may have made another current since).
    pub async fn open_break_glass(&self, id: &str, patient: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.data_key(patient, Some(sealed_with(sealed)?)).await?;
        key.open(&RecordContext::break_glass(id, patient), sealed).map_err(|_| KeyringError::Integrity)
    }

    // ----- small secrets of the identity service ----------------------------------------

    /// Seal a small secret of the organisation (a username, a TOTP secret),
    /// bound to its kind and owner id.
    pub async fn seal_secret(&self, kind: &str, owner: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let key = self.current_key(ORGANISATION).await?;
        key.seal(&RecordContext::secret(kind, owner), secret).map_err(KeyringError::Vault)
    }

    /// Open a secret sealed by [`Keyring::seal_secret`].
    pub async fn open_secret(&self, kind: &str, owner: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.data_key(ORGANISATION, Some(sealed_with(sealed)?)).await?;
        key.open(&RecordContext::secret(kind, owner), sealed).map_err(|_| KeyringError::Integrity)
    }

    // ----- blind indexes ----------------------------------------------------------------

    /// The blind token of one search value of `resource_type`'s `param`.
    pub fn search_token(&self, resource_type: &str, param: &str, kind: BlindKind, value: &str) -> Vec<u8> {
        self.blind.token(resource_type, param, kind, value).to_vec()
    }

    /// Blind tokens for the validated search values of a resource.
    pub fn tokens<'a>(
        &self,
        resource_type: &str,
        index: impl IntoIterator<Item = (&'static str, BlindKind, &'a str)>,
    ) -> Vec<SearchToken> {
        index
            .into_iter()
            .map(|(param, kind, value)| SearchToken {
                param,
                token: self.search_token(resource_type, param, kind, value),
            })
            .collect()
    }

    /// The prefix tokens of one name part (`part`: `family`, `given`) of
    /// `resource_type`, for the name-prefix index column (`confidant_fhir::PREFIX_INDEX`):
    /// always `prefix_tokens` of them, whatever the name's length. The first
    /// ones blind the folded name's prefixes of `min`, `min + 1`, … characters
    /// (as many as it has); the rest are dummies, keyed like the real ones, so a
    /// reader without the key cannot tell them apart, and derived from the whole
    /// name under their own domain, so no search term can ever produce one. They
    /// are returned sorted by value: the order rows are written in (SQLite's
    /// rowids) does not tell which prefix is which.
    ///
    /// `folded` is the name as prefix search folds it; prefixes are cut on
    /// characters, not bytes.
    pub fn name_prefix_tokens(
        &self,
        resource_type: &str,
        part: &str,
        folded: &str,
        (min, max): (usize, usize),
    ) -> Vec<Vec<u8>> {
        let chars: Vec<char> = folded.chars().collect();
        let mut out: Vec<Vec<u8>> = (min..=max)
            .map(|len| match chars.get(..len) {
                // A folded search term never ends in a space: such a prefix is a dummy too
                // (blinded as it is, it would equal the prefix one shorter).
                Some(prefix) if prefix.last() != Some(&' ') => {
                    self.name_prefix_token(resource_type, part, &prefix.iter().collect::<String>())
                }
                _ => self
                    .blind
                    .token(resource_type, &prefix_domain(part, "pad"), BlindKind::Text, &format!("{len}:{folded}"))
                    .to_vec(),
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The token a name-part search looks up: `prefix` is the folded search
    /// term, cut to the longest indexed prefix. Never equal to a token of
    /// [`Keyring::search_token`] (another domain: `<part>.prefix`).
    pub fn name_prefix_token(&self, resource_type: &str, part: &str, prefix: &str) -> Vec<u8> {
        self.blind.token(resource_type, &prefix_domain(part, "prefix"), BlindKind::Text, prefix).to_vec()
    }

    /// A keyed, one-way token of a value (usernames, recovery codes): the same
    /// blind-index key, under its own domain.
    pub fn blind(&self, kind: &str, value: &str) -> Vec<u8> {
        self.blind.token("_identity", kind, BlindKind::Identifier, value).to_vec()
    }

    // ----- a patient's key rotation -----------------------------------------------------

    /// What re-seals a patient's data under a new data key (the next version
    /// after their latest): every key of theirs unwrapped, the new one made.
    pub async fn resealer(&self, patient_id: &str) -> Result<Resealer> {
        let mut old = HashMap::new();
        for row in self.store.data_keys_of(patient_id).await? {
            let v = u32::try_from(row.version).map_err(|_| KeyringError::Integrity)?;
            let key = self.vault.open_data_key(patient_id, v, &WrappedKey(row.wrapped)).map_err(KeyringError::Vault)?;
            old.insert(row.version, key);
        }
        let latest = old.keys().max().copied().ok_or(KeyringError::Integrity)?;
        let next = u32::try_from(latest + 1).map_err(|_| KeyringError::Integrity)?;
        let (new, wrapped) = self.vault.new_data_key(patient_id, next).map_err(KeyringError::Vault)?;
        let row = DataKeyRow {
            compartment: patient_id.to_owned(),
            version: i64::from(next),
            kek_version: kek_version(&wrapped)?,
            wrapped: wrapped.0,
        };
        Ok(Resealer { patient: patient_id.to_owned(), old, new, row })
    }
}

/// The blinding domain of a name part's prefix tokens (`family.prefix`) or
/// dummies (`family.pad`): a parameter name no search parameter has, so
/// these tokens never equal an exact-value token.
fn prefix_domain(part: &str, what: &str) -> String {
    format!("{part}.{what}")
}

/// The data key version that sealed an envelope.
fn sealed_with(sealed: &[u8]) -> Result<i64> {
    Ok(i64::from(Header::parse(sealed).map_err(|_| KeyringError::Integrity)?.key_version))
}

/// A patient's old data keys and the new one: see [`Keyring::resealer`].
pub struct Resealer {
    patient: String,
    old: HashMap<i64, DataKey>,
    new: DataKey,
    row: DataKeyRow,
}

impl std::fmt::Debug for Resealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resealer({}, version {})", self.patient, self.row.version)
    }
}

impl Resealer {
    /// The new data key, wrapped, as the store keeps it.
    pub fn key_row(&self) -> &DataKeyRow {
        &self.row
    }

    /// Open `s` with the key version that sealed it and seal it again with
    /// the new key, in the same context. The message names ids only.
    pub fn reseal(&self, s: Sealed<'_>) -> std::result::Result<Vec<u8>, String> {
        let (ctx, sealed) = match s {
            Sealed::Version(v) => {
                (RecordContext::record(&v.resource_type, &v.id, v.version_id, &v.compartment), &v.body[..])
            }
            Sealed::BreakGlassReason { id, sealed } => (RecordContext::break_glass(id, &self.patient), sealed),
        };
        let version = Header::parse(sealed)
            .map_err(|_| format!("{}/{}: not an envelope", ctx.resource_type, ctx.id))?
            .key_version;
        let key = self
            .old
            .get(&i64::from(version))
            .ok_or_else(|| format!("{}/{}: its data key version {version} is missing", ctx.resource_type, ctx.id))?;
        // Ids only in the message: never content.
        let plain =
            key.open(&ctx, sealed).map_err(|_| format!("{}/{}: integrity check failed", ctx.resource_type, ctx.id))?;
        self.new.seal(&ctx, &plain).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vaults_organisation_is_the_stores() {
        assert_eq!(confidant_vault::envelope::ORGANISATION_COMPARTMENT, ORGANISATION);
    }

    /// The typed contexts are the fields sealed before they existed: existing databases still open.
    #[test]
    fn typed_contexts_are_the_hand_built_ones() {
        let bg = RecordContext::break_glass("b1", "p1");
        assert_eq!(bg, RecordContext { resource_type: "BreakGlass", id: "b1", version: 1, compartment: "p1" });
        let secret = RecordContext::secret("Username", "u1");
        assert_eq!(
            secret,
            RecordContext { resource_type: "Username", id: "u1", version: 1, compartment: ORGANISATION }
        );
        let rec = RecordContext::record("Patient", "p1", 3, "p1");
        assert_eq!(rec, RecordContext { resource_type: "Patient", id: "p1", version: 3, compartment: "p1" });
    }
}
