//! Policy: who may do what to which patient's records. The one place where
//! access is decided (DESIGN.md §6). Pure functions, no I/O: the records
//! service asks, this crate answers, tests enumerate every cell.
//!
//! Two questions are answered separately:
//! 1. [`allowed`]: may this role (and token scope) perform this action on
//!    this resource type at all? Deny by default.
//! 2. [`Visibility`]: of that type, which records? A care relationship
//!    (the patient is on the clinician's care team, or an active break-glass)
//!    decides, never the UI.
#![forbid(unsafe_code)]

mod accounts;
pub mod appointments;
mod measures;
mod notes;
// phishing drills
pub mod phishing;
pub mod records;
pub mod schedule;
// SMART App Launch: registering apps, scopes asked for and granted.
pub mod smart;
mod templates;
// Staff security training: what its standing means for access.
mod training;

use std::fmt;

pub use accounts::{
    AccountChange, AccountDenied, RevocableSessions, blinds_source, linked_record, may_administer_accounts,
    may_change_account, may_invite, must_enrol_second_factor, revocable_sessions,
};
pub use measures::{may_acknowledge_flag, may_answer_measure, may_send_measure};
pub use notes::{NoteFacts, author_of_new_note, may_append, may_change_note, may_cosign, signer_of_new_note};
pub use templates::{may_manage_templates, may_use_templates};
pub use training::{
    Enforcement, TrainingStanding, is_patient_data, may_manage_training, may_see_training_coverage, may_take_training,
    training_standing,
};

use confidant_fhir::ResourceType;

/// The roles of DESIGN.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Clinician,
    Reception,
    Auditor,
    Patient,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Clinician, Role::Reception, Role::Auditor, Role::Patient];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Reception => "reception",
            Role::Auditor => "auditor",
            Role::Patient => "patient",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Staff roles must use a second factor.
    pub fn is_staff(self) -> bool {
        self != Role::Patient
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is done to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// read, vread, history, search.
    Read,
    /// create, update.
    Write,
}

/// SMART-on-FHIR style scopes of an API token: `user/Patient.read`,
/// `user/DocumentReference.write`, `user/*.read`, `user/*.*`, or in SMART v2
/// syntax `user/Patient.rs`, `user/*.cu`, `user/*.cruds` without the `d`
/// (see [`smart::v2_permissions`]). A token never grants more than its user's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<(Option<ResourceType>, bool, bool)>);

impl Scopes {
    /// Parse a space-separated scope list; errors name the bad scope.
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut out = Vec::new();
        for scope in s.split_whitespace() {
            let bad = || {
                format!(
                    "'{scope}' is not a scope like user/Patient.read (or .rs), user/Encounter.write (or .cu) or user/*.read"
                )
            };
            let rest = scope.strip_prefix("user/").ok_or_else(bad)?;
            let (ty, perm) = rest.split_once('.').ok_or_else(bad)?;
            let ty = match ty {
                "*" => None,
                t => Some(ResourceType::parse(t).ok_or_else(bad)?),
            };
            let (r, w) = match perm {
                "read" => (true, false),
                "write" => (false, true),
                "*" => (true, true),
                v2 => smart::v2_permissions(v2).map_err(|why| format!("'{scope}': {why}"))?.ok_or_else(bad)?,
            };
            out.push((ty, r, w));
        }
        if out.is_empty() {
            return Err("give at least one scope, e.g. user/Patient.read".into());
        }
        Ok(Scopes(out))
    }

    /// Reading the audit log (AuditEvent, a read-only view) needs a read scope on every type.
    pub fn permits_audit_read(&self) -> bool {
        self.0.iter().any(|(ty, r, _)| ty.is_none() && *r)
    }

    pub fn permits(&self, rt: ResourceType, action: Action) -> bool {
        self.0.iter().any(|(ty, r, w)| {
            ty.is_none_or(|t| t == rt)
                && match action {
                    Action::Read => *r,
                    Action::Write => *w,
                }
        })
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(ty, r, w)| {
                let ty = ty.map(|t| t.as_str()).unwrap_or("*");
                let p = match (r, w) {
                    (true, true) => "*",
                    (true, false) => "read",
                    _ => "write",
                };
                format!("user/{ty}.{p}")
            })
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// An authenticated user, as the request carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    /// For clinicians: their Practitioner id.
    pub practitioner_id: Option<String>,
    /// For patients: their Patient id.
    pub patient_id: Option<String>,
    /// For API tokens: what the token may do (a session has its role's full rights).
    pub scopes: Option<Scopes>,
    /// The network address the request came from (for the audit log).
    pub source: Option<String>,
    /// The credential of the request, `session/<id>` or `token/<id>` (for the
    /// detector, which may lock it).
    pub credential: Option<String>,
    /// Where they stand with their security training (computed where the
    /// principal is built; `NotRequired` for patients and the console).
    pub training: TrainingStanding,
}

