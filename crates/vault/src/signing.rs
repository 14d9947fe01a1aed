//! Ed25519 signatures (RFC 8032) for audit checkpoints and backups, by a key
//! that is separate from every data key (DESIGN.md §5). AWS-LC does the
//! arithmetic, or the PKCS#11 token that holds the key ([`crate::pkcs11`]).
//!
//! The key lives where the key-encryption key does: a key file (mode 0600), a
//! key file sealed with the passphrase (argon2id; its public key stays readable
//! so that verifying needs no secret), or a non-extractable key in the token.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::{VaultError, random_bytes};

/// Whatever signs checkpoints: a key in memory or a key in a token.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The Ed25519 public key that verifies this signer's signatures.
    fn public_key(&self) -> [u8; 32];
    /// Sign `message` (pure Ed25519).
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], VaultError>;
}

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

impl Signer for SigningKey {
    fn public_key(&self) -> [u8; 32] {
        SigningKey::public_key(self)
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], VaultError> {
        Ok(SigningKey::sign(self, message))
    }
}

const KEY_LINE_PREFIX: &str = "confidant-audit-signing-key:v1:";
/// `<prefix><instance>:<public key hex>:<salt b64>:<sealed seed b64>`.
const SEALED_LINE_PREFIX: &str = "confidant-audit-signing-key-sealed:v1:";
const SEALED_PURPOSE: &str = "confidant.audit-signing-key-sealed.v1";

/// The one key line of a key file (comments and blank lines skipped).
fn key_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The parts of a sealed signing key line: instance, public key, salt, sealed seed.
type SealedLine<'a> = (&'a str, [u8; 32], [u8; 16], Vec<u8>);

fn sealed_line(line: &str) -> Option<SealedLine<'_>> {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut parts = line.strip_prefix(SEALED_LINE_PREFIX)?.split(':');
    let instance = parts.next()?;
    let public: [u8; 32] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let salt: [u8; 16] = b64.decode(parts.next()?).ok()?.try_into().ok()?;
    let sealed = b64.decode(parts.next()?).ok()?;
    parts.next().is_none().then_some((instance, public, salt, sealed))
}

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

    /// Write this key to a new key file sealed with `passphrase` (argon2id, then
    /// AES-256-GCM bound to the instance and the public key). The public key is
    /// written in the clear: verifying checkpoints needs no passphrase.
    pub fn create_sealed_file(
        &self,
        path: &std::path::Path,
        instance_id: &str,
        passphrase: &str,
    ) -> Result<(), VaultError> {
        use base64::Engine;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let pk = crate::keyfile::PassphraseKey::new(passphrase)?;
        let public = self.public_key();
        let sealed = pk.seal_bytes(SEALED_PURPOSE, &sealed_binding(instance_id, &public), self.seed.as_slice())?;
        let text = format!(
            "# Confidant audit signing key, sealed with a passphrase (argon2id m=64 MiB, t=3; AES-256-GCM).\n\
             # Keep it apart from the data, like the key-encryption key.\n\
             {SEALED_LINE_PREFIX}{instance_id}:{}:{}:{}\n",
            hex::encode(public),
            b64.encode(pk.salt),
            b64.encode(sealed)
        );
        crate::keyfile::write_secret_file(path, &text)
    }

    /// Whether the key file at `path` is sealed with a passphrase.
    pub fn file_is_sealed(path: &std::path::Path) -> Result<bool, VaultError> {
        let text = crate::keyfile::read_secret_file(path)?;
        Ok(key_line(&text).is_some_and(|l| l.starts_with(SEALED_LINE_PREFIX)))
    }

    /// Read a key file written by [`SigningKey::create_file`]: the instance id and the key.
    pub fn load_file(path: &std::path::Path) -> Result<(String, SigningKey), VaultError> {
        SigningKey::load_file_with(path, None)
    }

    /// Read a plain key file, or a sealed one with its `passphrase`.
    pub fn load_file_with(
        path: &std::path::Path,
        passphrase: Option<&str>,
    ) -> Result<(String, SigningKey), VaultError> {
        use base64::Engine;
        let text = crate::keyfile::read_secret_file(path)?;
        let bad = || VaultError::KeyFile(format!("{} is not a Confidant audit signing key file", path.display()));
        let line = key_line(&text).ok_or_else(bad)?;
        if line.starts_with(SEALED_LINE_PREFIX) {
            let (instance, public, salt, sealed) = sealed_line(line).ok_or_else(bad)?;
            let passphrase = passphrase.ok_or_else(|| {
                VaultError::KeyFile(format!("{} is sealed with a passphrase; give the passphrase", path.display()))
            })?;
            let pk = crate::keyfile::PassphraseKey::derive(passphrase, salt)?;
            let raw = pk.open_bytes(SEALED_PURPOSE, &sealed_binding(instance, &public), &sealed).map_err(|_| {
                VaultError::KeyFile(format!(
                    "wrong passphrase for {} (or the file was altered); nothing was changed",
                    path.display()
                ))
            })?;
            let seed: Zeroizing<[u8; 32]> = Zeroizing::new(raw.as_slice().try_into().map_err(|_| bad())?);
            let key = SigningKey::from_seed(&seed)?;
            if key.public_key() != public {
                return Err(bad());
            }
            return Ok((instance.to_owned(), key));
        }
        let (instance, b64) = line.strip_prefix(KEY_LINE_PREFIX).and_then(|r| r.split_once(':')).ok_or_else(bad)?;
        let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?);
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(raw.as_slice().try_into().map_err(|_| bad())?);
        Ok((instance.to_owned(), SigningKey::from_seed(&seed)?))
    }

    /// The instance id and public key of a key file, plain or sealed, without
    /// any passphrase (for verifying).
    pub fn public_key_of_file(path: &std::path::Path) -> Result<(String, [u8; 32]), VaultError> {
        let text = crate::keyfile::read_secret_file(path)?;
        let bad = || VaultError::KeyFile(format!("{} is not a Confidant audit signing key file", path.display()));
        let line = key_line(&text).ok_or_else(bad)?;
        if line.starts_with(SEALED_LINE_PREFIX) {
            let (instance, public, _, _) = sealed_line(line).ok_or_else(bad)?;
            return Ok((instance.to_owned(), public));
        }
        let (instance, key) = SigningKey::load_file(path)?;
        Ok((instance, key.public_key()))
    }
}

