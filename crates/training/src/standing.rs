//! Where a staff member stands with each module, at a given time: done (and
//! until when), due (missing, changed, expired or assigned) and since when,
//! and overdue (past the grace period). Pure: the facts and `now` come in.

use serde::Serialize;

/// An average Gregorian month (365.2425 days / 12), in milliseconds.
const MONTH_MS: i64 = 2_629_746_000;
const DAY_MS: i64 = 86_400_000;

/// The clinic's training rules (`[training]` in confidant.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// A pass counts for this many months.
    pub valid_months: u32,
    /// New accounts, new or changed modules and assignments give this many days
    /// before a due module is overdue; a completion shows as due this long
    /// before it expires.
    pub grace_days: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { valid_months: 12, grace_days: 14 }
    }
}

impl Rules {
    fn validity_ms(self) -> i64 {
        i64::from(self.valid_months) * MONTH_MS
    }

    fn grace_ms(self) -> i64 {
        i64::from(self.grace_days) * DAY_MS
    }
}

/// A pass of one version of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Completion {
    pub module_key: String,
    pub version: i64,
    pub score: i64,
    pub passed_at: i64,
}

/// A module assigned to someone (after a phishing drill's click, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub module_key: String,
    pub reason: String,
    pub assigned_at: i64,
}

/// What a module asks of someone now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ModuleState {
    /// Passed in its current version, valid until `expires_at`.
    Done { passed_at: i64, expires_at: i64 },
    /// Never passed.
    Missing,
    /// Passed in an older version only.
    Changed,
    /// The pass of the current version has expired.
    Expired,
    /// Assigned after the last pass (or without one).
    Assigned { reason: String },
}

/// One module's standing for one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleStatus {
    pub key: String,
    pub version: i64,
    pub state: ModuleState,
    /// When it became due (for `Done`: when it will expire).
    pub due_since: i64,
    /// Must it be done now (due and past the grace period)?
    pub overdue: bool,
    /// Done, but expiring within the grace period: shown as due soon.
    pub due_soon: bool,
}

impl ModuleStatus {
    pub fn is_done(&self) -> bool {
        matches!(self.state, ModuleState::Done { .. })
    }

    /// The short code of the state (`done`, `due`, `overdue`, `assigned`), for the coverage view and CSV.
    pub fn code(&self) -> &'static str {
        match (&self.state, self.overdue) {
            (ModuleState::Done { .. }, _) => "done",
            (ModuleState::Assigned { .. }, false) => "assigned",
            (_, true) => "overdue",
            _ => "due",
        }
    }
}

/// A module's current version and since when it is current (imported or shipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleVersion<'a> {
    pub key: &'a str,
    pub version: i64,
    pub active_since: i64,
}

/// Where `module` stands for an account created at `account_created_at`,
/// from that account's `completions` and `assignments`, at `now`.
pub fn module_status(
    module: ModuleVersion<'_>,
    account_created_at: i64,
    completions: &[Completion],
    assignments: &[Assignment],
    rules: Rules,
    now: i64,
) -> ModuleStatus {
    let ModuleVersion { key: module_key, version, active_since } = module;
    let grace = rules.grace_ms();
    let ours = completions.iter().filter(|c| c.module_key == module_key);
    let last_pass_any = ours.clone().map(|c| c.passed_at).max();
    let last_pass_current = ours.filter(|c| c.version == version).map(|c| c.passed_at).max();
    let open_assignment = assignments
        .iter()
        .filter(|a| a.module_key == module_key && last_pass_any.is_none_or(|p| a.assigned_at > p))
        .max_by_key(|a| a.assigned_at);
    let status = |state: ModuleState, due_since: i64, overdue: bool| ModuleStatus {
        key: module_key.to_owned(),
        version,
        state,
        due_since,
        overdue,
        due_soon: false,
    };
    if let Some(a) = open_assignment {
        return status(ModuleState::Assigned { reason: a.reason.clone() }, a.assigned_at, now > a.assigned_at + grace);
    }
    match last_pass_current {
        Some(passed_at) => {
            let expires_at = passed_at.saturating_add(rules.validity_ms());
            if now < expires_at {
                ModuleStatus {
                    due_soon: now >= expires_at - grace,
                    ..status(ModuleState::Done { passed_at, expires_at }, expires_at, false)
                }
            } else {
                // Its end was shown as due for the grace period before: overdue at once.
                status(ModuleState::Expired, expires_at, true)
            }
        }
        None => {
            let since = active_since.max(account_created_at);
            let state = if last_pass_any.is_some() { ModuleState::Changed } else { ModuleState::Missing };
            status(state, since, now > since + grace)
        }
    }
}

