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
//!
//! Over 600 lines with its tests: the file format, its sealed form, reloading
//! during a rotation, and adding and retiring versions are one file's life.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::hkdf;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::envelope::Aad;
use crate::keys::{KEY_LEN, KeyProvider, SealingKey, WrappedKey};
use crate::{VaultError, random_bytes};

const LINE_PREFIX: &str = "confidant-kek:v1:";
/// A key file sealed with a passphrase: one line, the plain key file text
/// encrypted with AES-256-GCM under argon2id(passphrase, salt).
const SEALED_PREFIX: &str = "confidant-kek-sealed:v1:";
/// argon2id costs for the passphrase: 64 MiB, 3 passes, 1 lane (RFC 9106's
/// second recommended option), far above the login hash's: it runs once per start.
const PASSPHRASE_M_KIB: u32 = 64 * 1024;
const PASSPHRASE_T: u32 = 3;
const PASSPHRASE_P: u32 = 1;
const WRAP_INFO: &[u8] = b"confidant kek wrap v1";
const CHECK_INFO: &[u8] = b"confidant kek check value v1";

struct KekVersion {
    sealing: SealingKey,
    check_value: String,
    secret: Zeroizing<[u8; KEY_LEN]>,
}

/// What tells that a file changed: its length and modification time.
type FileStamp = (u64, Option<std::time::SystemTime>);

fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path).map(|m| (m.len(), m.modified().ok())).unwrap_or((0, None))
}

/// A key-encryption key read from (or generated for) a key file.
///
/// Rotation (`confidant keys rotate`) appends a version to the file while a
/// server may be running; a loaded key file notices (its length changes) and
/// reads the new version before it next wraps, or when asked to unwrap under a
/// version it does not hold yet.
pub struct KeyFile {
    instance_id: String,
    versions: RwLock<Arc<BTreeMap<u32, KekVersion>>>,
    /// Where it was loaded from, and the file's length and modification time then.
    source: Option<(PathBuf, RwLock<FileStamp>)>,
    /// For a file sealed with a passphrase: the key derived from it, to re-read the file.
    passphrase_key: Option<PassphraseKey>,
}

/// The key derived from a passphrase and the salt it was derived with.
pub(crate) struct PassphraseKey {
    pub(crate) salt: [u8; 16],
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl PassphraseKey {
    /// A new random salt and the key derived from `passphrase` with it.
    pub(crate) fn new(passphrase: &str) -> Result<PassphraseKey, VaultError> {
        let mut salt = [0u8; 16];
        random_bytes(&mut salt)?;
        PassphraseKey::derive(passphrase, salt)
    }

    /// Seal `plain` under this key, bound to `purpose` and `bound` (and the salt).
    pub(crate) fn seal_bytes(&self, purpose: &str, bound: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let sk = SealingKey::new(&self.key, 0)?;
        sk.seal(plain, |h| {
            let mut a = Aad::new(purpose, h);
            a.push(&self.salt);
            a.push(bound);
            a
        })
    }

    /// Open what [`PassphraseKey::seal_bytes`] sealed; a wrong passphrase fails here.
    pub(crate) fn open_bytes(
        &self,
        purpose: &str,
        bound: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let sk = SealingKey::new(&self.key, 0)?;
        sk.open(sealed, |h| {
            let mut a = Aad::new(purpose, h);
            a.push(&self.salt);
            a.push(bound);
            a
        })
    }

    pub(crate) fn derive(passphrase: &str, salt: [u8; 16]) -> Result<PassphraseKey, VaultError> {
        let params = argon2::Params::new(PASSPHRASE_M_KIB, PASSPHRASE_T, PASSPHRASE_P, Some(KEY_LEN))
            .map_err(|_| VaultError::KeyFile("argon2 parameters out of range".into()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut_slice())
            .map_err(|_| VaultError::KeyFile("the passphrase could not be processed".into()))?;
        Ok(PassphraseKey { salt, key })
    }

    fn aad(&self) -> impl FnOnce(crate::envelope::Header) -> Aad + '_ {
        move |h| {
            let mut a = Aad::new("confidant.kek-sealed.v1", h);
            a.push(&self.salt);
            a
        }
    }

    /// The one-line sealed form of key file `text`.
    fn seal(&self, text: &str) -> Result<String, VaultError> {
        let sk = SealingKey::new(&self.key, 0)?;
        let sealed = sk.seal(text.as_bytes(), self.aad())?;
        Ok(format!("{SEALED_PREFIX}{}:{}\n", STANDARD.encode(self.salt), STANDARD.encode(sealed)))
    }

    fn open(&self, sealed: &[u8]) -> Result<Zeroizing<String>, VaultError> {
        let sk = SealingKey::new(&self.key, 0)?;
        let plain = sk.open(sealed, self.aad()).map_err(|_| {
            VaultError::KeyFile("wrong passphrase (or the key file was altered); nothing was changed".into())
        })?;
        Ok(Zeroizing::new(String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Integrity)?))
    }
}

