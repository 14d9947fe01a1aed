//! The backup key: a 256-bit AES-GCM key of its own, kept apart from the data
//! and from the key-encryption key, that seals whole backups. Without it a
//! backup file is worthless; with it alone, the records inside are still
//! sealed under their own data keys.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::envelope::Aad;
use crate::keyfile::{read_secret_file, write_secret_file};
use crate::keys::{KEY_LEN, SealingKey};
use crate::{VaultError, random_bytes, sha256};

const LINE_PREFIX: &str = "confidant-backup-key:v1:";

/// The backup key of an instance.
pub struct BackupKey {
    instance_id: String,
    secret: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupKey(instance {}, check value {})", self.instance_id, self.check_value())
    }
}

impl BackupKey {
    /// A new random backup key.
    pub fn generate(instance_id: &str) -> Result<BackupKey, VaultError> {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(secret.as_mut_slice())?;
        Ok(BackupKey { instance_id: instance_id.to_owned(), secret })
    }

    /// Write it to a new file (0600, never overwritten).
    pub fn create_file(&self, path: &Path) -> Result<(), VaultError> {
        let text = Zeroizing::new(format!(
            "# Confidant backup key: opens this instance's backups. Keep it apart from the backups and the data.\n\
             {LINE_PREFIX}{}:{}\n",
            self.instance_id,
            STANDARD.encode(self.secret.as_slice())
        ));
        write_secret_file(path, &text)
    }

    /// Read a backup key file.
    pub fn load_file(path: &Path) -> Result<BackupKey, VaultError> {
        let text = read_secret_file(path)?;
        let bad = || VaultError::KeyFile(format!("{} is not a Confidant backup key file", path.display()));
        let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).ok_or_else(bad)?;
        let (instance, b64) = line.strip_prefix(LINE_PREFIX).and_then(|r| r.split_once(':')).ok_or_else(bad)?;
        let raw = Zeroizing::new(STANDARD.decode(b64).map_err(|_| bad())?);
        let secret: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| bad())?;
        Ok(BackupKey { instance_id: instance.to_owned(), secret: Zeroizing::new(secret) })
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Identifies the key without revealing it (a hash under its own label).
    pub fn check_value(&self) -> String {
        let mut buf = b"confidant backup key check v1".to_vec();
        buf.extend_from_slice(self.secret.as_slice());
        hex::encode(&sha256(&buf)[..8])
    }

    fn aad(header: &[u8]) -> impl FnOnce(crate::envelope::Header) -> Aad + '_ {
        move |h| {
            let mut a = Aad::new("confidant.backup.v1", h);
            a.push(header);
            a
        }
    }

    /// Seal a whole backup payload, bound to its `header` line.
    pub fn seal(&self, header: &[u8], payload: &[u8]) -> Result<Vec<u8>, VaultError> {
        SealingKey::new(&self.secret, 1)?.seal(payload, Self::aad(header))
    }

    /// Open a payload sealed by [`BackupKey::seal`] with the same header.
    pub fn open(&self, header: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        SealingKey::new(&self.secret, 1)?.open(sealed, Self::aad(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bindings() {
        let k = BackupKey::generate("inst").unwrap();
        let sealed = k.seal(b"header", b"payload bytes").unwrap();
        assert_eq!(&k.open(b"header", &sealed).unwrap()[..], b"payload bytes");
        assert!(k.open(b"other header", &sealed).is_err(), "bound to its header");
        assert!(BackupKey::generate("inst").unwrap().open(b"header", &sealed).is_err(), "another key");
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(k.open(b"header", &flipped).is_err());
        let dir = std::env::temp_dir().join(format!("confidant-bk-{}", crate::random_id().unwrap()));
        let path = dir.join("b.backup-key");
        k.create_file(&path).unwrap();
        let back = BackupKey::load_file(&path).unwrap();
        assert_eq!((back.instance_id(), back.check_value()), ("inst", k.check_value()));
        assert!(k.create_file(&path).is_err(), "never overwritten");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
