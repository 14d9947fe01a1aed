//! The vault: the only place in Confidant that touches cryptographic primitives.
//!
//! Everything clinical is sealed here before it reaches storage, and opened here
//! after it leaves it. No other crate calls an AEAD, an HMAC or a KDF.
//!
//! # Key hierarchy (DESIGN.md §4)
//!
//! ```text
//! key-encryption key (KEK)      held by a [`KeyProvider`] outside the database
//!   ├── wraps ── data key (DEK), one per compartment (a patient, or the organisation)
//!   │              └── seals ── every record version of that compartment ([`DataKey::seal`])
//!   └── wraps ── blind-index key ([`BlindIndexKey`]), used only for keyed HMACs
//! ```
//!
//! # Invariants
//!
//! * Every seal uses AES-256-GCM with a fresh random 96-bit nonce drawn by
//!   AWS-LC itself ([`aws_lc_rs::aead::RandomizedNonceKey`]); callers never supply nonces.
//! * Associated data binds each ciphertext to its resource type, id, version,
//!   compartment and key version ([`RecordContext`]), and to the envelope header.
//!   A ciphertext moved to another row or another patient fails to open.
//! * The envelope is versioned ([`envelope`]): a format byte, an algorithm byte
//!   and the key version come first, so that algorithms and keys can change
//!   without a flag day.
//! * Key material is zeroized on drop and never printed (`Debug` is redacted).
//! * An open that fails is an [`VaultError::Integrity`] error, never garbage.
#![forbid(unsafe_code)]

pub mod backup;
pub mod blind;
pub mod envelope;
pub mod keyfile;
mod keys;
pub mod passkey;
pub mod password;
pub mod pkcs11;
pub mod signing;
pub mod totp;

pub use blind::{BlindIndexKey, BlindKind, BlindToken};
pub use envelope::RecordContext;
pub use keyfile::KeyFile;
pub use keys::{DataKey, KEY_LEN, KekVersionInfo, KeyProvider, Vault, WrappedKey};

/// Errors from the vault. None of them carries plaintext or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// A ciphertext or wrapped key failed authentication: it was altered,
    /// moved to another row, or sealed under another key.
    #[error("integrity check failed: the stored ciphertext was altered, moved, or sealed under another key")]
    Integrity,
    /// The envelope names a format, algorithm or key version this build does not know.
    #[error("unsupported envelope: {0}")]
    Unsupported(String),
    /// The key provider has no key of the requested version.
    #[error("key version {0} is not available from the key provider")]
    MissingKeyVersion(u32),
    /// The key file is unreadable or malformed.
    #[error("key file: {0}")]
    KeyFile(String),
    /// The system random number generator failed.
    #[error("random number generator failure")]
    Random,
    /// A passkey (WebAuthn) ceremony failed: a wrong or replayed answer, or a bad configuration.
    #[error("passkey: {0}")]
    Passkey(String),
}

/// Fill `buf` from the operating system's CSPRNG (via AWS-LC).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), VaultError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| VaultError::Random)
}

/// A new random identifier: 128 bits, lower-case hex (a valid FHIR id).
pub fn random_id() -> Result<String, VaultError> {
    let mut b = [0u8; 16];
    random_bytes(&mut b)?;
    Ok(hex::encode(b))
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104), e.g. to sign a webhook body.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SHA-256 of `data`, for hashing high-entropy secrets such as API tokens
/// (which need no slow hash: they are 256-bit random values, not passwords).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality for secrets.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod hmac_tests {
    #[test]
    fn rfc4231_test_case_2() {
        let tag = super::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
