//! The PKCS#11 provider: the key-encryption key is an AES-256 key generated
//! inside a token (an HSM; SoftHSM2 in tests), marked sensitive and not
//! extractable, so it never leaves the token. Wrapping and unwrapping are
//! AES-256-GCM operations the token performs; the envelope is the same as the
//! key file's, so the rest of Confidant cannot tell the providers apart.
//!
//! Key versions are objects labelled `confidant-kek:<instance>:v<N>`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::envelope::{Aad, HEADER_LEN, Header, NONCE_LEN};
use crate::keys::{KEY_LEN, KeyProvider, WrappedKey};
use crate::{VaultError, random_bytes};

fn err(what: &str) -> impl FnOnce(cryptoki::error::Error) -> VaultError + '_ {
    move |e| VaultError::KeyFile(format!("PKCS#11: {what}: {e}"))
}

/// A key-encryption key held in a PKCS#11 token.
pub struct Pkcs11Kek {
    instance_id: String,
    token: String,
    session: Mutex<Session>,
    versions: RwLock<BTreeMap<u32, ObjectHandle>>,
    _context: Pkcs11,
}

impl fmt::Debug for Pkcs11Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Kek(token {}, instance {})", self.token, self.instance_id)
    }
}

fn label(instance_id: &str, version: u32) -> String {
    format!("confidant-kek:{instance_id}:v{version}")
}

impl Pkcs11Kek {
    /// Open the token labelled `token` through the PKCS#11 `module`, log in with
    /// `pin`, and find this instance's key versions.
    pub fn open(module: &Path, token: &str, pin: &str, instance_id: &str) -> Result<Pkcs11Kek, VaultError> {
        let context = Pkcs11::new(module)
            .map_err(|e| VaultError::KeyFile(format!("cannot load the PKCS#11 module {}: {e}", module.display())))?;
        match context.initialize(CInitializeArgs::OsThreads) {
            // Another handle in this process initialised the library already.
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => {}
            Err(e) => return Err(err("initialise")(e)),
        }
        let slot = context
            .get_slots_with_token()
            .map_err(err("list slots"))?
            .into_iter()
            .find(|s| context.get_token_info(*s).map(|t| t.label().trim() == token).unwrap_or(false))
            .ok_or_else(|| VaultError::KeyFile(format!("PKCS#11: no token labelled '{token}' is present")))?;
        let session = context.open_rw_session(slot).map_err(err("open a session"))?;
        match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
            // Logins are per application: another handle in this process logged in already.
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) | Ok(()) => {}
            Err(e) => {
                return Err(VaultError::KeyFile(format!(
                    "PKCS#11: the token refused the PIN ({e}); nothing was changed"
                )));
            }
        }
        let kek = Pkcs11Kek {
            instance_id: instance_id.to_owned(),
            token: token.to_owned(),
            session: Mutex::new(session),
            versions: RwLock::new(BTreeMap::new()),
            _context: context,
        };
        kek.scan()?;
        Ok(kek)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        match self.session.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Find this instance's key versions in the token.
    fn scan(&self) -> Result<(), VaultError> {
        let session = self.session();
        let handles = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES)])
            .map_err(err("find keys"))?;
        let prefix = format!("confidant-kek:{}:v", self.instance_id);
        let mut found = BTreeMap::new();
        for h in handles {
            let attrs = session.get_attributes(h, &[AttributeType::Label]).map_err(err("read a key's label"))?;
            for a in attrs {
                if let Attribute::Label(l) = a
                    && let Some(v) = String::from_utf8_lossy(&l).strip_prefix(&prefix).and_then(|v| v.parse().ok())
                {
                    found.insert(v, h);
                }
            }
        }
        drop(session);
        if let Ok(mut v) = self.versions.write() {
            *v = found;
        }
        Ok(())
    }

    /// Generate a new key version inside the token (sensitive, never extractable).
    pub fn generate_version(&self) -> Result<u32, VaultError> {
        self.scan()?;
        let next = self.versions.read().map(|v| v.keys().next_back().copied().unwrap_or(0) + 1).unwrap_or(1);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen((KEY_LEN as u64).into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(label(&self.instance_id, next).into_bytes()),
        ];
        let handle = self.session().generate_key(&Mechanism::AesKeyGen, &template).map_err(err("generate a key"))?;
        if let Ok(mut v) = self.versions.write() {
            v.insert(next, handle);
        }
        Ok(next)
    }

    /// Key versions in the token, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.versions.read().map(|v| v.keys().copied().collect()).unwrap_or_default()
    }

    fn handle(&self, version: u32) -> Result<ObjectHandle, VaultError> {
        if let Some(h) = self.versions.read().ok().and_then(|v| v.get(&version).copied()) {
            return Ok(h);
        }
        // Another process (a rotation) may have added it.
        self.scan()?;
        self.versions.read().ok().and_then(|v| v.get(&version).copied()).ok_or(VaultError::MissingKeyVersion(version))
    }

    /// Destroy key version `version` in the token (never the current one; the
    /// caller checks that nothing is wrapped under it).
    pub fn destroy_version(&self, version: u32) -> Result<(), VaultError> {
        if self.versions().last() == Some(&version) {
            return Err(VaultError::KeyFile(format!("version {version} is the current version; rotate first")));
        }
        let h = self.handle(version)?;
        self.session().destroy_object(h).map_err(err("destroy a key"))?;
        self.scan()
    }

    /// Identifies the oldest version without revealing it: the first 8 bytes of its
    /// AES-GCM encryption of 16 zero bytes under a fixed, labelled nonce-and-AAD.
    pub fn check_value(&self) -> Result<String, VaultError> {
        let first = self.versions().first().copied().ok_or(VaultError::MissingKeyVersion(1))?;
        let h = self.handle(first)?;
        let mut iv = [0u8; NONCE_LEN];
        let params = GcmParams::new(&mut iv, b"confidant kek check value v1", 128.into()).map_err(err("GCM"))?;
        let out = self.session().encrypt(&Mechanism::AesGcm(params), h, &[0u8; 16]).map_err(err("encrypt"))?;
        Ok(hex::encode(&out[..8]))
    }
}

