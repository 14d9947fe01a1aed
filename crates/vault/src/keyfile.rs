//! The key-file provider: the default home of the key-encryption key.
//!
//! The file lives outside the data directory (so that a copy of the data
//! directory or a backup of it holds no key), is created with mode 0600, and
//! is never overwritten. Its format is text, one key version per line:
//!
//! ```text
//! # comment lines
//! confidant-kek:v1:<instance id>:<kek version>:<base64 of 32 random bytes>
//! ```
//!
//! The secret in the file is input keying material. The AES-256-GCM wrapping
//! key and the key check value are derived from it with HKDF-SHA256
//! (RFC 5869) under distinct labels, so neither reveals the other.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::hkdf;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::envelope::Aad;
use crate::keys::{KEY_LEN, KeyProvider, SealingKey, WrappedKey};
use crate::{VaultError, random_bytes};

const LINE_PREFIX: &str = "confidant-kek:v1:";
const WRAP_INFO: &[u8] = b"confidant kek wrap v1";
const CHECK_INFO: &[u8] = b"confidant kek check value v1";

struct KekVersion {
    sealing: SealingKey,
    check_value: String,
    secret: Zeroizing<[u8; KEY_LEN]>,
}

/// A key-encryption key read from (or generated for) a key file.
pub struct KeyFile {
    instance_id: String,
    versions: BTreeMap<u32, KekVersion>,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFile(instance {}, versions {:?})", self.instance_id, self.versions.keys())
    }
}

fn hkdf_expand(secret: &[u8], info: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"confidant");
    let prk = salt.extract(secret);
    let info = [info];
    let okm = prk.expand(&info, hkdf::HKDF_SHA256).map_err(|_| VaultError::Random)?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(out.as_mut_slice()).map_err(|_| VaultError::Random)?;
    Ok(out)
}

impl KekVersion {
    fn new(secret: Zeroizing<[u8; KEY_LEN]>, version: u32) -> Result<Self, VaultError> {
        let wrap = hkdf_expand(secret.as_slice(), WRAP_INFO)?;
        let check = hkdf_expand(secret.as_slice(), CHECK_INFO)?;
        Ok(KekVersion {
            sealing: SealingKey::new(&wrap, version)?,
            // 64 bits identify the key; they reveal nothing about it (HKDF output).
            check_value: hex::encode(&check[..8]),
            secret,
        })
    }
}

impl KeyFile {
    /// A new key file content with one fresh random version-1 key.
    pub fn generate(instance_id: &str) -> Result<KeyFile, VaultError> {
        if instance_id.contains(':') || instance_id.is_empty() {
            return Err(VaultError::KeyFile("instance id must be non-empty and contain no ':'".into()));
        }
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(secret.as_mut_slice())?;
        let mut versions = BTreeMap::new();
        versions.insert(1, KekVersion::new(secret, 1)?);
        Ok(KeyFile { instance_id: instance_id.to_owned(), versions })
    }

    /// Parse key file text.
    pub fn parse(text: &str) -> Result<KeyFile, VaultError> {
        let mut instance_id: Option<String> = None;
        let mut versions = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || VaultError::KeyFile(format!("line {} is not a Confidant key line", n + 1));
            let rest = line.strip_prefix(LINE_PREFIX).ok_or_else(bad)?;
            let mut parts = rest.split(':');
            let (Some(inst), Some(ver), Some(b64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let version: u32 = ver.parse().map_err(|_| bad())?;
            let raw = Zeroizing::new(STANDARD.decode(b64).map_err(|_| bad())?);
            let secret: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| bad())?;
            match &instance_id {
                Some(i) if i != inst => {
                    return Err(VaultError::KeyFile("the file holds keys of two different instances".into()));
                }
                _ => instance_id = Some(inst.to_owned()),
            }
            if versions.insert(version, KekVersion::new(Zeroizing::new(secret), version)?).is_some() {
                return Err(VaultError::KeyFile(format!("key version {version} appears twice")));
            }
        }
        let instance_id = instance_id.ok_or_else(|| VaultError::KeyFile("the file holds no key".into()))?;
        Ok(KeyFile { instance_id, versions })
    }

