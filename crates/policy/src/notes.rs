//! Who may change what about a session note (DocumentReference): its content
//! is the care team's to correct, but who wrote it and how it is labelled
//! decide who may read it, so those are its author's alone.

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

/// May `p` turn note `current` into `proposed`? A psychotherapy note is
/// changed by its author alone; any note's authors and security labels too.
/// A psychotherapy note has exactly one author (the one it is restricted to).
pub fn may_change_note(p: &Principal, current: &NoteFacts, proposed: &NoteFacts) -> Result<(), Denied> {
    let author = current.authored_by(p);
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
        }
    }

    fn facts(authors: &[&str], labels: &[&str], psychotherapy: bool) -> NoteFacts {
        NoteFacts {
            authors: authors.iter().map(|a| format!("Practitioner/{a}")).collect(),
            labels: labels.iter().map(|l| ("s".to_owned(), (*l).to_owned())).collect(),
            psychotherapy,
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
