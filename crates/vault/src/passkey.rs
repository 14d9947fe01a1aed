//! Passkeys (WebAuthn) as a second factor, through webauthn-rs (the Kanidm
//! project's relying-party library): this module only adapts it to
//! Confidant's types and keeps its state types out of the other crates.
//!
//! The relying party is the clinic's public URL (`server.public_url`): its
//! host is the RP ID, and only that origin is accepted (any port only for
//! `localhost`, for development and tests). Passkeys must verify the user
//! (PIN or biometric): a passkey and a password together are two factors.
//!
//! A stored passkey is a public key, a credential id and a counter: nothing
//! secret, but callers seal it (bound to its user) so that nobody can add a
//! passkey to an account by writing to the database.
//!
//! Sign-in asks for a discoverable passkey (no account named in the
//! options), so the first request tells nobody anything about any account;
//! the password is checked with the answer, in one step. Registration
//! therefore asks authenticators for a discoverable (resident) credential.

use serde_json::Value;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url,
    Uuid, Webauthn, WebauthnBuilder,
};

use crate::VaultError;

fn err(e: impl std::fmt::Display) -> VaultError {
    VaultError::Passkey(e.to_string())
}

/// A browser's answer that does not parse. A fixed message: the parser's own
/// would quote what the client sent, and it ends up in the log.
fn malformed(_: serde_json::Error) -> VaultError {
    VaultError::Passkey("the answer is not a WebAuthn credential".into())
}

/// The relying party: which site passkeys are for.
pub struct RelyingParty {
    webauthn: Webauthn,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelyingParty")
    }
}

/// A registration in progress (kept by the server, never sent).
pub struct Registration(PasskeyRegistration);

/// A sign-in in progress (kept by the server, never sent: a replayed answer
/// finds no state).
pub struct Authentication(DiscoverableAuthentication);

/// The 16 bytes WebAuthn knows an account by: its id (32 hex digits).
fn user_handle(user_id: &str) -> Result<Uuid, VaultError> {
    let bytes = hex::decode(user_id).map_err(|_| err("the user id is not hex"))?;
    Uuid::from_slice(bytes.get(..16).ok_or_else(|| err("the user id is too short"))?).map_err(err)
}

/// A registered passkey.
#[derive(Clone)]
pub struct StoredPasskey(Passkey);

impl StoredPasskey {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<StoredPasskey, VaultError> {
        serde_json::from_slice(bytes).map(StoredPasskey).map_err(|_| VaultError::Integrity)
    }

    /// The credential id, as the browser names it (base64url).
    pub fn credential_id(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(self.0.cred_id().as_ref())
    }
}

impl RelyingParty {
    /// The relying party of the site at `public_url` (`https://records.clinic.example`).
    pub fn new(public_url: &str, name: &str) -> Result<RelyingParty, VaultError> {
        let url = Url::parse(public_url).map_err(|e| err(format!("server.public_url {public_url:?}: {e}")))?;
        let host = url.host_str().ok_or_else(|| err("server.public_url has no host"))?.to_owned();
        let local = host == "localhost";
        if url.scheme() != "https" && !local {
            return Err(err("passkeys need an https public URL (or localhost for development)"));
        }
        let webauthn =
            WebauthnBuilder::new(&host, &url).map_err(err)?.rp_name(name).allow_any_port(local).build().map_err(err)?;
        Ok(RelyingParty { webauthn })
    }

    /// Options for `navigator.credentials.create` (JSON), and the state to keep.
    /// `user_id` is the account's id (32 hex digits); `existing` are its passkeys
    /// (an authenticator already registered is not registered twice).
    pub fn start_registration(
        &self,
        user_id: &str,
        username: &str,
        existing: &[StoredPasskey],
    ) -> Result<(Value, Registration), VaultError> {
        let exclude = Some(existing.iter().map(|p| p.0.cred_id().clone()).collect());
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_handle(user_id)?, username, username, exclude)
            .map_err(err)?;
        let mut options = serde_json::to_value(options).map_err(err)?;
        // Sign-in finds the passkey without naming the account: it must be discoverable.
        // (The library's state does not depend on this request option.)
        let selection = &mut options["publicKey"]["authenticatorSelection"];
        selection["residentKey"] = Value::from("required");
        selection["requireResidentKey"] = Value::from(true);
        Ok((options, Registration(state)))
    }

    /// Check the browser's answer to [`RelyingParty::start_registration`].
    pub fn finish_registration(&self, answer: &Value, state: &Registration) -> Result<StoredPasskey, VaultError> {
        let answer: RegisterPublicKeyCredential = serde_json::from_value(answer.clone()).map_err(malformed)?;
        self.webauthn.finish_passkey_registration(&answer, &state.0).map(StoredPasskey).map_err(err)
    }

    /// Options for `navigator.credentials.get` (JSON), naming no account, and
    /// the state to keep.
    pub fn start_authentication(&self) -> Result<(Value, Authentication), VaultError> {
        let (options, state) = self.webauthn.start_discoverable_authentication().map_err(err)?;
        Ok((serde_json::to_value(options).map_err(err)?, Authentication(state)))
    }

    /// Check the browser's answer for the account `user_id` (whose password
    /// was right): it must come from one of that account's passkeys, `keys`,
    /// and verify the user. Returns which key signed (its counter updated,
    /// to be stored again). A counter that went backwards (a cloned
    /// authenticator) is refused.
    pub fn finish_authentication(
        &self,
        answer: &Value,
        state: Authentication,
        user_id: &str,
        keys: &mut [StoredPasskey],
    ) -> Result<usize, VaultError> {
        let answer: PublicKeyCredential = serde_json::from_value(answer.clone()).map_err(malformed)?;
        let (handle, cred_id) = self.webauthn.identify_discoverable_authentication(&answer).map_err(err)?;
        if handle != user_handle(user_id)? {
            return Err(err("the answer came from a passkey of another account"));
        }
        let index = keys
            .iter()
            .position(|k| AsRef::<[u8]>::as_ref(k.0.cred_id()) == cred_id)
            .ok_or_else(|| err("the answer came from a passkey this account does not have"))?;
        let result =
            self.webauthn.finish_discoverable_authentication_v2(&answer, state.0, &keys[index].0).map_err(err)?;
        if !result.user_verified() {
            return Err(err("the authenticator did not verify the user"));
        }
        if result.needs_update() {
            keys[index].0.update_credential(&result);
        }
        Ok(index)
    }
}