/// Why access was refused. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the {role} role may not {action} {resource}")]
    Role { role: Role, action: &'static str, resource: &'static str },
    #[error("this token's scopes do not allow {action} {resource}")]
    Scope { action: &'static str, resource: &'static str },
    #[error("this account is not linked to a {0}; ask an administrator")]
    Unlinked(&'static str),
    /// A note's authorship or labels: only its author may do this (the message says what).
    #[error("{0}")]
    NotAuthor(&'static str),
    /// A signed note and its addenda: what the lock forbids (the message says what).
    #[error("{0}")]
    Locked(&'static str),
    #[error(
        "from here, tokens are made for reception accounts and your own; a {0}'s token is made at the server with `confidant token create`"
    )]
    TokenHolder(Role),
    #[error(
        "a token made for another account may not read {0}, which its maker's role does not read; leave out user/{0}.read, user/{0}.* and user/*.read (it may still write), or make it at the server with `confidant token create`"
    )]
    TokenReads(&'static str),
    /// Security training overdue under `training.enforce = "block"`.
    #[error("complete your security training first: /training")]
    Training,
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Read => "read",
        Action::Write => "write",
    }
}

/// The role matrix: which role may do what to which type, regardless of
/// patient. Deny by default. This table is the one in docs/admin.md, "Who may do what".
pub fn role_permits(role: Role, rt: ResourceType, action: Action) -> bool {
    use Action::{Read, Write};
    use ResourceType as T;
    match (role, rt, action) {
        // Clinicians: their patients' records (the care relationship decides which).
        (
            Role::Clinician,
            T::Patient | T::Encounter | T::DocumentReference | T::CareTeam | T::Appointment,
            Read | Write,
        ) => true,
        (Role::Clinician, T::Practitioner | T::Schedule, Read) => true,
        // Outcome measures: read here; written only by the measures flow (`measures.rs`).
        (Role::Clinician | Role::Patient, T::QuestionnaireResponse | T::Observation, Read) => true,
        // Reception: demographics and care-team assignments; never notes or encounters.
        (Role::Reception, T::Patient | T::CareTeam | T::Appointment, Read | Write) => true,
        (Role::Reception, T::Practitioner | T::Schedule, Read) => true,
        // Admin: staff and care-team assignments; no clinical content at all.
        // ... and the clinicians' working hours (Schedule).
        (Role::Admin, T::Practitioner | T::CareTeam | T::Schedule, Read | Write) => true,
        // Auditor: the staff directory only (the audit log comes with its own API).
        (Role::Auditor, T::Practitioner, Read) => true,
        // Patients: their own record and the notes shared with them, read only.
        (Role::Patient, T::Patient | T::DocumentReference, Read) => true,
        _ => false,
    }
}

/// May `p` perform `action` on resources of type `rt` at all?
pub fn allowed(p: &Principal, rt: ResourceType, action: Action) -> Result<(), Denied> {
    if !role_permits(p.role, rt, action) {
        return Err(Denied::Role { role: p.role, action: verb(action), resource: rt.as_str() });
    }
    training::training_permits(p, rt)?;
    if let Some(scopes) = &p.scopes
        && !scopes.permits(rt, action)
    {
        return Err(Denied::Scope { action: verb(action), resource: rt.as_str() });
    }
    match p.role {
        Role::Clinician if p.practitioner_id.is_none() => Err(Denied::Unlinked("Practitioner")),
        Role::Patient if p.patient_id.is_none() => Err(Denied::Unlinked("Patient")),
        _ => Ok(()),
    }
}

/// How much of the audit log a principal may read (as FHIR AuditEvent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    /// Auditors: every entry.
    All,
    /// A patient: the entries about their own record (their access log).
    Patient(String),
}

