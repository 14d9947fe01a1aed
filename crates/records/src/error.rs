//! The records service's errors. Messages name ids and elements, never content.

use confidant_keyring::KeyringError;
use confidant_policy::records::Refused;
use confidant_store::StoreError;
use confidant_vault::VaultError;

/// Errors of the records service. Messages name ids and elements, never content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Well-formed, but against a rule of the server (e.g. a subject that does not exist).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotSupported(String),
    /// The principal's role or token scope does not allow this action.
    #[error("{0}")]
    Forbidden(String),
    #[error("version conflict: the resource is at version {current}, not the version in If-Match")]
    PreconditionFailed { current: i64 },
    /// A conditional create or update whose conditions match more than one
    /// record, or one the caller may not see (412).
    #[error("{0}")]
    ConditionFailed(String),
    #[error("conflict: the resource was changed concurrently; read it again and retry")]
    Conflict,
    /// The practitioner already has a booked appointment overlapping this time
    /// (its start, Unix ms); the other patient is not named.
    #[error(
        "double booking: the practitioner already has an appointment from {} (UTC) overlapping this time; nothing was booked or changed",
        confidant_fhir::instant(*.at)
    )]
    DoubleBooked { at: i64 },
    #[error("stored data failed its integrity check")]
    Integrity,
    /// The instance's keys: not initialised, or not this KEK's
    /// ([`KeyringError::WrongKey`], [`KeyringError::NotInitialised`]).
    #[error(transparent)]
    Keys(KeyringError),
    /// The access could not be recorded in the audit log, so it was not given.
    #[error("the access could not be recorded in the audit log, so nothing was returned; try again later")]
    AuditFailed,
    #[error(transparent)]
    Store(StoreError),
    #[error("key error: {0}")]
    Vault(VaultError),
}

/// What a request stopped by breach detection is told (the same for every such request).
pub const STOPPED_BY_DETECTION: &str = "stopped by breach detection: this account opened more patients' records \
     than the clinic allows within a short time, so its sessions and tokens were ended and the clinic's \
     administrators alerted; ask them to check and unlock it";

impl From<StoreError> for RecordsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => RecordsError::Conflict,
            other => RecordsError::Store(other),
        }
    }
}

impl From<Refused> for RecordsError {
    fn from(r: Refused) -> Self {
        RecordsError::Forbidden(r.to_string())
    }
}

impl From<KeyringError> for RecordsError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Integrity => RecordsError::Integrity,
            e @ (KeyringError::WrongKey | KeyringError::NotInitialised(_)) => RecordsError::Keys(e),
            KeyringError::Store(e) => e.into(),
            KeyringError::Vault(e) => RecordsError::Vault(e),
        }
    }
}

pub type Result<T, E = RecordsError> = std::result::Result<T, E>;
