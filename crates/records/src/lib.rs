//! The records service: where FHIR resources are validated, sealed, stored,
//! found and opened. The one place that joins the vault and the store.
//!
//! * Where is a record encrypted, decrypted, blinded? In the keyring
//!   ([`confidant_keyring`]), reached through [`Records::keyring`].
//!
//! * Where is access decided? In `confidant_policy` (the role matrix,
//!   visibility, and `confidant_policy::records`); `access` asks it.
//! * Where is a read audited? `Records::entry` (in `access`) builds the entry
//!   of every record access, `Records::audited` commits it before release.
//!
//! By use case: `access` (who sees what; audit entries), `crud` (create,
//! update, read, vread, history), `search`, `break_glass`, `audit_view`
//! (AuditEvent), `incident`, `alerts`, `honey`, `key_status`, `rotation`, `reindex`,
//! `measures` (outcome measures: instruments, answers, scores, risk flags), `error`. Every read, search hit and write of a patient's data passes
//! through one method of [`Records`].
#![forbid(unsafe_code)]

mod access;
mod alerts;
mod audit_view;
mod break_glass;
// FHIR conditional create and update (issue 19).
mod conditional;
mod crud;
mod error;
// Patient/{id}/$everything (issue 19).
mod everything;
mod honey;
// _include and _revinclude (issue 19).
mod incident;
mod include;
mod intake;
mod key_status;
pub mod measures;
mod notes;
mod reindex;
mod reminders;
pub mod rotation;
mod schedule;
mod search;
mod templates;
mod text;
// Writes in one store transaction; FHIR transaction Bundles (issue 19).
mod transaction;

pub use audit_view::{ACTION_SYSTEM, AuditPage, AuditQuery};
pub use conditional::CONDITION_NOT_MET;
pub use error::{RecordsError, Result, STOPPED_BY_DETECTION};
pub use everything::{COMPARTMENT, EverythingCursor, EverythingPage, EverythingRequest};
pub use incident::{Accesses, IncidentQuery, IncidentReport};
pub use include::Included;
pub use key_status::{KekVersion, KeyStatus, kek_made_at, kek_made_setting, kek_versions};
pub use notes::{COSIGN_REQUIRED_BY, COSIGNED_AT, COSIGNED_BY, SIGNED_AT};
pub use reindex::{Reindexed, SETTING_APPOINTMENT_DAYS, SETTING_NAME_PREFIXES};
pub use reminders::{CLAIM_MS, Cancelled, DueReminder, LINK_TOKEN_LEN, LinkState};
pub use schedule::{Booking, CANCEL_REASONS, MAX_SERIES, Which, practitioner_in, span_of};
pub use search::{COUNT_ONLY_AUDITED, Conditional, SearchOptions, SearchPage, SearchRequest};
pub use templates::{
    Bilingual, NoteSection, TEMPLATE, Template, TemplateDraft, TemplateSection, built_in_template, built_in_templates,
    note_sections, sectioned_content, set_template, template_of,
};
pub use text::{visible_len, visible_text};
pub use transaction::{TxDone, TxEntry, TxFailed, TxOp, TxPlan};

use std::sync::Arc;

use confidant_audit::{Auditor, Subscriber};
use confidant_fhir::{ResourceType, ValueKind};
use confidant_keyring::{InstanceKeys, Keyring};
use confidant_policy::records::Seen;
use confidant_store::{SearchToken, Store, VersionRow};
use confidant_vault::{BlindKind, DataKey, Vault};
use serde_json::Value;

/// The source of time (defined by the audit log, which stamps every entry with it).
pub use confidant_audit::{Clock, SystemClock};

/// A resource as the API returns it (decrypted, in memory only).
#[derive(Debug, Clone)]
pub struct Stored {
    pub resource_type: ResourceType,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub resource: Value,
}

const SETTING_INSTANCE_ID: &str = "instance_id";

/// The records service.
pub struct Records {
    store: Store,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    auditor: Arc<Auditor>,
    /// Who watches committed entries (the detector), if anyone: given at construction.
    subscriber: Option<Arc<dyn Subscriber>>,
    /// One booking at a time per practitioner (the double-booking check).
    bookings: Arc<schedule::BookingLocks>,
    /// The honey records' patient ids, opened once and kept current (`honey`).
    honey: honey::HoneyCache,
    /// Whether this service's lists and calendars show honey records (only the
    /// honey keeper's does: see [`Records::for_planting`]).
    shows_honey: bool,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Records({:?}, {:?})", self.store, self.keyring.vault())
    }
}

fn blind_kind(kind: ValueKind) -> BlindKind {
    match kind {
        ValueKind::Text => BlindKind::Text,
        ValueKind::Identifier => BlindKind::Identifier,
        ValueKind::Date => BlindKind::Date,
        ValueKind::Email => BlindKind::Email,
        ValueKind::Phone => BlindKind::Phone,
    }
}

