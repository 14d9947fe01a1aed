//! Who may change what about a session note (DocumentReference): its content
//! is the care team's to correct, but who wrote it and how it is labelled
//! decide who may read it, so those are its author's alone. A signed note is
//! locked: nobody changes it, and corrections are addenda (new notes that
//! append to it, with a reason).

use std::collections::BTreeSet;

use crate::{Denied, Principal, Role};

/// What of a note decides who reads it: the `Practitioner/{id}` references
/// in `author`, the `meta.security` labels as `(system, code)`, and whether it
/// is a psychotherapy note.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoteFacts {
    pub authors: BTreeSet<String>,
    pub labels: BTreeSet<(String, String)>,
    pub psychotherapy: bool,
    /// The `Practitioner/{id}` in `authenticator`: who signed it (and so locked it).
    pub signed_by: Option<String>,
    /// The `Practitioner/{id}` who must co-sign it (a trainee's supervisor, set by the server at signing).
    pub cosigner: Option<String>,
    /// The `Practitioner/{id}` who co-signed it.
    pub cosigned_by: Option<String>,
}

/// `Practitioner/{id}` of a clinician linked to a practitioner.
fn own_reference(p: &Principal) -> Option<String> {
    match (&p.role, &p.practitioner_id) {
        (Role::Clinician, Some(id)) => Some(format!("Practitioner/{id}")),
        _ => None,
    }
}

impl NoteFacts {
    /// Is `p` an author of this note (a clinician named in `author`)?
    pub fn authored_by(&self, p: &Principal) -> bool {
        match (&p.role, &p.practitioner_id) {
            (Role::Clinician, Some(id)) => self.authors.contains(&format!("Practitioner/{id}")),
            _ => false,
        }
    }
}

/// The author a new note gets: the clinician writing it, whatever the client
/// sent. Refused if the client named anyone else.
pub fn author_of_new_note(p: &Principal, requested: &BTreeSet<String>) -> Result<String, Denied> {
    let own = match (&p.role, &p.practitioner_id) {
        (Role::Clinician, Some(id)) => format!("Practitioner/{id}"),
        (Role::Clinician, None) => return Err(Denied::Unlinked("Practitioner")),
        (role, _) => return Err(Denied::Role { role: *role, action: "write", resource: "DocumentReference" }),
    };
    if requested.iter().all(|a| *a == own) {
        Ok(own)
    } else {
        Err(Denied::NotAuthor("a new note's author is the clinician writing it: leave author out or name yourself"))
    }
}

/// May a new note be signed (`authenticator`) by `signer`? Only by the
/// clinician writing it: nobody signs in someone else's name.
pub fn signer_of_new_note(p: &Principal, signer: Option<&str>) -> Result<(), Denied> {
    match signer {
        None => Ok(()),
        Some(s) if own_reference(p).as_deref() == Some(s) => Ok(()),
        Some(_) => Err(Denied::Locked("a note is signed by the clinician signing it: name yourself as authenticator")),
    }
}

/// May `p` turn note `current` into `proposed`? A signed note is changed by
/// nobody. A psychotherapy note is changed by its author alone; any note's
/// authors and security labels too. A psychotherapy note has exactly one
/// author (the one it is restricted to). Signing is its author's, in their
/// own name.
pub fn may_change_note(p: &Principal, current: &NoteFacts, proposed: &NoteFacts) -> Result<(), Denied> {
    if current.signed_by.is_some() {
        return Err(Denied::Locked("this note is signed and locked: correct it with an addendum"));
    }
    let author = current.authored_by(p);
    if let Some(signer) = &proposed.signed_by {
        if !author {
            return Err(Denied::Locked("only its author may sign a note"));
        }
        if own_reference(p).as_ref() != Some(signer) {
            return Err(Denied::Locked("a note is signed by the clinician signing it: name yourself as authenticator"));
        }
    }
    if current.psychotherapy && !author {
        return Err(Denied::NotAuthor("only its author may change a psychotherapy note"));
    }
    if proposed.authors != current.authors && !author {
        return Err(Denied::NotAuthor("only its author may change who wrote a note"));
    }
    if proposed.labels != current.labels && !author {
        return Err(Denied::NotAuthor("only its author may change a note's security labels"));
    }
    if proposed.psychotherapy && proposed.authors.len() != 1 {
        return Err(Denied::NotAuthor("a psychotherapy note has exactly one author"));
    }
    Ok(())
}

/// May `p` co-sign the signed note `current`? Only the supervisor it names
/// (the trainee's supervisor when it was signed), once, and only a signed
/// note. The co-signature changes nothing else of the note.
pub fn may_cosign(p: &Principal, current: &NoteFacts) -> Result<(), Denied> {
    let Some(me) = own_reference(p) else {
        return Err(Denied::Role { role: p.role, action: "co-sign", resource: "DocumentReference" });
    };
    if current.signed_by.is_none() {
        return Err(Denied::Locked("only a signed note is co-signed: its author signs it first"));
    }
    if current.cosigned_by.is_some() {
        return Err(Denied::Locked("this note is co-signed already"));
    }
    match &current.cosigner {
        Some(c) if *c == me => Ok(()),
        Some(_) => Err(Denied::Locked("only the supervisor the note names may co-sign it")),
        None => Err(Denied::Locked("this note needs no co-signature")),
    }
}

