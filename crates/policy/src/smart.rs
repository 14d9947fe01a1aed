//! SMART App Launch (issue 19): who registers apps, who lets one act for
//! them, and which scopes its token gets. A SMART app's access token is an
//! API token of the user who said yes, with the scopes asked for, narrowed
//! to the app's registered scopes and to what the user's role allows: the
//! same narrowing as every API token ([`crate::allowed`] checks the role
//! first on every request anyway; the narrowing makes the token say so).

use confidant_fhir::ResourceType;

use crate::{Action, Denied, Principal, Role, Scopes, role_permits};

/// Scopes an app may ask for that this server recognises and grants nothing
/// for: no OpenID Connect id_token (`openid`, `fhirUser`, `profile`), no
/// refresh token (`offline_access`, `online_access`), no launch context
/// (`launch/patient`, `launch/encounter`). They are left out of the grant,
/// as SMART allows, and the token response's `scope` shows what was granted.
pub const IGNORED_SCOPES: &[&str] =
    &["openid", "fhirUser", "profile", "offline_access", "online_access", "launch/patient", "launch/encounter"];

/// Most scopes one request may name (a longer list is refused, not cut).
pub const MAX_SCOPES: usize = 64;

/// A SMART v2 permission string (`rs`, `cu`, `cruds`, ...) as (read, write):
/// `None` if it is not one (letters out of `c r u d s` order, repeated, or
/// others), an error if it is one this server cannot grant exactly. Here read
/// includes search and write is create and update together, so `r` without
/// `s` (or `c` without `u`) would grant more than asked; delete is not served.
pub fn v2_permissions(p: &str) -> Result<Option<(bool, bool)>, &'static str> {
    const ORDER: &[u8] = b"cruds";
    let mut last = None;
    let mut seen = [false; 5];
    for b in p.bytes() {
        let Some(i) = ORDER.iter().position(|&o| o == b) else { return Ok(None) };
        if last.is_some_and(|l| i <= l) {
            return Ok(None);
        }
        last = Some(i);
        seen[i] = true;
    }
    let [c, r, u, d, s] = seen;
    if last.is_none() {
        return Ok(None);
    }
    if d {
        return Err("delete (d) is not served here: leave it out, e.g. .rs or .cus");
    }
    if r != s {
        return Err("read and search are one permission here: ask for both (.rs) or neither");
    }
    if c != u {
        return Err("create and update are one permission here: ask for both (.cu) or neither");
    }
    Ok(Some((r && s, c && u)))
}

/// The scopes of an authorization request: the resource scopes, and those
/// recognised but granted nothing for ([`IGNORED_SCOPES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub resources: Scopes,
    pub ignored: Vec<String>,
}

/// Parse the `scope` of an authorization request by a user of `role`; an
/// error says what is wrong in words an app's developer can act on (the
/// `invalid_scope` text). `patient/` scopes are for a patient's own app: a
/// patient's role reaches only their own record, so for them `patient/X` is
/// `user/X`, and the token response names the patient (standalone launch
/// with the signed-in patient as its context). Staff have no patient picker
/// here: their apps ask for `user/` scopes.
pub fn parse_requested(scope: &str, role: Role) -> Result<Requested, String> {
    let words: Vec<&str> = scope.split_whitespace().collect();
    if words.len() > MAX_SCOPES {
        return Err(format!("ask for at most {MAX_SCOPES} scopes"));
    }
    let mut resources = Vec::new();
    let mut ignored = Vec::new();
    for w in words {
        if IGNORED_SCOPES.contains(&w) {
            ignored.push(w.to_owned());
        } else if let Some(rest) = w.strip_prefix("patient/") {
            if role != Role::Patient {
                return Err(
                    "patient/ scopes are for a patient's own app, with the signed-in patient as the context; staff have no patient picker here: ask for user/ scopes (your role and care team still decide which patients)"
                        .into(),
                );
            }
            let as_user = format!("user/{rest}");
            // Checked here so that an error names the scope as the app wrote it.
            Scopes::parse(&as_user).map_err(|e| e.replace(&as_user, w))?;
            resources.push(as_user);
        } else if w == "launch" {
            return Err("EHR launch is not offered: this server supports standalone launch".into());
        } else {
            resources.push(w.to_owned());
        }
    }
    if resources.is_empty() {
        return Err("ask for at least one resource scope, e.g. user/Patient.rs".into());
    }
    Ok(Requested { resources: Scopes::parse(&resources.join(" "))?, ignored })
}

/// The scopes a token for `role` gets when an app registered with `app` asks
/// for `asked`: only what all three allow, type by type. `None`: nothing.
/// A read of every type (`user/*.read`) stays whole where the role reads the
/// audit log through it (auditors; patients their access log).
pub fn granted(role: Role, asked: &Scopes, app: &Scopes) -> Option<Scopes> {
    let all = |rt: ResourceType, a: Action| asked.permits(rt, a) && app.permits(rt, a) && role_permits(role, rt, a);
    let whole_read =
        asked.permits_audit_read() && app.permits_audit_read() && matches!(role, Role::Auditor | Role::Patient);
    let mut out = Vec::new();
    if whole_read {
        out.push((None, true, false));
    }
    for rt in ResourceType::ALL {
        let (r, w) = (all(rt, Action::Read) && !whole_read, all(rt, Action::Write));
        if r || w {
            out.push((Some(rt), r, w));
        }
    }
    (!out.is_empty()).then_some(Scopes(out))
}

