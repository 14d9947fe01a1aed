//! Who may manage accounts, and how: the decisions the identity service asks
//! about (administrators, invitations, an administrator's changes to an
//! account, whose sessions one may end, when a second factor must be
//! enrolled first). Who made an API token for whom is [`crate::may_issue_token`].

use confidant_fhir::ResourceType;

use crate::{Denied, Principal, Role, may_manage_accounts};

/// What an administrator may do to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    /// It can no longer sign in; its sessions and tokens end.
    Disable,
    Enable,
    /// Lift a lockout after failed sign-ins.
    Unlock,
    /// Remove the second factor, passkeys and recovery codes: the user enrols
    /// again at the next sign-in, with the one-time code the reset gives the
    /// administrator (the password alone is not enough).
    ResetSecondFactor,
    /// End every session and API token.
    EndSessions,
}

impl AccountChange {
    pub const ALL: [AccountChange; 5] = [
        AccountChange::Disable,
        AccountChange::Enable,
        AccountChange::Unlock,
        AccountChange::ResetSecondFactor,
        AccountChange::EndSessions,
    ];

    pub fn parse(s: &str) -> Option<AccountChange> {
        Some(match s {
            "disable" => AccountChange::Disable,
            "enable" => AccountChange::Enable,
            "unlock" => AccountChange::Unlock,
            "reset-second-factor" => AccountChange::ResetSecondFactor,
            "end-sessions" => AccountChange::EndSessions,
            _ => return None,
        })
    }
}

/// Why an account decision was refused. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountDenied {
    /// The role may not (only administrators manage accounts).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// An administrator's API token: accounts are managed from a session.
    #[error("accounts are managed from a signed-in session, not a token")]
    ThroughToken,
    /// One's own account: disabling it or resetting its second factor takes
    /// a second administrator.
    #[error("you cannot disable your own account or reset your own second factor; ask another administrator")]
    OwnAccount,
    /// A role linked to a record is not invited: its account is made at the
    /// server, where the record link is checked. A request error, not a refusal.
    #[error("a {0} account is linked to a record: create it at the server with `confidant user add`")]
    LinkedRole(Role),
}

/// The record an account of `role` is linked to: a clinician to their
/// Practitioner, a patient to their Patient; other roles to none.
pub fn linked_record(role: Role) -> Option<ResourceType> {
    match role {
        Role::Clinician => Some(ResourceType::Practitioner),
        Role::Patient => Some(ResourceType::Patient),
        Role::Admin | Role::Reception | Role::Auditor => None,
    }
}

/// Account management is for administrators, signed in (never through an API token).
pub fn may_administer_accounts(by: &Principal) -> Result<(), AccountDenied> {
    may_manage_accounts(by)?;
    if by.scopes.is_some() {
        return Err(AccountDenied::ThroughToken);
    }
    Ok(())
}

/// May `by` make `change` to the account `user_id`? Administrators may,
/// except disable their own account or reset their own second factor.
pub fn may_change_account(by: &Principal, user_id: &str, change: AccountChange) -> Result<(), AccountDenied> {
    may_administer_accounts(by)?;
    if user_id == by.user_id && matches!(change, AccountChange::Disable | AccountChange::ResetSecondFactor) {
        return Err(AccountDenied::OwnAccount);
    }
    Ok(())
}

/// May `by` invite someone to create their own account of `role` (with an
/// enrolment code)? Administrators may, for roles not linked to a record.
pub fn may_invite(by: &Principal, role: Role) -> Result<(), AccountDenied> {
    may_administer_accounts(by)?;
    if linked_record(role).is_some() {
        return Err(AccountDenied::LinkedRole(role));
    }
    Ok(())
}

/// Whose sessions a principal may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocableSessions<'a> {
    /// Anyone's (administrators).
    Anyone,
    /// Only this user's own.
    OwnedBy(&'a str),
}

/// Whose sessions `by` may end: an administrator anyone's, everyone else their own.
pub fn revocable_sessions(by: &Principal) -> RevocableSessions<'_> {
    match by.role {
        Role::Admin => RevocableSessions::Anyone,
        Role::Clinician | Role::Reception | Role::Auditor | Role::Patient => RevocableSessions::OwnedBy(&by.user_id),
    }
}

/// Must a sign-in of `role` enrol a second factor before anything else?
/// Staff without one must, unless the clinic turned the requirement off.
pub fn must_enrol_second_factor(role: Role, enrolled: bool, clinic_requires: bool) -> bool {
    role.is_staff() && !enrolled && clinic_requires
}