/// The instance id recorded in a store, if it has been initialised.
pub async fn instance_id(store: &Store) -> Result<Option<String>> {
    Ok(store.setting(SETTING_INSTANCE_ID).await?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Set up a new, empty, migrated store for `instance_id`: the blind-index key
/// and the organisation's data key, both wrapped by the vault's KEK.
pub async fn initialise(store: &Store, vault: &Vault, instance_id: &str, now: i64) -> Result<()> {
    let keys = InstanceKeys::new(vault)?;
    store.insert_setting(SETTING_INSTANCE_ID, instance_id.as_bytes(), now).await?;
    keys.store(store, now).await?;
    Records::mark_indexed(store, now).await?;
    Ok(())
}

impl Records {
    /// Open the records of an initialised store. Fails with [`RecordsError::Keys`]
    /// ([`confidant_keyring::KeyringError::WrongKey`]) if the vault's KEK is not this instance's.
    /// Starts the audit log's group-commit appender (inside a Tokio runtime).
    pub async fn open(store: Store, vault: Vault, clock: Arc<dyn Clock>) -> Result<Records> {
        let auditor = Arc::new(Auditor::start(store.clone()));
        Records::open_with_auditor(store, vault, clock, auditor).await
    }

    /// [`Records::open`] with a given auditor.
    pub async fn open_with_auditor(
        store: Store,
        vault: Vault,
        clock: Arc<dyn Clock>,
        auditor: Arc<Auditor>,
    ) -> Result<Records> {
        let keyring = Arc::new(Keyring::open(store.clone(), vault).await?);
        let records = Records {
            store,
            keyring,
            clock,
            auditor,
            subscriber: None,
            bookings: Default::default(),
            honey: Default::default(),
            shows_honey: false,
        };
        records.refresh_honey().await?;
        Ok(records)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit log's appender (the identity service records security events through it).
    pub fn auditor(&self) -> &Arc<Auditor> {
        &self.auditor
    }

    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The clock these records read (the identity service reads the same).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Who watches what these records commit (the detector), if anyone.
    pub fn subscriber(&self) -> Option<&Arc<dyn Subscriber>> {
        self.subscriber.as_ref()
    }

    /// Where envelopes are sealed and opened and values blinded (the identity
    /// service's secrets too).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Seal a small secret of the organisation (see [`Keyring::seal_secret`]).
    pub async fn seal_secret(&self, kind: &str, owner: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(self.keyring.seal_secret(kind, owner, secret).await?)
    }

    /// Open a secret sealed by [`Records::seal_secret`].
    pub async fn open_secret(&self, kind: &str, owner: &str, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(self.keyring.open_secret(kind, owner, sealed).await?)
    }

    /// A keyed, one-way token of a value (see [`Keyring::blind`]).
    pub fn blind(&self, kind: &str, value: &str) -> Vec<u8> {
        self.keyring.blind(kind, value)
    }

    /// One resource version, serialised and sealed by the keyring.
    fn seal_body(
        &self,
        key: &DataKey,
        rt: ResourceType,
        id: &str,
        version: i64,
        compartment: &str,
        resource: &Value,
    ) -> Result<Vec<u8>> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(resource).map_err(|_| RecordsError::Integrity)?);
        Ok(self.keyring.seal_version(key, rt.as_str(), id, version, compartment, &plaintext)?)
    }

    /// Decrypt one stored version (the keyring opens it). A record
    /// that fails its integrity check is a security event: logged by id (never
    /// content) and raised as an alert.
    async fn open_record(&self, row: VersionRow) -> Result<Stored> {
        let resource = format!("{}/{}", row.resource_type, row.id);
        let opened = self.open_record_unchecked(row).await;
        if matches!(opened, Err(RecordsError::Integrity))
            && let Some(d) = &self.subscriber
        {
            d.integrity_failure(self.clock.now_millis(), &resource).await;
        }
        opened
    }

    async fn open_record_unchecked(&self, row: VersionRow) -> Result<Stored> {
        let rt = ResourceType::parse(&row.resource_type).ok_or(RecordsError::Integrity)?;
        let plaintext = self.keyring.open_version(&row).await?;
        let resource: Value = serde_json::from_slice(&plaintext).map_err(|_| RecordsError::Integrity)?;
        Ok(Stored {
            resource_type: rt,
            id: row.id,
            version_id: row.version_id,
            last_updated: row.last_updated,
            resource,
        })
    }

    /// Blind tokens for the validated search values of a resource.
    /// Names get their prefix tokens too (see [`Keyring::name_prefix_tokens`]).
    fn tokens(&self, rt: ResourceType, index: &[(&'static str, ValueKind, String)]) -> Vec<SearchToken> {
        let mut tokens = self
            .keyring
            .tokens(rt.as_str(), index.iter().map(|(param, kind, value)| (*param, blind_kind(*kind), value.as_str())));
        for (param, _, value) in index.iter().filter(|(param, _, _)| confidant_fhir::prefix_indexed(rt, param)) {
            let folded = confidant_fhir::fold_name(value);
            let prefixes = self.keyring.name_prefix_tokens(
                rt.as_str(),
                param,
                &folded,
                (confidant_fhir::PREFIX_MIN, confidant_fhir::PREFIX_MAX),
            );
            tokens.extend(prefixes.into_iter().map(|token| SearchToken { param: confidant_fhir::PREFIX_INDEX, token }));
        }
        tokens
    }
}
