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

/// The first line of every backup file.
pub const FILE_MAGIC: &[u8] = b"confidant-backup v1\n";
/// The Ed25519 signature that ends a backup file.
pub const SIGNATURE_LEN: usize = 64;

/// A backup file taken apart (magic line, header line, sealed payload,
/// signature) before any key is used: nothing in it is trusted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileParts<'a> {
    /// Everything the signature covers.
    pub signed: &'a [u8],
    pub signature: &'a [u8],
    /// The header line (JSON), without its newline: the sealed payload's associated data.
    pub header: &'a [u8],
    pub sealed: &'a [u8],
}

/// Take a backup file apart; `None` if it is not one (or is truncated).
pub fn split_file(bytes: &[u8]) -> Option<FileParts<'_>> {
    if !bytes.starts_with(FILE_MAGIC) || bytes.len() < FILE_MAGIC.len() + SIGNATURE_LEN + 2 {
        return None;
    }
    let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    let rest = &signed[FILE_MAGIC.len()..];
    let nl = rest.iter().position(|b| *b == b'\n')?;
    Some(FileParts { signed, signature, header: &rest[..nl], sealed: &rest[nl + 1..] })
}

/// An opened payload taken apart: the manifest line (JSON) and the database bytes after it.
pub fn split_payload(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    Some((&payload[..nl], &payload[nl + 1..]))
}

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

    #[test]
    fn a_file_and_a_payload_come_apart() {
        let sig = [9u8; SIGNATURE_LEN];
        let file = [FILE_MAGIC, b"{\"h\":1}\n", b"sealed\nbytes", &sig].concat();
        let parts = split_file(&file).unwrap();
        assert_eq!((parts.header, parts.sealed, parts.signature), (&b"{\"h\":1}"[..], &b"sealed\nbytes"[..], &sig[..]));
        assert_eq!(parts.signed, &file[..file.len() - SIGNATURE_LEN]);
        // No magic line, too short for a signature, or no header line: not a backup.
        assert!(split_file(&file[1..]).is_none());
        assert!(split_file(&[FILE_MAGIC, &sig].concat()).is_none());
        assert!(split_file(&[FILE_MAGIC, b"no newline", &sig].concat()).is_none());
        assert_eq!(split_payload(b"{}\nSQLite\n"), Some((&b"{}"[..], &b"SQLite\n"[..])));
        assert_eq!(split_payload(b"{}"), None);
    }
}