/// Is the address a request came from kept out of the audit log's clear
/// text for a caller of `role`? A patient's is (it is recorded as a blind
/// value: a copy of the log ties no patient to their addresses); staff
/// addresses, and those of callers of no known role, are recorded as they are.
pub fn blinds_source(role: Option<Role>) -> bool {
    role == Some(Role::Patient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scopes;

    fn principal(role: Role, token: bool) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id: (role == Role::Clinician).then(|| "pr1".into()),
            patient_id: (role == Role::Patient).then(|| "pa1".into()),
            scopes: token.then(|| Scopes::parse("user/*.*").unwrap_or_else(|e| panic!("{e}"))),
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    fn role_denied(role: Role) -> AccountDenied {
        AccountDenied::Denied(Denied::Role { role, action: "manage", resource: "accounts" })
    }

    /// Every cell: role × session or token.
    #[test]
    fn accounts_are_administered_by_an_admins_session() {
        for role in Role::ALL {
            for token in [false, true] {
                let got = may_administer_accounts(&principal(role, token));
                let expected = match (role, token) {
                    (Role::Admin, false) => Ok(()),
                    (Role::Admin, true) => Err(AccountDenied::ThroughToken),
                    _ => Err(role_denied(role)),
                };
                assert_eq!(got, expected, "{role} token={token}");
            }
        }
        assert_eq!(role_denied(Role::Clinician).to_string(), "the clinician role may not manage accounts");
    }

    /// Every cell: role × session or token × own account or another's × change.
    #[test]
    fn nobody_disables_or_resets_their_own_account() {
        let mut cells = 0;
        for role in Role::ALL {
            for token in [false, true] {
                for target in ["u1", "u2"] {
                    for change in AccountChange::ALL {
                        let got = may_change_account(&principal(role, token), target, change);
                        let own = target == "u1";
                        let expected = match (role, token) {
                            (Role::Admin, false)
                                if own
                                    && matches!(change, AccountChange::Disable | AccountChange::ResetSecondFactor) =>
                            {
                                Err(AccountDenied::OwnAccount)
                            }
                            (Role::Admin, false) => Ok(()),
                            (Role::Admin, true) => Err(AccountDenied::ThroughToken),
                            _ => Err(role_denied(role)),
                        };
                        assert_eq!(got, expected, "{role} token={token} {target} {change:?}");
                        cells += 1;
                    }
                }
            }
        }
        assert_eq!(cells, 5 * 2 * 2 * 5);
    }

    /// Every cell: inviter's role × session or token × invited role.
    #[test]
    fn invitations_are_for_roles_without_a_record() {
        for role in Role::ALL {
            for token in [false, true] {
                for invited in Role::ALL {
                    let got = may_invite(&principal(role, token), invited);
                    let expected = match (role, token, invited) {
                        (Role::Admin, false, Role::Clinician | Role::Patient) => {
                            Err(AccountDenied::LinkedRole(invited))
                        }
                        (Role::Admin, false, _) => Ok(()),
                        (Role::Admin, true, _) => Err(AccountDenied::ThroughToken),
                        _ => Err(role_denied(role)),
                    };
                    assert_eq!(got, expected, "{role} token={token} inviting {invited}");
                }
            }
        }
        assert!(AccountDenied::LinkedRole(Role::Patient).to_string().starts_with("a patient account is linked"));
    }

    #[test]
    fn linked_records() {
        for role in Role::ALL {
            let expected = match role {
                Role::Clinician => Some(ResourceType::Practitioner),
                Role::Patient => Some(ResourceType::Patient),
                _ => None,
            };
            assert_eq!(linked_record(role), expected, "{role}");
        }
    }

    /// Every cell: role × session or token.
    #[test]
    fn admins_end_anyones_sessions_others_their_own() {
        for role in Role::ALL {
            for token in [false, true] {
                let p = principal(role, token);
                let expected =
                    if role == Role::Admin { RevocableSessions::Anyone } else { RevocableSessions::OwnedBy("u1") };
                assert_eq!(revocable_sessions(&p), expected, "{role} token={token}");
            }
        }
    }

    /// Every cell: role × enrolled × clinic requirement.
    #[test]
    fn staff_enrol_a_second_factor_first() {
        for role in Role::ALL {
            for enrolled in [false, true] {
                for required in [false, true] {
                    let expected = role != Role::Patient && !enrolled && required;
                    assert_eq!(
                        must_enrol_second_factor(role, enrolled, required),
                        expected,
                        "{role} enrolled={enrolled} required={required}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_patients_addresses_are_blinded() {
        assert!(!blinds_source(None));
        for role in Role::ALL {
            assert_eq!(blinds_source(Some(role)), role == Role::Patient, "{role}");
        }
    }

    #[test]
    fn account_changes_parse() {
        let names = ["disable", "enable", "unlock", "reset-second-factor", "end-sessions"];
        for (name, change) in names.into_iter().zip(AccountChange::ALL) {
            assert_eq!(AccountChange::parse(name), Some(change));
        }
        assert_eq!(AccountChange::parse("delete"), None);
    }
}
