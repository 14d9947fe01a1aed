//! What one audit entry says: when, who (user id and role), from where, what
//! action, which patient and resource, why, and the outcome (DESIGN.md §5).
//!
//! An entry holds ids only — random user, patient and resource ids, session
//! and token ids, a break-glass id — never a name, a search value or any
//! clinical content. Its bytes are the JSON of [`Entry`], written once and
//! hashed as a Merkle leaf; they are never re-encoded, so the hash stays
//! valid whatever later versions of this struct look like.

use confidant_store::AuditRow;
use serde::{Deserialize, Serialize};

use crate::merkle::leaf_hash;

/// The actor of what is done at the server's command line (by whoever can run
/// it there: an administrator).
pub const CONSOLE: &str = "console";

/// The format version written into every entry.
pub const FORMAT: u32 = 1;

/// What happened. The strings are stable: they are stored and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    // Access to patient data.
    Read,
    Vread,
    History,
    /// One entry per resource a search returned.
    SearchHit,
    Create,
    Update,
    Delete,
    Export,
    BreakGlass,
    // Security events.
    Login,
    LoginFailed,
    Lockout,
    Logout,
    MfaEnrol,
    MfaReset,
    UserAdd,
    /// An enrolment code made for someone to create an account of a role.
    Invite,
    UserDisable,
    UserEnable,
    Unlock,
    SessionRevoke,
    TokenCreate,
    TokenRevoke,
    KeyOperation,
    Backup,
    Alert,
    /// Someone read or exported the audit log itself.
    AuditAccess,
    /// A legal hold set on or lifted from a patient (erasure waits for it).
    LegalHold,
    // Staff security training (issue 16): the target is `training/<module>@<version>`.
    /// A staff member passed a training module.
    TrainingPassed,
    /// A staff member failed a training module (answered, below the pass mark).
    TrainingFailed,
    /// A training pack was imported (or the built-in one brought in): one entry per module changed.
    TrainingImport,
    /// A module was assigned to someone (after a phishing drill's click, say).
    TrainingAssigned,
    // Phishing drills (no link id in any of them: an entry cannot replay a link).
    /// An administrator made a drill campaign.
    PhishingCampaign,
    /// A drill mail went out to a staff member.
    PhishingSent,
    /// A staff member opened a drill link (the first time).
    PhishingClicked,
    /// Something was submitted on the look-alike page (never what).
    PhishingSubmitted,
    /// A staff member reported a drill mail.
    PhishingReported,
    /// A staff member reported a mail that is not a drill: a suspected real phishing (an alert).
    PhishingSuspected,
    /// A staff member's e-mail address for drills was set.
    StaffEmail,
    // SMART App Launch (issue 19): the target is the app's client id. Its
    // tokens are `token-create` / `token-revoke` entries like every API token's.
    /// An administrator registered a SMART app.
    AppRegister,
}

impl Action {
    pub const ALL: &[Action] = &[
        Action::Read,
        Action::Vread,
        Action::History,
        Action::SearchHit,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Export,
        Action::BreakGlass,
        Action::Login,
        Action::LoginFailed,
        Action::Lockout,
        Action::Logout,
        Action::MfaEnrol,
        Action::MfaReset,
        Action::UserAdd,
        Action::Invite,
        Action::UserDisable,
        Action::UserEnable,
        Action::Unlock,
        Action::SessionRevoke,
        Action::TokenCreate,
        Action::TokenRevoke,
        Action::KeyOperation,
        Action::Backup,
        Action::Alert,
        Action::AuditAccess,
        Action::LegalHold,
        Action::TrainingPassed,
        Action::TrainingFailed,
        Action::TrainingImport,
        Action::TrainingAssigned,
        Action::PhishingCampaign,
        Action::PhishingSent,
        Action::PhishingClicked,
        Action::PhishingSubmitted,
        Action::PhishingReported,
        Action::PhishingSuspected,
        Action::StaffEmail,
        Action::AppRegister,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Vread => "vread",
            Action::History => "history",
            Action::SearchHit => "search-hit",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Export => "export",
            Action::BreakGlass => "break-glass",
            Action::Login => "login",
            Action::LoginFailed => "login-failed",
            Action::Lockout => "lockout",
            Action::Logout => "logout",
            Action::MfaEnrol => "mfa-enrol",
            Action::MfaReset => "mfa-reset",
            Action::UserAdd => "user-add",
            Action::Invite => "invite",
            Action::UserDisable => "user-disable",
            Action::UserEnable => "user-enable",
            Action::Unlock => "unlock",
            Action::SessionRevoke => "session-revoke",
            Action::TokenCreate => "token-create",
            Action::TokenRevoke => "token-revoke",
            Action::KeyOperation => "key-operation",
            Action::Backup => "backup",
            Action::Alert => "alert",
            Action::AuditAccess => "audit-access",
            Action::LegalHold => "legal-hold",
            Action::TrainingPassed => "training-passed",
            Action::TrainingFailed => "training-failed",
            Action::TrainingImport => "training-import",
            Action::TrainingAssigned => "training-assigned",
            Action::PhishingCampaign => "phishing-campaign",
            Action::PhishingSent => "phishing-sent",
            Action::PhishingClicked => "phishing-clicked",
            Action::PhishingSubmitted => "phishing-submitted",
            Action::PhishingReported => "phishing-reported",
            Action::PhishingSuspected => "phishing-suspected",
            Action::StaffEmail => "staff-email",
            Action::AppRegister => "app-register",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s)
    }

    /// Does this action touch patient data (as opposed to a security event)?
    pub fn is_record_access(self) -> bool {
        matches!(
            self,
            Action::Read
                | Action::Vread
                | Action::History
                | Action::SearchHit
                | Action::Create
                | Action::Update
                | Action::Delete
                | Action::Export
                | Action::BreakGlass
        )
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Refused by access control (role, scope, care team), or a failed login.
    Denied,
}