fn wrap_aad(header: Header, label: &[u8]) -> Aad {
    let mut a = Aad::new("confidant.wrap.v1", header);
    a.push(label);
    a
}

impl KeyProvider for Pkcs11Kek {
    fn describe(&self) -> String {
        format!("PKCS#11 token '{}'", self.token)
    }

    fn current_version(&self) -> u32 {
        let _ = self.scan();
        self.versions().last().copied().unwrap_or(1)
    }

    fn wrap(&self, version: u32, label: &[u8], key: &[u8; KEY_LEN]) -> Result<WrappedKey, VaultError> {
        let h = self.handle(version)?;
        let header = Header::v1(version);
        let aad = wrap_aad(header, label);
        let mut iv = [0u8; NONCE_LEN];
        random_bytes(&mut iv)?;
        let nonce = iv;
        let params = GcmParams::new(&mut iv, aad.bytes(), 128.into()).map_err(err("GCM"))?;
        let ct = self.session().encrypt(&Mechanism::AesGcm(params), h, key).map_err(err("wrap"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ct.len());
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(WrappedKey(out))
    }

    fn unwrap(&self, label: &[u8], wrapped: &WrappedKey) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
        let header = Header::parse(&wrapped.0)?;
        let h = self.handle(header.key_version)?;
        let aad = wrap_aad(header, label);
        let mut iv: [u8; NONCE_LEN] = wrapped
            .0
            .get(HEADER_LEN..HEADER_LEN + NONCE_LEN)
            .and_then(|n| n.try_into().ok())
            .ok_or(VaultError::Integrity)?;
        let params = GcmParams::new(&mut iv, aad.bytes(), 128.into()).map_err(err("GCM"))?;
        let plain = Zeroizing::new(
            self.session()
                .decrypt(&Mechanism::AesGcm(params), h, wrapped.0.get(HEADER_LEN + NONCE_LEN..).unwrap_or_default())
                .map_err(|_| VaultError::Integrity)?,
        );
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(VaultError::Integrity);
        }
        out.copy_from_slice(&plain);
        Ok(out)
    }
}