/// May a new note by `p` append to (correct) `original`? Only a signed
/// note takes addenda (a draft or an unsigned note is edited instead), only
/// from the same patient's record, always with a reason; an addendum to a
/// psychotherapy note is itself one (or it would be read more widely than
/// the note it corrects).
pub fn may_append(
    p: &Principal,
    original: &NoteFacts,
    same_patient: bool,
    addendum: &NoteFacts,
    reason_given: bool,
) -> Result<(), Denied> {
    if own_reference(p).is_none() {
        return Err(Denied::Role { role: p.role, action: "write", resource: "DocumentReference" });
    }
    if !same_patient {
        return Err(Denied::Locked("relatesTo: an addendum appends to a note of the same patient"));
    }
    if original.signed_by.is_none() {
        return Err(Denied::Locked("relatesTo: only a signed note takes addenda; edit an unsigned note instead"));
    }
    if original.psychotherapy && !addendum.psychotherapy {
        return Err(Denied::Locked("an addendum to a psychotherapy note is a psychotherapy note (PSYTHPN) too"));
    }
    if !reason_given {
        return Err(Denied::Locked("an addendum needs its reason (description)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clinician(id: &str) -> Principal {
        Principal {
            user_id: format!("u-{id}"),
            role: Role::Clinician,
            practitioner_id: Some(id.into()),
            patient_id: None,
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    fn facts(authors: &[&str], labels: &[&str], psychotherapy: bool) -> NoteFacts {
        NoteFacts {
            authors: authors.iter().map(|a| format!("Practitioner/{a}")).collect(),
            labels: labels.iter().map(|l| ("s".to_owned(), (*l).to_owned())).collect(),
            psychotherapy,
            signed_by: None,
            cosigner: None,
            cosigned_by: None,
        }
    }

    fn signed(mut f: NoteFacts, by: &str) -> NoteFacts {
        f.signed_by = Some(format!("Practitioner/{by}"));
        f
    }

    /// Every cell: caller (author, colleague, other role) × signing in whose name,
    /// and every change to a signed note.
    #[test]
    fn signing_is_the_authors_and_a_signed_note_is_locked() {
        let author = clinician("a");
        let colleague = clinician("c");
        let admin = Principal { role: Role::Admin, ..clinician("a") };
        for psy in [false, true] {
            let draft = facts(&["a"], &["R"], psy);
            // Signing an unsigned note.
            assert!(may_change_note(&author, &draft, &signed(draft.clone(), "a")).is_ok(), "psy={psy}");
            assert!(may_change_note(&author, &draft, &signed(draft.clone(), "c")).is_err(), "in another's name");
            assert!(may_change_note(&colleague, &draft, &signed(draft.clone(), "c")).is_err(), "not the author");
            assert!(may_change_note(&colleague, &draft, &signed(draft.clone(), "a")).is_err(), "for the author");
            assert!(may_change_note(&admin, &draft, &signed(draft.clone(), "a")).is_err(), "admin");
            // A signed note: nothing changes, by anyone, not even re-signing or unsigning.
            let locked = signed(draft.clone(), "a");
            for who in [&author, &colleague, &admin] {
                for proposed in [locked.clone(), draft.clone(), signed(draft.clone(), "c"), facts(&["a"], &[], psy)] {
                    let e = may_change_note(who, &locked, &proposed).unwrap_err();
                    assert!(e.to_string().contains("addendum"), "{e}");
                }
            }
        }
        // A new note signed at once: in the writer's own name only.
        assert!(signer_of_new_note(&author, None).is_ok());
        assert!(signer_of_new_note(&author, Some("Practitioner/a")).is_ok());
        assert!(signer_of_new_note(&author, Some("Practitioner/c")).is_err());
        assert!(signer_of_new_note(&author, Some("Patient/a")).is_err());
        let mut unlinked = clinician("a");
        unlinked.practitioner_id = None;
        assert!(signer_of_new_note(&unlinked, Some("Practitioner/a")).is_err());
        assert!(signer_of_new_note(&admin, Some("Practitioner/a")).is_err());
    }

    /// Every cell: original signed or not × same patient or not × reason or not ×
    /// psychotherapy original/addendum × who appends.
    #[test]
    fn addenda_append_to_a_signed_note_of_the_same_patient_with_a_reason() {
        let colleague = clinician("c");
        for original_signed in [false, true] {
            for same_patient in [false, true] {
                for reason in [false, true] {
                    for (psy_original, psy_addendum) in [(false, false), (false, true), (true, false), (true, true)] {
                        let mut original = facts(&["a"], &["R"], psy_original);
                        if original_signed {
                            original = signed(original, "a");
                        }
                        let addendum = facts(&["c"], &["R"], psy_addendum);
                        let ok = original_signed && same_patient && reason && (!psy_original || psy_addendum);
                        assert_eq!(
                            may_append(&colleague, &original, same_patient, &addendum, reason).is_ok(),
                            ok,
                            "signed={original_signed} same={same_patient} reason={reason} psy={psy_original}/{psy_addendum}"
                        );
                    }
                }
            }
        }
        let original = signed(facts(&["a"], &["R"], false), "a");
        let addendum = facts(&["a"], &["R"], false);
        for role in [Role::Admin, Role::Reception, Role::Auditor, Role::Patient] {
            let p = Principal { role, ..clinician("a") };
            assert!(may_append(&p, &original, true, &addendum, true).is_err(), "{role}");
        }
    }

    /// Every cell: who co-signs × the note's state (unsigned, awaiting, co-signed, needing none).
    #[test]
    fn only_the_named_supervisor_cosigns_a_signed_note_once() {
        let supervisor = clinician("s");
        let other = clinician("o");
        let trainee = clinician("t");
        let admin = Principal { role: Role::Admin, ..clinician("s") };
        let awaiting = NoteFacts { cosigner: Some("Practitioner/s".into()), ..signed(facts(&["t"], &[], false), "t") };
        let unsigned = NoteFacts { cosigner: Some("Practitioner/s".into()), ..facts(&["t"], &[], false) };
        let done = NoteFacts { cosigned_by: Some("Practitioner/s".into()), ..awaiting.clone() };
        let needs_none = signed(facts(&["t"], &[], false), "t");
        assert!(may_cosign(&supervisor, &awaiting).is_ok());
        for who in [&other, &trainee, &admin] {
            assert!(may_cosign(who, &awaiting).is_err());
        }
        for note in [&unsigned, &done, &needs_none] {
            for who in [&supervisor, &other, &trainee, &admin] {
                assert!(may_cosign(who, note).is_err());
            }
        }
    }

    #[test]
    fn a_new_note_is_written_by_its_caller() {
        let me = clinician("me");
        assert_eq!(author_of_new_note(&me, &BTreeSet::new()).unwrap(), "Practitioner/me");
        assert_eq!(author_of_new_note(&me, &facts(&["me"], &[], false).authors).unwrap(), "Practitioner/me");
        assert!(author_of_new_note(&me, &facts(&["colleague"], &[], false).authors).is_err());
        assert!(author_of_new_note(&me, &facts(&["me", "colleague"], &[], false).authors).is_err());
        let mut unlinked = clinician("me");
        unlinked.practitioner_id = None;
        assert!(author_of_new_note(&unlinked, &BTreeSet::new()).is_err());
        for role in [Role::Admin, Role::Reception, Role::Auditor, Role::Patient] {
            let p = Principal { role, ..clinician("me") };
            assert!(author_of_new_note(&p, &BTreeSet::new()).is_err(), "{role}");
        }
    }

    /// Every cell: caller (author or colleague) × what changes × ordinary or psychotherapy note.
    #[test]
    fn authorship_and_labels_are_the_authors() {
        let author = clinician("a");
        let colleague = clinician("c");
        for psy in [false, true] {
            let current = facts(&["a"], &["R"], psy);
            let changes = [
                ("content only", current.clone(), !psy),
                ("author to the colleague", facts(&["c"], &["R"], psy), false),
                ("author added", facts(&["a", "c"], &["R"], psy), false),
                ("author removed", facts(&[], &["R"], psy), false),
                ("label added", facts(&["a"], &["R", "X"], psy), false),
                ("label removed", facts(&["a"], &[], psy), false),
                ("made a psychotherapy note", facts(&["a"], &["R", "PSYTHPN"], true), false),
            ];
            for (what, proposed, colleague_may) in changes {
                let author_may = !(proposed.psychotherapy && proposed.authors.len() != 1);
                assert_eq!(
                    may_change_note(&author, &current, &proposed).is_ok(),
                    author_may,
                    "author, {what}, psy={psy}"
                );
                assert_eq!(
                    may_change_note(&colleague, &current, &proposed).is_ok(),
                    colleague_may,
                    "colleague, {what}, psy={psy}"
                );
            }
        }
        // A note that names no author: its authors and labels are nobody's to change.
        let orphan = facts(&[], &["R"], false);
        assert!(may_change_note(&author, &orphan, &orphan).is_ok());
        assert!(may_change_note(&author, &orphan, &facts(&["a"], &["R"], false)).is_err());
        // Only a clinician is ever an author.
        let admin = Principal { role: Role::Admin, ..clinician("a") };
        assert!(!facts(&["a"], &[], false).authored_by(&admin));
    }
}
