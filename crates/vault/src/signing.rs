//! Ed25519 signatures (RFC 8032) for audit checkpoints, by a key that is
//! separate from every data key (DESIGN.md §5). AWS-LC does the arithmetic.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::{VaultError, random_bytes};

/// An Ed25519 signing key. Its seed is zeroized on drop and never printed.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    seed: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", hex::encode(self.public_key()))
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, VaultError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        random_bytes(seed.as_mut_slice())?;
        SigningKey::from_seed(&seed)
    }

    /// The key for a 32-byte seed (as stored in its key file).
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, VaultError> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| VaultError::KeyFile("not an Ed25519 seed".into()))?;
        Ok(SigningKey { pair, seed: Zeroizing::new(*seed) })
    }

    /// The seed, to write the key file. Handle with care.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public key, to give to whoever verifies checkpoints.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

const KEY_LINE_PREFIX: &str = "confidant-audit-signing-key:v1:";

impl SigningKey {
    /// Write this key to a new key file (mode 0600, never overwritten), for `instance_id`.
    pub fn create_file(&self, path: &std::path::Path, instance_id: &str) -> Result<(), VaultError> {
        use base64::Engine;
        let mut text = Zeroizing::new(String::from(
            "# Confidant audit signing key: signs the audit log's checkpoints.\n\
             # Keep it secret and apart from the data, like the key-encryption key.\n",
        ));
        text.push_str(&format!(
            "{KEY_LINE_PREFIX}{instance_id}:{}\n",
            base64::engine::general_purpose::STANDARD.encode(self.seed.as_slice())
        ));
        crate::keyfile::write_secret_file(path, &text)
    }

    /// Read a key file written by [`SigningKey::create_file`]: the instance id and the key.
    pub fn load_file(path: &std::path::Path) -> Result<(String, SigningKey), VaultError> {
        use base64::Engine;
        let text = crate::keyfile::read_secret_file(path)?;
        let bad = || VaultError::KeyFile(format!("{} is not a Confidant audit signing key file", path.display()));
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).ok_or_else(bad)?;
        let (instance, b64) = line.strip_prefix(KEY_LINE_PREFIX).and_then(|r| r.split_once(':')).ok_or_else(bad)?;
        let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?);
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(raw.as_slice().try_into().map_err(|_| bad())?);
        Ok((instance.to_owned(), SigningKey::from_seed(&seed)?))
    }
}

/// Verify an Ed25519 signature.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key).verify(message, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1: empty message.
        let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let k = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(hex::encode(k.public_key()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(
            hex::encode(k.sign(b"")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(verify(&k.public_key(), b"", &k.sign(b"")));
        assert!(!verify(&k.public_key(), b"x", &k.sign(b"")));
        let other = SigningKey::generate().unwrap();
        assert!(!verify(&other.public_key(), b"", &k.sign(b"")));
        assert!(!format!("{k:?}").contains(&hex::encode(seed)));
    }

    #[test]
    fn key_file_roundtrip_mode_no_overwrite_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("confidant-sk-{}", crate::random_id().unwrap()));
        let path = dir.join("keys").join("inst.audit-key");
        let key = SigningKey::generate().unwrap();
        key.create_file(&path, "inst").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (instance, loaded) = SigningKey::load_file(&path).unwrap();
        assert_eq!(instance, "inst");
        assert_eq!(loaded.public_key(), key.public_key());
        let before = std::fs::read(&path).unwrap();
        assert!(SigningKey::generate().unwrap().create_file(&path, "inst").is_err(), "never overwritten");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        for bad in ["", "# nothing\n", "confidant-audit-signing-key:v1:inst:AAAA\n", "confidant-kek:v1:inst:1:AAAA\n"] {
            let p = dir.join("bad");
            let _ = std::fs::remove_file(&p);
            crate::keyfile::write_secret_file(&p, bad).unwrap();
            assert!(SigningKey::load_file(&p).is_err(), "{bad:?} accepted");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