/// A sealed key file's salt and ciphertext.
type SealedParts = ([u8; 16], Vec<u8>);

/// Split a sealed key file into its salt and ciphertext, if it is one.
fn sealed_parts(text: &str) -> Option<Result<SealedParts, VaultError>> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let rest = line.strip_prefix(SEALED_PREFIX)?;
    let bad = || VaultError::KeyFile("the sealed key file is malformed".into());
    Some((|| {
        let (salt, sealed) = rest.split_once(':').ok_or_else(bad)?;
        let salt: [u8; 16] = STANDARD.decode(salt).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
        Ok((salt, STANDARD.decode(sealed).map_err(|_| bad())?))
    })())
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFile(instance {}, versions {:?})", self.instance_id, self.snapshot().keys())
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
        Ok(KeyFile {
            instance_id: instance_id.to_owned(),
            versions: RwLock::new(Arc::new(versions)),
            source: None,
            passphrase_key: None,
        })
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
        Ok(KeyFile { instance_id, versions: RwLock::new(Arc::new(versions)), source: None, passphrase_key: None })
    }

    /// Read and parse the key file at `path`, refusing one that others can read.
    pub fn load(path: &Path) -> Result<KeyFile, VaultError> {
        KeyFile::load_with(path, None)
    }

    /// Is the key file at `path` sealed with a passphrase?
    pub fn is_sealed(path: &Path) -> Result<bool, VaultError> {
        Ok(sealed_parts(&read_secret_file(path)?).is_some())
    }

    /// [`KeyFile::load`], opening a file sealed with a passphrase with `passphrase`.
    pub fn load_with(path: &Path, passphrase: Option<&str>) -> Result<KeyFile, VaultError> {
        let seen = stamp(path);
        let text = read_secret_file(path)?;
        let mut kf = match sealed_parts(&text) {
            None => KeyFile::parse(&text)?,
            Some(parts) => {
                let (salt, sealed) = parts?;
                let passphrase = passphrase.ok_or_else(|| {
                    VaultError::KeyFile(format!("{} is sealed with a passphrase, and none was given", path.display()))
                })?;
                let pk = PassphraseKey::derive(passphrase, salt)?;
                let mut kf = KeyFile::parse(&pk.open(&sealed)?)?;
                kf.passphrase_key = Some(pk);
                kf
            }
        };
        kf.source = Some((path.to_path_buf(), RwLock::new(seen)));
        Ok(kf)
    }

    /// The plain key file text (every version).
    fn plain_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        text.push_str(
            "# Confidant key-encryption key. Without it the data cannot be read.\n\
             # Keep it secret, keep it off the data disk, and back it up apart from the data.\n",
        );
        for (v, k) in self.snapshot().iter() {
            text.push_str(&format!("{LINE_PREFIX}{}:{v}:{}\n", self.instance_id, STANDARD.encode(k.secret.as_slice())));
        }
        text
    }

    /// Write a new key file at `path`, sealed with `passphrase` (argon2id, then
    /// AES-256-GCM); mode 0600, never overwriting anything.
    pub fn create_sealed(&self, path: &Path, passphrase: &str) -> Result<(), VaultError> {
        let pk = PassphraseKey::new(passphrase)?;
        write_secret_file(path, &sealed_file_text(&pk.seal(&self.plain_text())?))
    }

    fn snapshot(&self) -> Arc<BTreeMap<u32, KekVersion>> {
        match self.versions.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-read the file if it changed (a rotation appended a version). Only a file
    /// of the same instance that still holds every version already known is
    /// taken; otherwise the keys in memory stay, and the error says why.
    pub fn refresh(&self) -> Result<bool, VaultError> {
        let Some((path, seen)) = &self.source else { return Ok(false) };
        let now = stamp(path);
        if seen.read().map(|s| *s == now).unwrap_or(false) {
            return Ok(false);
        }
        let text = read_secret_file(path)?;
        let fresh = match (sealed_parts(&text), &self.passphrase_key) {
            (None, _) => KeyFile::parse(&text)?,
            (Some(parts), Some(pk)) => {
                let (salt, sealed) = parts?;
                if salt != pk.salt {
                    return Err(VaultError::KeyFile(format!("{} was sealed anew; restart to read it", path.display())));
                }
                KeyFile::parse(&pk.open(&sealed)?)?
            }
            (Some(_), None) => {
                return Err(VaultError::KeyFile(format!("{} is now sealed; restart to read it", path.display())));
            }
        };
        let known = self.snapshot();
        let fresh_versions = fresh.snapshot();
        // Versions may be added (rotation) and old ones removed (retirement), but the
        // versions only move forward and none may change: otherwise this is another key.
        let forward = fresh_versions.keys().next_back() >= known.keys().next_back();
        if fresh.instance_id != self.instance_id
            || !forward
            || known.iter().any(|(v, k)| fresh_versions.get(v).is_some_and(|f| f.check_value != k.check_value))
        {
            return Err(VaultError::KeyFile(format!(
                "{} changed and no longer holds the keys in use; keeping the keys loaded at start",
                path.display()
            )));
        }
        if let Ok(mut v) = self.versions.write() {
            *v = fresh_versions;
        }
        if let Ok(mut s) = seen.write() {
            *s = now;
        }
        Ok(true)
    }

    /// Append a new, random key version to the key file at `path` (never
    /// rewriting what is there) and return its number.
    pub fn add_version(path: &Path) -> Result<u32, VaultError> {
        KeyFile::add_version_with(path, None)
    }

    /// [`KeyFile::add_version`] for a file sealed with `passphrase`: the file is
    /// sealed anew with the new version inside and replaced atomically.
    pub fn add_version_with(path: &Path, passphrase: Option<&str>) -> Result<u32, VaultError> {
        let current = KeyFile::load_with(path, passphrase)?;
        current.append_version(current.passphrase_key.as_ref(), path)
    }

    /// Append a new random version to the file at `path`, which holds `self`
    /// (sealed anew with `sealed_with` when the file is sealed).
    fn append_version(&self, sealed_with: Option<&PassphraseKey>, path: &Path) -> Result<u32, VaultError> {
        let next = self.snapshot().keys().next_back().copied().unwrap_or(0) + 1;
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(secret.as_mut_slice())?;
        if let Some(pk) = sealed_with {
            let mut text = self.plain_text();
            text.push_str(&format!(
                "{LINE_PREFIX}{}:{next}:{}\n",
                self.instance_id,
                STANDARD.encode(secret.as_slice())
            ));
            replace_secret_file(path, &sealed_file_text(&pk.seal(&text)?))?;
            return Ok(next);
        }
        let line = Zeroizing::new(format!(
            "{LINE_PREFIX}{}:{next}:{}\n",
            self.instance_id,
            STANDARD.encode(secret.as_slice())
        ));
        let err = |e: std::io::Error| VaultError::KeyFile(format!("cannot append to {}: {e}", path.display()));
        let mut f = std::fs::OpenOptions::new().append(true).open(path).map_err(err)?;
        f.write_all(line.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(next)
    }

    /// Remove version `version` from the key file at `path` (it must not be the
    /// current one; the caller checks that nothing is wrapped under it). The file
    /// is replaced atomically. Returns the key check value of the oldest version
    /// left, which identifies the file from now on.
    pub fn retire_version(path: &Path, passphrase: Option<&str>, version: u32) -> Result<String, VaultError> {
        let current = KeyFile::load_with(path, passphrase)?;
        current.remove_version(current.passphrase_key.as_ref(), path, version)
    }

    /// Rewrite the file at `path`, which holds `self`, without `version`.
    fn remove_version(
        &self,
        sealed_with: Option<&PassphraseKey>,
        path: &Path,
        version: u32,
    ) -> Result<String, VaultError> {
        let versions = self.snapshot();
        if !versions.contains_key(&version) {
            return Err(VaultError::MissingKeyVersion(version));
        }
        if versions.keys().next_back() == Some(&version) {
            return Err(VaultError::KeyFile(format!("version {version} is the current version; rotate first")));
        }
        let mut text = Zeroizing::new(String::new());
        text.push_str(
            "# Confidant key-encryption key. Without it the data cannot be read.\n\
             # Keep it secret, keep it off the data disk, and back it up apart from the data.\n",
        );
        for (v, k) in versions.iter().filter(|(v, _)| **v != version) {
            text.push_str(&format!("{LINE_PREFIX}{}:{v}:{}\n", self.instance_id, STANDARD.encode(k.secret.as_slice())));
        }
        match sealed_with {
            Some(pk) => replace_secret_file(path, &sealed_file_text(&pk.seal(&text)?))?,
            None => replace_secret_file(path, &text)?,
        }
        let left = versions.iter().find(|(v, _)| **v != version).map(|(_, k)| k.check_value.clone());
        left.ok_or_else(|| VaultError::KeyFile("no version would be left".into()))
    }

    /// The file this key was loaded from, as it is now, opened with the
    /// passphrase key derived at load (no second prompt); and whether it is sealed.
    fn reread(&self) -> Result<(&Path, KeyFile, bool), VaultError> {
        let Some((path, _)) = &self.source else {
            return Err(VaultError::KeyFile("this key was not loaded from a key file".into()));
        };
        let text = read_secret_file(path)?;
        match (sealed_parts(&text), &self.passphrase_key) {
            (None, _) => Ok((path, KeyFile::parse(&text)?, false)),
            (Some(parts), Some(pk)) => {
                let (salt, sealed) = parts?;
                if salt != pk.salt {
                    return Err(VaultError::KeyFile(format!(
                        "{} was sealed anew; run again to read it",
                        path.display()
                    )));
                }
                Ok((path, KeyFile::parse(&pk.open(&sealed)?)?, true))
            }
            (Some(_), None) => {
                Err(VaultError::KeyFile(format!("{} is sealed with a passphrase, and none was given", path.display())))
            }
        }
    }

    /// The versions in the file, oldest first, with their key check values.
    pub fn versions(&self) -> Vec<(u32, String)> {
        self.snapshot().iter().map(|(v, k)| (*v, k.check_value.clone())).collect()
    }

    /// Does any version of this file have key check value `cv`?
    pub fn has_check_value(&self, cv: &str) -> bool {
        self.snapshot().values().any(|k| k.check_value == cv)
    }

    /// Write a new key file at `path` with mode 0600. Fails if anything exists there:
    /// a key file is never overwritten.
    pub fn create(&self, path: &Path) -> Result<(), VaultError> {
        write_secret_file(path, &self.plain_text())
    }

    /// The instance this key belongs to.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The key check value of the first version: identifies the instance's key file
    /// (the config records it), reveals nothing.
    pub fn check_value(&self) -> String {
        self.snapshot().values().next().map(|k| k.check_value.clone()).unwrap_or_default()
    }

    /// Run `f` with KEK version `v`, re-reading the file once if it lacks it.
    fn with_version<T>(&self, v: u32, f: impl FnOnce(&KekVersion) -> Result<T, VaultError>) -> Result<T, VaultError> {
        let snap = self.snapshot();
        if let Some(k) = snap.get(&v) {
            return f(k);
        }
        if self.refresh().unwrap_or(false)
            && let Some(k) = self.snapshot().get(&v)
        {
            return f(k);
        }
        Err(VaultError::MissingKeyVersion(v))
    }
}

fn sealed_file_text(sealed_line: &str) -> String {
    format!(
        "# Confidant key-encryption key, sealed with a passphrase (argon2id m=64 MiB, t=3; AES-256-GCM).\n\
         # Without it and the passphrase the data cannot be read. Back both up, apart from the data.\n{sealed_line}"
    )
}

/// Replace a secret file atomically: a new file (0600) beside it, synced, renamed over it.
fn replace_secret_file(path: &Path, text: &str) -> Result<(), VaultError> {
    let tmp = path.with_extension(format!("tmp-{}", crate::random_id()?));
    write_secret_file(&tmp, text)?;
    std::fs::rename(&tmp, path).map_err(|e| VaultError::KeyFile(format!("cannot replace {}: {e}", path.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
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
        // A rotation may have appended a version: new wraps use it at once. A file
        // that cannot be re-read leaves the loaded keys in use (an unwrap under a
        // version they lack then says so).
        let _ = self.refresh();
        self.snapshot().keys().next_back().copied().unwrap_or(1)
    }

    fn wrap(&self, version: u32, label: &[u8], key: &[u8; KEY_LEN]) -> Result<WrappedKey, VaultError> {
        self.with_version(version, |k| Ok(WrappedKey(k.sealing.seal(key, wrap_aad(label))?)))
    }

    fn unwrap(&self, label: &[u8], wrapped: &WrappedKey) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
        self.with_version(wrapped.kek_version()?, |kek| {
            let plain = kek.sealing.open(&wrapped.0, wrap_aad(label))?;
            let mut out = Zeroizing::new([0u8; KEY_LEN]);
            if plain.len() != KEY_LEN {
                return Err(VaultError::Integrity);
            }
            out.copy_from_slice(&plain);
            Ok(out)
        })
    }

    fn versions(&self) -> Vec<crate::KekVersionInfo> {
        KeyFile::versions(self)
            .into_iter()
            .map(|(version, cv)| crate::KekVersionInfo { version, check_value: Some(cv) })
            .collect()
    }

    /// Appends to the file this key was loaded from (sealed anew if it is sealed).
    fn add_version(&self) -> Result<u32, VaultError> {
        let (path, current, sealed) = self.reread()?;
        let v = current.append_version(if sealed { self.passphrase_key.as_ref() } else { None }, path)?;
        let _ = self.refresh();
        Ok(v)
    }

    /// Rewrites the file this key was loaded from without `version`.
    fn retire_version(&self, version: u32) -> Result<String, VaultError> {
        let (path, current, sealed) = self.reread()?;
        current.remove_version(if sealed { self.passphrase_key.as_ref() } else { None }, path, version)
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
    fn a_loaded_key_file_picks_up_an_added_version() {
        let dir = std::env::temp_dir().join(format!("confidant-kf-{}", crate::random_id().unwrap()));
        let path = dir.join("kek");
        KeyFile::generate("abc").unwrap().create(&path).unwrap();
        let running = KeyFile::load(&path).unwrap();
        let first_check = running.check_value();
        let wrapped_v1 = running.wrap(1, b"label", &[7u8; KEY_LEN]).unwrap();
        assert_eq!(running.current_version(), 1);
        // Another process (keys rotate) appends version 2.
        assert_eq!(KeyFile::add_version(&path).unwrap(), 2);
        let rotator = KeyFile::load(&path).unwrap();
        let wrapped_v2 = rotator.wrap(2, b"label", &[7u8; KEY_LEN]).unwrap();
        // The running one unwraps version 2 (re-reading the file) and wraps with it from now on.
        assert_eq!(*running.unwrap(b"label", &wrapped_v2).unwrap(), [7u8; KEY_LEN]);
        assert_eq!(running.current_version(), 2);
        assert_eq!(*running.unwrap(b"label", &wrapped_v1).unwrap(), [7u8; KEY_LEN]);
        // The file's identity (its first version's check value) is unchanged.
        assert_eq!(rotator.check_value(), first_check);
        assert_eq!(rotator.versions().len(), 2);
        // A file replaced by another key is refused: the keys in memory stay.
        std::fs::remove_file(&path).unwrap();
        KeyFile::generate("abc").unwrap().create(&path).unwrap();
        let _ = KeyFile::add_version(&path);
        assert!(running.refresh().is_err());
        assert_eq!(*running.unwrap(b"label", &wrapped_v1).unwrap(), [7u8; KEY_LEN]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_file_sealed_with_a_passphrase() {
        let dir = std::env::temp_dir().join(format!("confidant-kf-{}", crate::random_id().unwrap()));
        let path = dir.join("kek");
        let kf = KeyFile::generate("abc").unwrap();
        kf.create_sealed(&path, "a long and private passphrase").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(LINE_PREFIX), "the key lines are not in the file in the clear");
        assert!(KeyFile::is_sealed(&path).unwrap());
        let opened = KeyFile::load_with(&path, Some("a long and private passphrase")).unwrap();
        assert_eq!(opened.check_value(), kf.check_value());
        let wrapped = opened.wrap(1, b"l", &[3u8; KEY_LEN]).unwrap();
        let wrong = KeyFile::load_with(&path, Some("a long and private passphrasE")).unwrap_err().to_string();
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        let none = KeyFile::load(&path).unwrap_err().to_string();
        assert!(none.contains("sealed with a passphrase"), "{none}");
        // A rotation seals the file anew with both versions; a running instance reads it.
        assert_eq!(KeyFile::add_version_with(&path, Some("a long and private passphrase")).unwrap(), 2);
        assert!(!std::fs::read_to_string(&path).unwrap().contains(LINE_PREFIX));
        assert_eq!(opened.current_version(), 2);
        let after = KeyFile::load_with(&path, Some("a long and private passphrase")).unwrap();
        assert_eq!(*after.unwrap(b"l", &wrapped).unwrap(), [3u8; KEY_LEN]);
        assert!(KeyFile::add_version_with(&path, Some("wrong")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retiring_a_version() {
        let dir = std::env::temp_dir().join(format!("confidant-kf-{}", crate::random_id().unwrap()));
        let path = dir.join("kek");
        KeyFile::generate("abc").unwrap().create(&path).unwrap();
        let running = KeyFile::load(&path).unwrap();
        assert_eq!(KeyFile::add_version(&path).unwrap(), 2);
        let v2_check = KeyFile::load(&path).unwrap().versions()[1].1.clone();
        assert!(KeyFile::retire_version(&path, None, 2).is_err(), "not the current version");
        assert!(KeyFile::retire_version(&path, None, 7).is_err(), "no such version");
        assert_eq!(KeyFile::retire_version(&path, None, 1).unwrap(), v2_check, "the file is identified by v2 now");
        let after = KeyFile::load(&path).unwrap();
        assert_eq!(after.versions().iter().map(|(v, _)| *v).collect::<Vec<_>>(), [2]);
        // A running instance follows: version 2 current, version 1 gone from memory.
        assert_eq!(running.current_version(), 2);
        let w1 = WrappedKey({
            let mut e = crate::envelope::Header::v1(1).to_bytes().to_vec();
            e.extend_from_slice(&[0u8; 40]);
            e
        });
        assert!(matches!(running.unwrap(b"l", &w1), Err(VaultError::MissingKeyVersion(1))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_provider_trait_adds_and_retires_versions_in_the_file_it_was_loaded_from() {
        let dir = std::env::temp_dir().join(format!("confidant-kf-{}", crate::random_id().unwrap()));
        for sealed in [false, true] {
            let path = dir.join(format!("kek-{sealed}"));
            let kf = KeyFile::generate("abc").unwrap();
            let passphrase = sealed.then_some("a long and private passphrase");
            match passphrase {
                Some(p) => kf.create_sealed(&path, p).unwrap(),
                None => kf.create(&path).unwrap(),
            }
            let key: &dyn KeyProvider = &KeyFile::load_with(&path, passphrase).unwrap();
            let wrapped = key.wrap(1, b"l", &[5u8; KEY_LEN]).unwrap();
            // No second passphrase: the key derived at load seals the file anew.
            assert_eq!(key.add_version().unwrap(), 2);
            assert_eq!(key.current_version(), 2);
            assert_eq!(KeyFile::is_sealed(&path).unwrap(), sealed, "a sealed file stays sealed");
            let listed = key.versions();
            assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
            assert!(listed.iter().all(|v| v.check_value.as_ref().is_some_and(|c| c.len() == 16)));
            assert!(key.retire_version(2).is_err(), "not the current version");
            let v2_check = listed[1].check_value.clone().unwrap();
            let rewrapped = key.wrap(2, b"l", &[5u8; KEY_LEN]).unwrap();
            assert_eq!(key.retire_version(1).unwrap(), v2_check);
            let after = KeyFile::load_with(&path, passphrase).unwrap();
            assert_eq!(after.versions().iter().map(|(v, _)| *v).collect::<Vec<_>>(), [2]);
            assert_eq!(*after.unwrap(b"l", &rewrapped).unwrap(), [5u8; KEY_LEN]);
            assert!(after.unwrap(b"l", &wrapped).is_err(), "version 1 is gone");
        }
        // A key made in memory has no file to add to.
        assert!(KeyProvider::add_version(&KeyFile::generate("abc").unwrap()).is_err());
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