/// Who registers SMART apps: administrators, in their own session (an app
/// is a way into every account that says yes to it: never from a token).
pub fn may_register_apps(p: &Principal) -> Result<(), Denied> {
    match p.role {
        Role::Admin if p.scopes.is_none() => Ok(()),
        Role::Admin => Err(Denied::Scope { action: "register", resource: "SMART apps" }),
        role => Err(Denied::Role { role, action: "register", resource: "SMART apps" }),
    }
}

/// Who lets an app act for them: any account, in its own signed-in session
/// (a token cannot hand itself on). The grant never exceeds the role.
pub fn may_authorize_app(p: &Principal) -> Result<(), Denied> {
    match p.scopes {
        None => Ok(()),
        Some(_) => Err(Denied::Scope { action: "authorize", resource: "SMART apps" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, token: bool) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            practitioner_id: None,
            patient_id: None,
            scopes: token.then(|| Scopes::parse("user/*.*").unwrap()),
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    #[test]
    fn v2_syntax_maps_to_what_is_served_or_is_refused_clearly() {
        let s = |x: &str| Scopes::parse(x).map(|s| s.to_string());
        assert_eq!(s("user/Patient.rs").unwrap(), "user/Patient.read");
        assert_eq!(s("user/*.cu").unwrap(), "user/*.write");
        assert_eq!(s("user/Encounter.crus").unwrap(), "user/Encounter.*");
        for (bad, says) in [
            ("user/Patient.r", "read and search"),
            ("user/Patient.s", "read and search"),
            ("user/Patient.c", "create and update"),
            ("user/*.cruds", "delete"),
        ] {
            let e = s(bad).unwrap_err();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
        for bad in ["user/Patient.sr", "user/Patient.rrs", "user/Patient.x", "user/Patient.", "user/Patient.rs?x=1"] {
            assert!(s(bad).unwrap_err().contains("is not a scope"), "{bad}");
        }
    }

    #[test]
    fn requests_keep_resource_scopes_and_set_aside_the_recognised_rest() {
        let r =
            parse_requested("openid fhirUser launch/patient user/Patient.rs offline_access", Role::Clinician).unwrap();
        assert_eq!(r.resources.to_string(), "user/Patient.read");
        assert_eq!(r.ignored, ["openid", "fhirUser", "launch/patient", "offline_access"]);
        assert!(parse_requested("patient/*.read", Role::Clinician).unwrap_err().contains("patient/ scopes"));
        // A patient's own app: patient/ is user/ for them (their role reaches only their record).
        let own = parse_requested("launch/patient patient/*.rs patient/Appointment.read", Role::Patient).unwrap();
        assert_eq!(own.resources, Scopes::parse("user/*.read user/Appointment.read").unwrap());
        assert_eq!(own.ignored, ["launch/patient"]);
        assert!(parse_requested("patient/*.cruds", Role::Patient).unwrap_err().contains("delete"));
        assert!(parse_requested("launch user/Patient.rs", Role::Clinician).unwrap_err().contains("EHR launch"));
        assert!(parse_requested("openid", Role::Clinician).unwrap_err().contains("at least one resource scope"));
        assert!(parse_requested("user/Condition.rs", Role::Clinician).unwrap_err().contains("is not a scope"));
        assert!(parse_requested(&"user/Patient.rs ".repeat(65), Role::Clinician).unwrap_err().contains("at most 64"));
    }

    #[test]
    fn a_grant_is_what_the_request_the_app_and_the_role_all_allow() {
        let sc = |x: &str| Scopes::parse(x).unwrap();
        // Reception asking for notes gets none; what it may read, it gets.
        let asked = sc("user/Patient.read user/DocumentReference.read");
        let app = sc("user/*.*");
        assert_eq!(granted(Role::Reception, &asked, &app).unwrap().to_string(), "user/Patient.read");
        assert_eq!(granted(Role::Reception, &sc("user/DocumentReference.read"), &app), None);
        // The app's registration bounds it too.
        assert_eq!(
            granted(Role::Clinician, &sc("user/*.*"), &sc("user/Patient.read")).unwrap().to_string(),
            "user/Patient.read"
        );
        // A wildcard becomes the role's own types.
        let clin = granted(Role::Clinician, &sc("user/*.read"), &app).unwrap();
        assert!(clin.permits(ResourceType::DocumentReference, Action::Read));
        assert!(!clin.permits(ResourceType::DocumentReference, Action::Write));
        assert!(!clin.permits_audit_read());
        // Admins read no clinical content, so a grant never says they do.
        let admin = granted(Role::Admin, &sc("user/*.*"), &app).unwrap();
        assert!(!admin.permits(ResourceType::Patient, Action::Read));
        // An auditor's whole read stays whole (the audit log), and only with both sides.
        assert!(granted(Role::Auditor, &sc("user/*.read"), &app).unwrap().permits_audit_read());
        assert!(
            !granted(Role::Auditor, &sc("user/*.read"), &sc("user/Practitioner.read")).unwrap().permits_audit_read()
        );
    }

    #[test]
    fn admins_register_apps_and_anyone_authorizes_one_in_their_own_session() {
        assert!(may_register_apps(&p(Role::Admin, false)).is_ok());
        assert!(may_register_apps(&p(Role::Admin, true)).is_err());
        for role in Role::ALL {
            assert!(may_authorize_app(&p(role, false)).is_ok());
            assert!(may_authorize_app(&p(role, true)).is_err());
            if role != Role::Admin {
                assert!(may_register_apps(&p(role, false)).is_err());
            }
        }
    }
}
