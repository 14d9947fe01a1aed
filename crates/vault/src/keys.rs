//! Keys: the key-encryption key behind [`KeyProvider`], data keys, and the
//! [`Vault`] that wraps and unwraps them.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{self, AES_256_GCM, RandomizedNonceKey};
use zeroize::Zeroizing;

use crate::blind::BlindIndexKey;
use crate::envelope::{Aad, HEADER_LEN, Header, NONCE_LEN, RecordContext};
use crate::{VaultError, random_bytes};

/// Length of every symmetric key Confidant uses: 256 bits.
pub const KEY_LEN: usize = 32;

/// A wrapped (encrypted) key as stored in the database: an envelope whose
/// key version is the version of the key-encryption key that wrapped it.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(pub Vec<u8>);

impl WrappedKey {
    /// The version of the key-encryption key that wrapped this key.
    pub fn kek_version(&self) -> Result<u32, VaultError> {
        Ok(Header::parse(&self.0)?.key_version)
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// Holds the key-encryption key (KEK) and wraps data keys with it.
///
/// Implementations: the key file ([`crate::KeyFile`]); a passphrase and a
/// PKCS#11 HSM follow behind this same trait. An implementation must never
/// hand out the KEK itself: only wrap and unwrap.
pub trait KeyProvider: Send + Sync {
    /// What this provider is, for status output. Never key material.
    fn describe(&self) -> String;
    /// The KEK version used for new wraps.
    fn current_version(&self) -> u32;
    /// Encrypt `key` under KEK version `version`, binding `label` as associated data.
    fn wrap(&self, version: u32, label: &[u8], key: &[u8; KEY_LEN]) -> Result<WrappedKey, VaultError>;
    /// Decrypt a wrapped key; fails with [`VaultError::Integrity`] if it was
    /// altered, wrapped under another KEK, or for another label.
    fn unwrap(&self, label: &[u8], wrapped: &WrappedKey) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError>;
    /// Every version the provider holds, oldest first, each with its key check
    /// value where the provider can show one without revealing the key.
    fn versions(&self) -> Vec<KekVersionInfo> {
        vec![KekVersionInfo { version: self.current_version(), check_value: None }]
    }
    /// Add a new version (it becomes the current one) and return its number.
    /// The new key is made where the provider keeps its keys (appended to the
    /// key file, generated inside the token) and never handed out.
    fn add_version(&self) -> Result<u32, VaultError> {
        Err(VaultError::Unsupported(format!("{} cannot add a key version", self.describe())))
    }
    /// Remove version `version` for good (never the current one; the caller
    /// checks that nothing is wrapped under it any more). Returns the key check
    /// value that identifies the provider's key from now on.
    fn retire_version(&self, version: u32) -> Result<String, VaultError> {
        let _ = version;
        Err(VaultError::Unsupported(format!("{} cannot retire a key version", self.describe())))
    }
}

/// One version of the key-encryption key, as [`KeyProvider::versions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekVersionInfo {
    pub version: u32,
    /// The key check value, where the provider can compute one (`None`: e.g. in a token).
    pub check_value: Option<String>,
}

/// An AES-256-GCM key that seals into and opens envelopes. Shared by data keys
/// and by providers that hold their KEK in process memory.
pub(crate) struct SealingKey {
    key: RandomizedNonceKey,
    version: u32,
}

impl SealingKey {
    pub(crate) fn new(bytes: &[u8; KEY_LEN], version: u32) -> Result<Self, VaultError> {
        // AWS-LC zeroizes its copy of the key schedule when the key is dropped.
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| VaultError::Integrity)?;
        Ok(SealingKey { key, version })
    }

    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Seal `plaintext`; `aad` receives the header and returns the full associated data.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: impl FnOnce(Header) -> Aad) -> Result<Vec<u8>, VaultError> {
        let header = Header::v1(self.version);
        let aad = aad(header);
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&[0u8; NONCE_LEN]);
        let mut body = Vec::with_capacity(plaintext.len() + 16);
        body.extend_from_slice(plaintext);
        let nonce = self
            .key
            .seal_in_place_append_tag(aead::Aad::from(aad.bytes()), &mut body)
            .map_err(|_| VaultError::Random)?;
        out[HEADER_LEN..HEADER_LEN + NONCE_LEN].copy_from_slice(nonce.as_ref());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Open an envelope sealed by [`SealingKey::seal`] with the same associated data.
    pub(crate) fn open(
        &self,
        envelope: &[u8],
        aad: impl FnOnce(Header) -> Aad,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let header = Header::parse(envelope)?;
        if header.key_version != self.version {
            return Err(VaultError::MissingKeyVersion(header.key_version));
        }
        let aad = aad(header);
        let nonce = aead::Nonce::try_assume_unique_for_key(&envelope[HEADER_LEN..HEADER_LEN + NONCE_LEN])
            .map_err(|_| VaultError::Integrity)?;
        let mut body = Zeroizing::new(envelope[HEADER_LEN + NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(nonce, aead::Aad::from(aad.bytes()), body.as_mut_slice())
            .map_err(|_| VaultError::Integrity)?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

/// A per-compartment data key (DEK). It seals every record of one patient
/// (or of the organisation compartment). It exists unwrapped only in memory.
pub struct DataKey {
    key: SealingKey,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(version {}, redacted)", self.key.version())
    }
}

impl DataKey {
    /// The data key version written into every envelope it seals.
    pub fn version(&self) -> u32 {
        self.key.version()
    }

    /// Seal one record version. The result is safe to store anywhere.
    pub fn seal(&self, ctx: &RecordContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.key.seal(plaintext, |h| ctx.aad(h))
    }

    /// Open one record version sealed for exactly `ctx`.
    pub fn open(&self, ctx: &RecordContext<'_>, envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.key.open(envelope, |h| ctx.aad(h))
    }
}

fn data_key_label(compartment: &str, version: u32) -> Vec<u8> {
    let mut a = Aad::new("confidant.data-key.v1", Header::v1(version));
    a.push(compartment.as_bytes());
    a.bytes().to_vec()
}

const BLIND_INDEX_LABEL: &[u8] = b"confidant.blind-index-key.v1";

/// The vault: creates and opens the keys below the KEK.
#[derive(Clone)]
pub struct Vault {
    provider: Arc<dyn KeyProvider>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vault({})", self.provider.describe())
    }
}

impl Vault {
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        Vault { provider }
    }

    pub fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }

    /// A fresh random data key for `compartment`, and its wrapped form to store.
    pub fn new_data_key(&self, compartment: &str, version: u32) -> Result<(DataKey, WrappedKey), VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(bytes.as_mut_slice())?;
        let wrapped =
            self.provider.wrap(self.provider.current_version(), &data_key_label(compartment, version), &bytes)?;
        Ok((DataKey { key: SealingKey::new(&bytes, version)? }, wrapped))
    }

    /// Unwrap the stored data key of `compartment`.
    pub fn open_data_key(&self, compartment: &str, version: u32, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
        let bytes = self.provider.unwrap(&data_key_label(compartment, version), wrapped)?;
        Ok(DataKey { key: SealingKey::new(&bytes, version)? })
    }

    /// Re-wrap a stored data key under the provider's current KEK version
    /// (key rotation). The data key itself, and so every record, is unchanged.
    pub fn rewrap_data_key(
        &self,
        compartment: &str,
        version: u32,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        let label = data_key_label(compartment, version);
        let bytes = self.provider.unwrap(&label, wrapped)?;
        self.provider.wrap(self.provider.current_version(), &label, &bytes)
    }

    /// Re-wrap the stored blind-index key under the current KEK version.
    pub fn rewrap_blind_index_key(&self, wrapped: &WrappedKey) -> Result<WrappedKey, VaultError> {
        let bytes = self.provider.unwrap(BLIND_INDEX_LABEL, wrapped)?;
        self.provider.wrap(self.provider.current_version(), BLIND_INDEX_LABEL, &bytes)
    }

    /// A fresh random blind-index key, and its wrapped form to store. Created
    /// once per instance; independent of every encryption key.
    pub fn new_blind_index_key(&self) -> Result<(BlindIndexKey, WrappedKey), VaultError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(bytes.as_mut_slice())?;
        let wrapped = self.provider.wrap(self.provider.current_version(), BLIND_INDEX_LABEL, &bytes)?;
        Ok((BlindIndexKey::from_bytes(&bytes), wrapped))
    }

    /// Unwrap the stored blind-index key.
    pub fn open_blind_index_key(&self, wrapped: &WrappedKey) -> Result<BlindIndexKey, VaultError> {
        let bytes = self.provider.unwrap(BLIND_INDEX_LABEL, wrapped)?;
        Ok(BlindIndexKey::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyFile;

    fn vault() -> Vault {
        Vault::new(Arc::new(KeyFile::generate("inst").unwrap_or_else(|e| panic!("{e}"))))
    }

    fn ctx<'a>(id: &'a str, patient: &'a str) -> RecordContext<'a> {
        RecordContext { resource_type: "DocumentReference", id, version: 1, compartment: patient }
    }

    #[test]
    fn seal_open_roundtrip_and_fresh_nonces() {
        let v = vault();
        let (dk, _) = v.new_data_key("p1", 1).unwrap();
        let a = dk.seal(&ctx("n1", "p1"), b"session note").unwrap();
        let b = dk.seal(&ctx("n1", "p1"), b"session note").unwrap();
        assert_ne!(a, b, "two seals of the same plaintext must differ (random nonce)");
        assert_eq!(&dk.open(&ctx("n1", "p1"), &a).unwrap()[..], b"session note");
        assert!(!a.windows(12).any(|w| w == b"session note"));
    }

    #[test]
    fn any_flipped_bit_fails_integrity() {
        let v = vault();
        let (dk, _) = v.new_data_key("p1", 1).unwrap();
        let sealed = dk.seal(&ctx("n1", "p1"), b"text").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(dk.open(&ctx("n1", "p1"), &bad).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn context_binding_rejects_moved_ciphertext() {
        let v = vault();
        let (dk, wrapped) = v.new_data_key("p1", 1).unwrap();
        let sealed = dk.seal(&ctx("n1", "p1"), b"text").unwrap();
        assert!(dk.open(&ctx("n2", "p1"), &sealed).is_err());
        assert!(dk.open(&ctx("n1", "p2"), &sealed).is_err());
        let mut other = ctx("n1", "p1");
        other.version = 2;
        assert!(dk.open(&other, &sealed).is_err());
        // A wrapped data key moved to another patient does not unwrap.
        assert!(matches!(v.open_data_key("p2", 1, &wrapped), Err(VaultError::Integrity)));
        assert!(v.open_data_key("p1", 1, &wrapped).is_ok());
    }

    #[test]
    fn other_kek_cannot_unwrap() {
        let (_, wrapped) = vault().new_data_key("p1", 1).unwrap();
        assert!(matches!(vault().open_data_key("p1", 1, &wrapped), Err(VaultError::Integrity)));
    }

    #[test]
    fn debug_output_is_redacted() {
        let v = vault();
        let (dk, _) = v.new_data_key("p1", 1).unwrap();
        assert_eq!(format!("{dk:?}"), "DataKey(version 1, redacted)");
    }
}