    /// Read and parse the key file at `path`, refusing one that others can read.
    pub fn load(path: &Path) -> Result<KeyFile, VaultError> {
        KeyFile::parse(&read_secret_file(path)?)
    }

    /// Write a new key file at `path` with mode 0600. Fails if anything exists there:
    /// a key file is never overwritten.
    pub fn create(&self, path: &Path) -> Result<(), VaultError> {
        let mut text = Zeroizing::new(String::new());
        text.push_str(
            "# Confidant key-encryption key. Without it the data cannot be read.\n\
             # Keep it secret, keep it off the data disk, and back it up apart from the data.\n",
        );
        for (v, k) in &self.versions {
            text.push_str(&format!("{LINE_PREFIX}{}:{v}:{}\n", self.instance_id, STANDARD.encode(k.secret.as_slice())));
        }
        write_secret_file(path, &text)
    }

    /// The instance this key belongs to.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The key check value of the current version: identifies the key, reveals nothing.
    pub fn check_value(&self) -> &str {
        self.versions.values().next_back().map(|k| k.check_value.as_str()).unwrap_or("")
    }

    fn version(&self, v: u32) -> Result<&KekVersion, VaultError> {
        self.versions.get(&v).ok_or(VaultError::MissingKeyVersion(v))
    }
}

/// Read a secret file, refusing one that other users can read.
pub(crate) fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).map_err(|e| VaultError::KeyFile(format!("cannot read {}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(VaultError::KeyFile(format!(
                "{} is readable by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| VaultError::KeyFile(format!("cannot read {}: {e}", path.display())))?,
    ))
}

/// Create a secret file with mode 0600 (its folder 0700), synced to disk.
/// Fails if anything exists at `path`: a key file is never overwritten.
pub(crate) fn write_secret_file(path: &Path, text: &str) -> Result<(), VaultError> {
    let err = |e: std::io::Error| VaultError::KeyFile(format!("cannot create {}: {e}", path.display()));
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(parent).map_err(err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(())
}

fn wrap_aad(label: &[u8]) -> impl FnOnce(crate::envelope::Header) -> Aad + '_ {
    move |h| {
        let mut a = Aad::new("confidant.wrap.v1", h);
        a.push(label);
        a
    }
}

impl KeyProvider for KeyFile {
    fn describe(&self) -> String {
        format!("key file (key check value {})", self.check_value())
    }

    fn current_version(&self) -> u32 {
        self.versions.keys().next_back().copied().unwrap_or(1)
    }

    fn wrap(&self, version: u32, label: &[u8], key: &[u8; KEY_LEN]) -> Result<WrappedKey, VaultError> {
        Ok(WrappedKey(self.version(version)?.sealing.seal(key, wrap_aad(label))?))
    }

    fn unwrap(&self, label: &[u8], wrapped: &WrappedKey) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
        let kek = self.version(wrapped.kek_version()?)?;
        let plain = kek.sealing.open(&wrapped.0, wrap_aad(label))?;
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(VaultError::Integrity);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_roundtrip_mode_and_no_overwrite() {
        let dir = std::env::temp_dir().join(format!("confidant-kf-{}", crate::random_id().unwrap()));
        let path = dir.join("keys").join("kek");
        let kf = KeyFile::generate("abc").unwrap();
        kf.create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let loaded = KeyFile::load(&path).unwrap();
        assert_eq!(loaded.instance_id(), "abc");
        assert_eq!(loaded.check_value(), kf.check_value());
        let before = std::fs::read(&path).unwrap();
        assert!(KeyFile::generate("abc").unwrap().create(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before, "existing key file must not change");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_files_are_rejected() {
        for text in ["", "# only comments\n", "confidant-kek:v1:a:1:notbase64!", "confidant-kek:v1:a:1:AAAA", "garbage"]
        {
            assert!(KeyFile::parse(text).is_err(), "{text:?} accepted");
        }
    }
}
