//! The PKCS#11 provider: the key-encryption key is an AES-256 key generated
//! inside a token (an HSM; SoftHSM2 in tests), marked sensitive and not
//! extractable, so it never leaves the token. Wrapping and unwrapping are
//! AES-256-GCM operations the token performs; the envelope is the same as the
//! key file's, so the rest of Confidant cannot tell the providers apart.
//!
//! Key versions are objects labelled `confidant-kek:<instance>:v<N>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
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

/// The PKCS#11 library of `module`, loaded and initialised once per process:
/// finalising it (which dropping a context does) would end every session of
/// the process, so contexts are kept for the life of the process.
fn context(module: &Path) -> Result<Pkcs11, VaultError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = match CONTEXTS.get_or_init(Default::default).lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(c) = contexts.get(module) {
        return Ok(c.clone());
    }
    let context = Pkcs11::new(module)
        .map_err(|e| VaultError::KeyFile(format!("cannot load the PKCS#11 module {}: {e}", module.display())))?;
    match context.initialize(CInitializeArgs::OsThreads) {
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => {}
        Err(e) => return Err(err("initialise")(e)),
    }
    contexts.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

/// A read-write session with the token labelled `token`, logged in with `pin`.
fn login(module: &Path, token: &str, pin: &str) -> Result<(Pkcs11, Session), VaultError> {
    let context = context(module)?;
    let slot = context
        .get_slots_with_token()
        .map_err(err("list slots"))?
        .into_iter()
        .find(|s| context.get_token_info(*s).map(|t| t.label().trim() == token).unwrap_or(false))
        .ok_or_else(|| VaultError::KeyFile(format!("PKCS#11: no token labelled '{token}' is present")))?;
    let session = context.open_rw_session(slot).map_err(err("open a session"))?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
        // Logins are per application: another session of this process logged in already.
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) | Ok(()) => {}
        Err(e) => {
            return Err(VaultError::KeyFile(format!("PKCS#11: the token refused the PIN ({e}); nothing was changed")));
        }
    }
    Ok((context, session))
}

fn label(instance_id: &str, version: u32) -> String {
    format!("confidant-kek:{instance_id}:v{version}")
}

impl Pkcs11Kek {
    /// Open the token labelled `token` through the PKCS#11 `module`, log in with
    /// `pin`, and find this instance's key versions.
    pub fn open(module: &Path, token: &str, pin: &str, instance_id: &str) -> Result<Pkcs11Kek, VaultError> {
        let (context, session) = login(module, token, pin)?;
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

    /// No check value per version: the keys never leave the token.
    fn versions(&self) -> Vec<crate::KekVersionInfo> {
        Pkcs11Kek::versions(self)
            .into_iter()
            .map(|version| crate::KekVersionInfo { version, check_value: None })
            .collect()
    }

    fn add_version(&self) -> Result<u32, VaultError> {
        self.generate_version()
    }

    fn retire_version(&self, version: u32) -> Result<String, VaultError> {
        self.destroy_version(version)?;
        self.check_value()
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

// ----- the audit signing key ---------------------------------------------------------

/// DER of the Ed25519 curve's object identifier (RFC 8410: 1.3.101.112).
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

fn signing_label(instance_id: &str) -> String {
    format!("confidant-audit-signing:{instance_id}")
}

/// The audit signing key as an Ed25519 key pair in a PKCS#11 token: the private
/// half is sensitive and never extractable; signing happens in the token.
pub struct Pkcs11Signer {
    token: String,
    session: Mutex<Session>,
    private: ObjectHandle,
    public: [u8; 32],
    _context: Pkcs11,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Signer(token {}, public {})", self.token, hex::encode(self.public))
    }
}

impl Pkcs11Signer {
    /// Generate this instance's audit signing key in the token. Refuses if one exists.
    pub fn generate(module: &Path, token: &str, pin: &str, instance_id: &str) -> Result<Pkcs11Signer, VaultError> {
        let (context, session) = login(module, token, pin)?;
        let label = signing_label(instance_id).into_bytes();
        if find(&session, ObjectClass::PRIVATE_KEY, &label)?.is_some() {
            return Err(VaultError::KeyFile(format!(
                "PKCS#11: the token already holds an audit signing key for instance {instance_id}"
            )));
        }
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Label(label.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label),
        ];
        let (public, private) = session
            .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public_template, &private_template)
            .map_err(err("generate the Ed25519 audit signing key"))?;
        let public = public_key(&session, public)?;
        Ok(Pkcs11Signer { token: token.to_owned(), session: Mutex::new(session), private, public, _context: context })
    }

    /// Open this instance's audit signing key in the token.
    pub fn open(module: &Path, token: &str, pin: &str, instance_id: &str) -> Result<Pkcs11Signer, VaultError> {
        let (context, session) = login(module, token, pin)?;
        let label = signing_label(instance_id).into_bytes();
        let missing =
            || VaultError::KeyFile(format!("PKCS#11: the token '{token}' holds no audit signing key of this instance"));
        let private = find(&session, ObjectClass::PRIVATE_KEY, &label)?.ok_or_else(missing)?;
        let public = find(&session, ObjectClass::PUBLIC_KEY, &label)?.ok_or_else(missing)?;
        let public = public_key(&session, public)?;
        Ok(Pkcs11Signer { token: token.to_owned(), session: Mutex::new(session), private, public, _context: context })
    }
}

fn find(session: &Session, class: ObjectClass, label: &[u8]) -> Result<Option<ObjectHandle>, VaultError> {
    let found = session
        .find_objects(&[Attribute::Class(class), Attribute::Label(label.to_vec())])
        .map_err(err("find the audit signing key"))?;
    Ok(found.first().copied())
}

/// The 32-byte Ed25519 public key of a public key object (CKA_EC_POINT holds
/// it raw, or DER-wrapped as an OCTET STRING, depending on the token).
fn public_key(session: &Session, handle: ObjectHandle) -> Result<[u8; 32], VaultError> {
    let attrs = session.get_attributes(handle, &[AttributeType::EcPoint]).map_err(err("read the public key"))?;
    let point = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| VaultError::KeyFile("PKCS#11: the audit public key has no EC point".into()))?;
    let raw = match point.as_slice() {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        p if p.len() == 32 => p,
        _ => return Err(VaultError::KeyFile("PKCS#11: the audit public key is not an Ed25519 key".into())),
    };
    let mut out = [0u8; 32];
    out.copy_from_slice(raw);
    Ok(out)
}

impl crate::signing::Signer for Pkcs11Signer {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], VaultError> {
        let session = match self.session.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let sig = session.sign(&mechanism, self.private, message).map_err(err("sign"))?;
        sig.try_into().map_err(|_| VaultError::KeyFile("PKCS#11: the token's signature is not 64 bytes".into()))
    }
}