/// Who may read the audit log: auditors all of it, a patient their own
/// access log; nobody else (an admin who could read it could learn whom to
/// cover up for). API tokens need `user/*.read` (or `user/*.*`).
pub fn audit_scope(p: &Principal) -> Result<AuditScope, Denied> {
    let denied = || Denied::Role { role: p.role, action: "read", resource: "AuditEvent" };
    if let Some(scopes) = &p.scopes
        && !scopes.permits_audit_read()
    {
        return Err(Denied::Scope { action: "read", resource: "AuditEvent" });
    }
    match (p.role, &p.patient_id) {
        (Role::Auditor, _) => Ok(AuditScope::All),
        (Role::Patient, Some(id)) if !id.is_empty() => Ok(AuditScope::Patient(id.clone())),
        (Role::Patient, _) => Err(Denied::Unlinked("Patient")),
        _ => Err(denied()),
    }
}

/// Who may see the staff directory with its security state (second factor,
/// locked, disabled) and manage accounts: admins.
pub fn may_manage_accounts(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Admin => Ok(()),
        role => Err(Denied::Role { role, action: "manage", resource: "accounts" }),
    }
}

/// Who may see the keys' state (versions, ages, counts; never key material)
/// and the security posture: admins.
pub fn may_manage_keys(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Admin if p.scopes.is_none() => Ok(()),
        Role::Admin => Err(Denied::Scope { action: "read", resource: "keys" }),
        role => Err(Denied::Role { role, action: "manage", resource: "keys" }),
    }
}

/// Who may see and acknowledge the detector's alerts: admins and auditors
/// (alerts hold ids and counts, no clinical content). API tokens need
/// `user/*.read` (or `user/*.*`), as for the audit log.
pub fn may_handle_alerts(p: &Principal) -> Result<(), Denied> {
    if let Some(scopes) = &p.scopes
        && !scopes.permits_audit_read()
    {
        return Err(Denied::Scope { action: "read", resource: "alerts" });
    }
    match p.role {
        Role::Admin | Role::Auditor => Ok(()),
        role => Err(Denied::Role { role, action: "read", resource: "alerts" }),
    }
}

/// Who makes an API token.
#[derive(Debug, Clone, Copy)]
pub enum TokenIssuer<'a> {
    /// The server's command line (`confidant token create`): whoever runs it
    /// holds the instance's keys already (S9), so any account and any scope.
    Console,
    /// A signed-in account (the administrator's web page).
    Account(&'a Principal),
}

/// May `issuer` make a token with `scopes` that acts as the account
/// `holder_id` of role `holder_role`? A token acts as its holder, so one made
/// for someone else would let its maker act, and read, as them (S6):
///
/// - Only an administrator's own session makes tokens (never a token).
/// - For their own account, any scopes: their role bounds what it does.
/// - For someone else, only for a reception account, and the token reads
///   nothing the maker's own role does not read: no demographics (Patient),
///   no appointments; it may write what reception writes, and read the staff
///   directory and care-team assignments as an administrator can anyway.
/// - Every other account's token is made at the console.
pub fn may_issue_token(
    issuer: TokenIssuer<'_>,
    holder_id: &str,
    holder_role: Role,
    scopes: &Scopes,
) -> Result<(), Denied> {
    let maker = match issuer {
        TokenIssuer::Console => return Ok(()),
        TokenIssuer::Account(p) => p,
    };
    if maker.role != Role::Admin {
        return Err(Denied::Role { role: maker.role, action: "create", resource: "API tokens" });
    }
    if maker.scopes.is_some() {
        return Err(Denied::Scope { action: "create", resource: "API tokens" });
    }
    if holder_id == maker.user_id {
        return Ok(());
    }
    if holder_role != Role::Reception {
        return Err(Denied::TokenHolder(holder_role));
    }
    match ResourceType::ALL.into_iter().find(|&rt| {
        scopes.permits(rt, Action::Read)
            && role_permits(holder_role, rt, Action::Read)
            && !role_permits(maker.role, rt, Action::Read)
    }) {
        Some(rt) => Err(Denied::TokenReads(rt.as_str())),
        None => Ok(()),
    }
}

/// Must a search of `rt` under visibility `v` name at least one search
/// parameter? Yes where every record of a type that belongs to patients is
/// visible (reception: Patient, CareTeam, Appointment; admins: CareTeam):
/// reception looks a person up, it does not page through the clinic's
/// demographics. Result controls (`_count`, `_after`) are not parameters.
pub fn search_needs_criterion(v: &Visibility, rt: ResourceType) -> bool {
    *v == Visibility::All && (rt == ResourceType::Patient || rt.has_subject())
}

/// Which records of an allowed type a principal sees. The store turns this
/// into SQL, so that search results and totals hold nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every record of the type (staff directory, demographics for reception).
    All,
    /// Records of patients on this practitioner's care teams (psychotherapy
    /// notes only if they are the author or released), plus patients under an
    /// active break-glass of this user (everything).
    CareTeam { practitioner_id: String, user_id: String, now: i64 },
    /// The patient's own Patient resource, and notes shared with them.
    OwnRecord { patient_id: String },
}

