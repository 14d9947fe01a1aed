//! Who may define the clinic's note templates and who writes with them.
//! A template is a form (names, section titles, prompts), not anyone's record.

use crate::{Denied, Principal, Role};

/// Who may create and change the clinic's note templates (and set who
/// supervises whom): admins, in a signed-in session (not with an API token).
pub fn may_manage_templates(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Admin if p.scopes.is_none() => Ok(()),
        Role::Admin => Err(Denied::Scope { action: "manage", resource: "note templates" }),
        role => Err(Denied::Role { role, action: "manage", resource: "note templates" }),
    }
}

/// Who may read the templates (to write a note with one, or to manage them):
/// clinicians and admins.
pub fn may_use_templates(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Clinician | Role::Admin => Ok(()),
        role => Err(Denied::Role { role, action: "read", resource: "note templates" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_manage_templates_and_clinicians_use_them() {
        for role in [Role::Admin, Role::Clinician, Role::Reception, Role::Auditor, Role::Patient] {
            let p = Principal {
                user_id: "u".into(),
                role,
                practitioner_id: None,
                patient_id: None,
                scopes: None,
                source: None,
                credential: None,
                training: Default::default(),
            };
            assert_eq!(may_manage_templates(&p).is_ok(), role == Role::Admin, "{role}");
            assert_eq!(may_use_templates(&p).is_ok(), matches!(role, Role::Admin | Role::Clinician), "{role}");
        }
    }
}