/// What a sealed signing key is bound to: its instance and its public key.
fn sealed_binding(instance_id: &str, public: &[u8; 32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(instance_id.len() + 33);
    b.extend_from_slice(instance_id.as_bytes());
    b.push(0);
    b.extend_from_slice(public);
    b
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

    #[test]
    fn sealed_key_file_needs_its_passphrase_but_not_for_the_public_key() {
        let dir = std::env::temp_dir().join(format!("confidant-sks-{}", crate::random_id().unwrap()));
        let path = dir.join("inst.audit-key");
        let key = SigningKey::generate().unwrap();
        key.create_sealed_file(&path, "inst", "correct horse battery").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.seed())));
        assert!(SigningKey::file_is_sealed(&path).unwrap());
        assert_eq!(SigningKey::public_key_of_file(&path).unwrap(), ("inst".to_owned(), key.public_key()));
        let (instance, loaded) = SigningKey::load_file_with(&path, Some("correct horse battery")).unwrap();
        assert_eq!((instance.as_str(), loaded.public_key()), ("inst", key.public_key()));
        let wrong = SigningKey::load_file_with(&path, Some("wrong horse battery")).unwrap_err().to_string();
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        assert!(SigningKey::load_file(&path).unwrap_err().to_string().contains("give the passphrase"));
        // The clear public key is bound: swapping in another one breaks the seal.
        let other = hex::encode(SigningKey::generate().unwrap().public_key());
        let forged = text.replace(&hex::encode(key.public_key()), &other);
        let forged_path = dir.join("forged");
        crate::keyfile::write_secret_file(&forged_path, &forged).unwrap();
        assert!(SigningKey::load_file_with(&forged_path, Some("correct horse battery")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