/// One audit entry. Optional fields are left out of the JSON when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// [`FORMAT`].
    pub v: u32,
    /// Unix time in milliseconds.
    pub time: i64,
    /// An [`Action`] string.
    pub action: String,
    pub outcome: Outcome,
    /// The acting user's id (`None` for an unknown user, e.g. a failed login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The acting user's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The network address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The patient whose record was touched (a random id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// `Type/id` of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Why: `break-glass/<id>` when access rested on a break-glass (its
    /// reason is sealed in the patient's record), else absent (treatment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The object of a security event: a user, session or token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Entry {
    /// A new entry with only the required fields set.
    pub fn new(time: i64, action: Action, outcome: Outcome) -> Entry {
        Entry {
            v: FORMAT,
            time,
            action: action.as_str().to_owned(),
            outcome,
            actor: None,
            role: None,
            source: None,
            patient: None,
            resource: None,
            version: None,
            purpose: None,
            target: None,
        }
    }

    /// An action taken at the server console (`confidant …` commands run by
    /// the system administrator), recorded in the admin role.
    pub fn by_console(time: i64, action: Action) -> Entry {
        let mut e = Entry::new(time, action, Outcome::Success);
        e.actor = Some(crate::CONSOLE.to_owned());
        e.role = Some("admin".to_owned());
        e
    }

    /// The row to store: the entry's bytes, their leaf hash, the search columns.
    pub fn to_row(&self) -> AuditRow {
        // Serialising a struct of strings and integers cannot fail.
        let entry = serde_json::to_vec(self).unwrap_or_default();
        AuditRow {
            leaf_hash: leaf_hash(&entry).to_vec(),
            entry,
            at: self.time,
            actor: self.actor.clone(),
            patient: self.patient.clone(),
            action: self.action.clone(),
        }
    }

    /// Whether this entry is an access to patient data (not a security event).
    pub fn is_record_access(&self) -> bool {
        Action::parse(&self.action).is_some_and(Action::is_record_access)
    }

    /// Parse stored entry bytes.
    pub fn parse(bytes: &[u8]) -> Option<Entry> {
        serde_json::from_slice(bytes).ok()
    }

    /// Do a stored row's search columns say what its entry says?
    pub fn columns_match(&self, row: &AuditRow) -> bool {
        row.at == self.time && row.actor == self.actor && row.patient == self.patient && row.action == self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert!(seen.insert(a.as_str()));
        }
        assert_eq!(Action::parse("nonsense"), None);
    }

    #[test]
    fn an_entry_is_compact_json_and_its_row_agrees() {
        let mut e = Entry::new(1_790_000_000_000, Action::Read, Outcome::Success);
        e.actor = Some("u1".into());
        e.patient = Some("p1".into());
        e.resource = Some("Patient/p1".into());
        let row = e.to_row();
        assert_eq!(
            String::from_utf8(row.entry.clone()).unwrap(),
            r#"{"v":1,"time":1790000000000,"action":"read","outcome":"success","actor":"u1","patient":"p1","resource":"Patient/p1"}"#
        );
        assert_eq!(row.leaf_hash, leaf_hash(&row.entry).to_vec());
        assert_eq!(Entry::parse(&row.entry), Some(e.clone()));
        assert!(e.columns_match(&row));
        let hidden = AuditRow { patient: None, ..row };
        assert!(!e.columns_match(&hidden));
    }
}