/// A person's standing over all the modules required of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Something is due (or due soon): the banner.
    pub due: bool,
    /// Something is past its grace period.
    pub overdue: bool,
}

pub fn summary(statuses: &[ModuleStatus]) -> Summary {
    Summary { due: statuses.iter().any(|s| !s.is_done() || s.due_soon), overdue: statuses.iter().any(|s| s.overdue) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn pass(version: i64, at: i64) -> Completion {
        Completion { module_key: "m".into(), version, score: 3, passed_at: at }
    }

    fn status(c: &[Completion], a: &[Assignment], created: i64, active: i64, now: i64) -> ModuleStatus {
        module_status(
            ModuleVersion { key: "m", version: 2, active_since: active },
            created,
            c,
            a,
            Rules::default(),
            now,
        )
    }

    #[test]
    fn new_accounts_and_changed_modules_get_the_grace_period() {
        let created = NOW - 13 * DAY_MS;
        let s = status(&[], &[], created, 0, NOW);
        assert_eq!((s.state.clone(), s.overdue, s.code()), (ModuleState::Missing, false, "due"));
        let s = status(&[], &[], created, 0, NOW + 2 * DAY_MS);
        assert!(s.overdue && s.code() == "overdue");
        // Version 2 came out 3 days ago; the old pass does not count, but the grace period runs.
        let s = status(&[pass(1, NOW - 100 * DAY_MS)], &[], 0, NOW - 3 * DAY_MS, NOW);
        assert_eq!((s.state.clone(), s.overdue), (ModuleState::Changed, false));
        assert!(status(&[pass(1, NOW - 100 * DAY_MS)], &[], 0, NOW - 15 * DAY_MS, NOW).overdue);
    }

    #[test]
    fn a_pass_lasts_its_months_and_warns_before_it_ends() {
        let s = status(&[pass(2, NOW - 30 * DAY_MS)], &[], 0, 0, NOW);
        assert!(s.is_done() && !s.due_soon && !s.overdue);
        assert!(!summary(&[s]).due);
        let year = 12 * MONTH_MS;
        let s = status(&[pass(2, NOW - year + 5 * DAY_MS)], &[], 0, 0, NOW);
        assert!(s.is_done() && s.due_soon);
        assert_eq!(summary(&[s]), Summary { due: true, overdue: false });
        let s = status(&[pass(2, NOW - year - 1)], &[], 0, 0, NOW);
        assert_eq!((s.state.clone(), s.overdue), (ModuleState::Expired, true));
    }

    #[test]
    fn an_assignment_makes_a_done_module_due_until_passed_again() {
        let a = [Assignment { module_key: "m".into(), reason: "drill".into(), assigned_at: NOW - DAY_MS }];
        let s = status(&[pass(2, NOW - 30 * DAY_MS)], &a, 0, 0, NOW);
        assert_eq!((s.code(), s.overdue), ("assigned", false));
        assert!(status(&[pass(2, NOW - 30 * DAY_MS)], &a, 0, 0, NOW + 14 * DAY_MS).overdue);
        // A pass after the assignment clears it.
        assert!(status(&[pass(2, NOW - 30 * DAY_MS), pass(2, NOW)], &a, 0, 0, NOW).is_done());
        // Another module's assignment is not this one's.
        let other = [Assignment { module_key: "x".into(), ..a[0].clone() }];
        assert!(status(&[pass(2, NOW)], &other, 0, 0, NOW).is_done());
    }
}