/// What `p` (already [`allowed`]) sees of type `rt`.
pub fn visibility(p: &Principal, rt: ResourceType, now: i64) -> Visibility {
    match (p.role, rt) {
        (_, ResourceType::Practitioner | ResourceType::Schedule) => Visibility::All,
        (Role::Reception | Role::Admin, _) => Visibility::All,
        (Role::Clinician, _) => Visibility::CareTeam {
            practitioner_id: p.practitioner_id.clone().unwrap_or_default(),
            user_id: p.user_id.clone(),
            now,
        },
        (Role::Patient, _) => Visibility::OwnRecord { patient_id: p.patient_id.clone().unwrap_or_default() },
        // Not reachable after `allowed`; see nothing.
        (Role::Auditor, _) => Visibility::OwnRecord { patient_id: String::new() },
    }
}

/// The access facts of one stored record, kept in plaintext beside its ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAccess<'a> {
    pub resource_type: ResourceType,
    /// The owning patient, if any.
    pub patient: Option<&'a str>,
    /// For an unreleased psychotherapy note: the authoring practitioner.
    pub restricted_to: Option<&'a str>,
    /// A note shared with the patient.
    pub patient_visible: bool,
}

/// What the store knows of a clinician's relationship to a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relationship {
    pub care_team: bool,
    pub break_glass: bool,
}

/// Does `visibility` include this record? `rel` is the caller's relationship
/// to the record's patient (only consulted for [`Visibility::CareTeam`]).
pub fn sees(visibility: &Visibility, record: &RecordAccess<'_>, rel: Relationship) -> bool {
    match visibility {
        Visibility::All => true,
        Visibility::CareTeam { practitioner_id, .. } => {
            rel.break_glass || (rel.care_team && record.restricted_to.is_none_or(|author| author == practitioner_id))
        }
        Visibility::OwnRecord { patient_id } => {
            record.patient == Some(patient_id.as_str())
                && !patient_id.is_empty()
                && (record.resource_type == ResourceType::Patient
                    || (record.patient_visible && record.restricted_to.is_none()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id: (role == Role::Clinician).then(|| "pr1".into()),
            patient_id: (role == Role::Patient).then(|| "pa1".into()),
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    #[test]
    fn separation_of_duties() {
        for rt in [ResourceType::Patient, ResourceType::Encounter, ResourceType::DocumentReference] {
            for a in [Action::Read, Action::Write] {
                assert!(allowed(&principal(Role::Admin), rt, a).is_err(), "admin {rt:?} {a:?}");
                assert!(allowed(&principal(Role::Auditor), rt, a).is_err(), "auditor {rt:?} {a:?}");
            }
        }
        assert!(allowed(&principal(Role::Reception), ResourceType::DocumentReference, Action::Read).is_err());
        assert!(allowed(&principal(Role::Reception), ResourceType::Patient, Action::Write).is_ok());
        assert!(allowed(&principal(Role::Patient), ResourceType::Patient, Action::Write).is_err());
        let mut unlinked = principal(Role::Clinician);
        unlinked.practitioner_id = None;
        assert!(allowed(&unlinked, ResourceType::Patient, Action::Read).is_err());
    }

    #[test]
    fn scopes_narrow_never_widen() {
        let mut p = principal(Role::Clinician);
        p.scopes = Some(Scopes::parse("user/Patient.read").unwrap());
        assert!(allowed(&p, ResourceType::Patient, Action::Read).is_ok());
        assert!(allowed(&p, ResourceType::Patient, Action::Write).is_err());
        assert!(allowed(&p, ResourceType::DocumentReference, Action::Read).is_err());
        let mut admin = principal(Role::Admin);
        admin.scopes = Some(Scopes::parse("user/*.*").unwrap());
        assert!(allowed(&admin, ResourceType::DocumentReference, Action::Read).is_err());
        for bad in ["", "Patient.read", "user/Condition.read", "user/Patient.delete", "patient/Patient.read"] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Scopes::parse("user/*.read  user/Encounter.*").unwrap().to_string(), "user/*.read user/Encounter.*");
    }

    #[test]
    fn psychotherapy_notes_are_the_authors() {
        let v = visibility(&principal(Role::Clinician), ResourceType::DocumentReference, 0);
        let mut note = RecordAccess {
            resource_type: ResourceType::DocumentReference,
            patient: Some("pa1"),
            restricted_to: Some("other"),
            patient_visible: false,
        };
        let team = Relationship { care_team: true, break_glass: false };
        assert!(!sees(&v, &note, team));
        assert!(sees(&v, &note, Relationship { care_team: false, break_glass: true }));
        note.restricted_to = Some("pr1");
        assert!(sees(&v, &note, team));
        note.restricted_to = None;
        assert!(!sees(&v, &note, Relationship { care_team: false, break_glass: false }));
        // The patient portal never shows a psychotherapy note, shared or not.
        let pv = visibility(&principal(Role::Patient), ResourceType::DocumentReference, 0);
        note.patient_visible = true;
        assert!(sees(&pv, &note, team));
        note.restricted_to = Some("pr1");
        assert!(!sees(&pv, &note, team));
        note.restricted_to = None;
        note.patient = Some("someone-else");
        assert!(!sees(&pv, &note, team));
    }

    /// Every cell of [`may_issue_token`]: issuer × holder × scopes.
    #[test]
    fn tokens_for_someone_else_read_nothing_their_maker_may_not() {
        use TokenIssuer::{Account, Console};
        // (scopes, may an admin give them to a reception account?)
        const SCOPES: &[(&str, bool)] = &[
            ("user/Patient.read", false),
            ("user/Patient.*", false),
            ("user/*.read", false),
            ("user/*.*", false),
            ("user/Appointment.read", false),
            ("user/Appointment.*", false),
            ("user/Practitioner.read user/Patient.read", false),
            ("user/Patient.write", true),
            ("user/Appointment.write", true),
            ("user/*.write", true),
            ("user/Practitioner.read", true),
            ("user/CareTeam.*", true),
            // Reception reads no notes: the scope grants nothing.
            ("user/DocumentReference.read", true),
        ];
        let admin = principal(Role::Admin);
        let mut admin_token = principal(Role::Admin);
        admin_token.scopes = Some(Scopes::parse("user/*.*").unwrap());
        for (scopes, to_reception) in SCOPES {
            let sc = Scopes::parse(scopes).unwrap();
            for holder in Role::ALL {
                let cell = format!("{scopes} for {holder}");
                // The console makes any token.
                assert!(may_issue_token(Console, "u2", holder, &sc).is_ok(), "console {cell}");
                // An administrator: their own token, any scopes.
                assert!(may_issue_token(Account(&admin), "u1", Role::Admin, &sc).is_ok(), "own {cell}");
                // For someone else: reception only, and then only what the admin could read.
                let other = may_issue_token(Account(&admin), "u2", holder, &sc);
                assert_eq!(other.is_ok(), holder == Role::Reception && *to_reception, "admin {cell}: {other:?}");
                if holder != Role::Reception {
                    assert_eq!(other, Err(Denied::TokenHolder(holder)));
                }
                // Never through a token, never by another role (not even for oneself).
                assert!(may_issue_token(Account(&admin_token), "u2", holder, &sc).is_err(), "token {cell}");
                assert!(may_issue_token(Account(&admin_token), "u1", Role::Admin, &sc).is_err(), "token own {cell}");
                for maker in Role::ALL.into_iter().filter(|r| *r != Role::Admin) {
                    let p = principal(maker);
                    assert!(may_issue_token(Account(&p), "u2", holder, &sc).is_err(), "{maker} {cell}");
                    assert!(may_issue_token(Account(&p), "u1", maker, &sc).is_err(), "{maker} own {cell}");
                }
            }
        }
        let denied = may_issue_token(Account(&admin), "u2", Role::Reception, &Scopes::parse("user/*.read").unwrap());
        assert_eq!(denied, Err(Denied::TokenReads("Patient")));
        assert!(denied.unwrap_err().to_string().contains("confidant token create"));
    }

    /// Every cell a search reaches (the role may read the type).
    #[test]
    fn whole_clinic_searches_need_a_parameter() {
        let mut cells = 0;
        for role in Role::ALL {
            for rt in ResourceType::ALL.into_iter().filter(|rt| role_permits(role, *rt, Action::Read)) {
                let v = visibility(&principal(role), rt, 0);
                let expected = matches!(
                    (role, rt),
                    (Role::Reception, ResourceType::Patient | ResourceType::CareTeam | ResourceType::Appointment)
                        | (Role::Admin, ResourceType::CareTeam)
                );
                assert_eq!(search_needs_criterion(&v, rt), expected, "{role} {rt:?}");
                cells += 1;
            }
        }
        assert_eq!(cells, 22);
    }
}
