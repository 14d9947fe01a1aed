//! Staff security training (issue 16) as a use case of identity: a staff
//! member's modules and their standing (which the principal carries, so that
//! policy can refuse patient data to overdue training), taking a module
//! (graded, a pass recorded with its audit entry, a failure audited),
//! assigning a module to someone, importing a pack, and the clinic's coverage.
//!
//! The pack format, grading and the standing rules are `confidant-training`'s;
//! what the standing means for access is `confidant-policy`'s.

use std::collections::BTreeMap;

use confidant_audit::{Action as AuditAction, CONSOLE, Entry, Outcome};
use confidant_policy::{self as policy, Enforcement, Principal, Role, TrainingStanding};
use confidant_store::{StoreError, TrainingAssignmentRow, TrainingCompletionRow, TrainingModuleRow, UserRow};
use confidant_training::{
    Answers, Assignment, Completion, Graded, Module, ModuleRole, ModuleStatus, ModuleVersion, Pack, Rules,
};

use crate::{Identity, IdentityError, Result};

/// `[training]`: what missing training does, and its rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrainingSettings {
    pub enforce: Enforcement,
    pub rules: Rules,
}

/// A module with where the asking staff member stands with it.
#[derive(Debug, Clone)]
pub struct MyModule {
    pub module: Module,
    pub status: ModuleStatus,
}

/// What an import changed (module keys), or would have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: Vec<String>,
    /// New versions: everyone who passed the old one is asked again.
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// One staff member's row of the coverage view.
#[derive(Debug, Clone)]
pub struct PersonCoverage {
    pub user_id: String,
    pub username: String,
    pub role: Role,
    /// Per module of [`Coverage::modules`]: the status, or `None` where the module is not for their role.
    pub statuses: Vec<Option<ModuleStatus>>,
    /// Each of their passes (module key, version, score, out of, time): the evidence.
    pub passes: Vec<TrainingCompletionRow>,
}

/// The clinic's training coverage: who is done, due, overdue, assigned.
#[derive(Debug, Clone)]
pub struct Coverage {
    pub modules: Vec<Module>,
    pub people: Vec<PersonCoverage>,
    pub enforce: Enforcement,
    pub rules: Rules,
    pub at: i64,
}

impl Coverage {
    /// (done, due, overdue, assigned) over every required cell.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for s in self.people.iter().flat_map(|p| p.statuses.iter().flatten()) {
            match s.code() {
                "done" => c.0 += 1,
                "overdue" => c.2 += 1,
                "assigned" => c.3 += 1,
                _ => c.1 += 1,
            }
        }
        c
    }

    /// How many staff are current on everything required of them, of how many.
    pub fn current(&self) -> (usize, usize) {
        let current = self.people.iter().filter(|p| p.statuses.iter().flatten().all(|s| s.is_done())).count();
        (current, self.people.len())
    }
}

/// Where `module` is for `role` (the stored roles text, `all,clinician`).
fn roles_cover(roles: &str, role: Role) -> bool {
    roles.split(',').filter_map(ModuleRole::parse).any(|r| r.covers(role))
}

fn completions(rows: &[TrainingCompletionRow]) -> Vec<Completion> {
    rows.iter()
        .map(|r| Completion {
            module_key: r.module_key.clone(),
            version: r.version,
            score: r.score,
            passed_at: r.passed_at,
        })
        .collect()
}

fn assignments(rows: &[TrainingAssignmentRow]) -> Vec<Assignment> {
    rows.iter()
        .map(|r| Assignment { module_key: r.module_key.clone(), reason: r.reason.clone(), assigned_at: r.assigned_at })
        .collect()
}

/// An assignment's reason: a short code (`phishing-drill/3f2a…`, `admin`), never free text.
fn valid_reason(reason: &str) -> bool {
    (1..=100).contains(&reason.len())
        && reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./:".contains(&b))
}

impl Identity {
    pub fn training_settings(&self) -> TrainingSettings {
        self.settings.training
    }

    /// The standing `user` (of `role`) has now: what the principal carries.
    pub(crate) async fn training_standing(&self, user: &UserRow, role: Role) -> Result<TrainingStanding> {
        let s = self.settings.training;
        if !role.is_staff() || s.enforce == Enforcement::Off {
            return Ok(TrainingStanding::NotRequired);
        }
        // One statement: this runs on every request of a staff member.
        let (versions, c, a) = self.store().training_standing_facts(&user.id).await?;
        let required: Vec<_> = versions.iter().filter(|(_, _, roles, _)| roles_cover(roles, role)).collect();
        if required.is_empty() {
            return Ok(TrainingStanding::Current);
        }
        let (c, a) = (completions(&c), assignments(&a));
        let now = self.now();
        let statuses: Vec<ModuleStatus> = required
            .iter()
            .map(|(key, version, _, since)| {
                let m = ModuleVersion { key, version: *version, active_since: *since };
                confidant_training::module_status(m, user.created_at, &c, &a, s.rules, now)
            })
            .collect();
        let sum = confidant_training::summary(&statuses);
        Ok(policy::training_standing(role, s.enforce, sum.due, sum.overdue))
    }

    /// Every module in force, as stored.
    async fn modules_in_force(&self) -> Result<Vec<(Module, i64)>> {
        let mut out = Vec::new();
        for row in self.store().training_modules().await? {
            let m: Module = serde_json::from_str(&row.definition).map_err(|_| {
                tracing::error!(module = %row.module_key, "a stored training module does not parse");
                IdentityError::Store(StoreError::Database("a stored training module does not parse".into()))
            })?;
            out.push((m, row.active_since));
        }
        Ok(out)
    }

    fn statuses(
        modules: &[(Module, i64)],
        role: Role,
        created_at: i64,
        c: &[Completion],
        a: &[Assignment],
        rules: Rules,
        now: i64,
    ) -> Vec<Option<ModuleStatus>> {
        modules
            .iter()
            .map(|(m, since)| {
                m.is_for(role).then(|| {
                    let v = ModuleVersion { key: &m.key, version: m.version, active_since: *since };
                    confidant_training::module_status(v, created_at, c, a, rules, now)
                })
            })
            .collect()
    }

    /// The modules required of `p`, with where they stand: overdue first, then due, then done.
    pub async fn my_training(&self, p: &Principal) -> Result<Vec<MyModule>> {
        policy::may_take_training(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let user = self.store().user_by_id(&p.user_id).await?.ok_or(IdentityError::Unauthenticated)?;
        let modules = self.modules_in_force().await?;
        let (c, a) = self.store().training_records(Some(&p.user_id)).await?;
        let statuses = Self::statuses(
            &modules,
            p.role,
            user.created_at,
            &completions(&c),
            &assignments(&a),
            self.settings.training.rules,
            self.now(),
        );
        let mut out: Vec<MyModule> = modules
            .into_iter()
            .zip(statuses)
            .filter_map(|((module, _), status)| status.map(|status| MyModule { module, status }))
            .collect();
        out.sort_by_key(|m| (!m.status.overdue, m.status.is_done(), m.status.due_since));
        Ok(out)
    }

    /// One module in force, for a staff member to take.
    pub async fn training_module(&self, p: &Principal, key: &str) -> Result<Module> {
        policy::may_take_training(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        self.modules_in_force()
            .await?
            .into_iter()
            .map(|(m, _)| m)
            .find(|m| m.key == key)
            .ok_or_else(|| IdentityError::NotFound("training module".into()))
    }

    /// A security event about training, as an audit row (with the actor's role).
    fn training_entry(
        &self,
        action: AuditAction,
        outcome: Outcome,
        actor: Option<&Principal>,
        module: &str,
        version: i64,
        target: Option<&str>,
    ) -> Entry {
        let mut e = Entry::new(self.now(), action, outcome);
        match actor {
            Some(p) => {
                e.actor = Some(p.user_id.clone());
                e.role = Some(p.role.as_str().to_owned());
                e.source = p.source.clone();
            }
            None => {
                e.actor = Some(CONSOLE.to_owned());
                e.role = Some(Role::Admin.as_str().to_owned());
            }
        }
        e.resource = Some(format!("TrainingModule/{module}"));
        e.version = Some(version);
        e.target = target.map(str::to_owned);
        e
    }

    /// Grade `p`'s answers to version `version` of module `key`. A pass is
    /// recorded (key, version, time, score) with its audit entry; a failure
    /// is audited. Answers that do not fit the module change nothing; a
    /// module changed since the page was shown is a conflict.
    pub async fn submit_training(&self, p: &Principal, key: &str, version: i64, answers: &Answers) -> Result<Graded> {
        let module = self.training_module(p, key).await?;
        if module.version != version {
            return Err(IdentityError::Conflict(
                "this module has a new version since the page was opened; open it again".into(),
            ));
        }
        let graded = module.grade(answers).map_err(|e| IdentityError::Invalid(e.0))?;
        let now = self.now();
        if graded.passed {
            let e = self.training_entry(AuditAction::TrainingPassed, Outcome::Success, Some(p), key, version, None);
            let pass = TrainingCompletionRow {
                user_id: p.user_id.clone(),
                module_key: key.to_owned(),
                version,
                score: graded.score as i64,
                out_of: graded.out_of as i64,
                passed_at: now,
            };
            self.store().record_training_pass(&pass, &[e.to_row()]).await?;
            self.services.auditor.appended(1);
        } else {
            let e = self.training_entry(AuditAction::TrainingFailed, Outcome::Denied, Some(p), key, version, None);
            self.append_audit(e).await?;
        }
        tracing::info!(user = %p.user_id, module = %key, version, passed = graded.passed, "training answered");
        Ok(graded)
    }

    /// Assign module `key` to staff member `user_id` now, for `reason` (a short
    /// code such as `phishing-drill/<campaign id>`): due from now whatever
    /// they passed before, with the grace period. `by`: the administrator
    /// (`None`: the console or the server itself, e.g. a phishing drill).
    pub async fn assign_training(&self, by: Option<&Principal>, user_id: &str, key: &str, reason: &str) -> Result<()> {
        if let Some(p) = by {
            policy::may_manage_training(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        }
        if !valid_reason(reason) {
            return Err(IdentityError::Invalid(
                "a reason is 1–100 characters of a–z, 0–9 and - _ . / : (a code, not free text)".into(),
            ));
        }
        let user = self.store().user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("account".into()))?;
        if !Role::parse(&user.role).is_some_and(Role::is_staff) {
            return Err(IdentityError::Invalid("training is assigned to staff accounts only".into()));
        }
        let modules = self.store().training_module_versions().await?;
        let Some((_, version, _, _)) = modules.iter().find(|(k, ..)| k == key) else {
            return Err(IdentityError::NotFound("training module".into()));
        };
        let e = self.training_entry(AuditAction::TrainingAssigned, Outcome::Success, by, key, *version, Some(user_id));
        let row = TrainingAssignmentRow {
            user_id: user_id.to_owned(),
            module_key: key.to_owned(),
            reason: reason.to_owned(),
            assigned_at: self.now(),
        };
        self.store().assign_training(&row, &[e.to_row()]).await?;
        self.services.auditor.appended(1);
        tracing::info!(user = %user_id, module = %key, reason, "training assigned");
        Ok(())
    }

    /// Bring `pack` into force: modules new to the clinic are added, newer
    /// versions replace older ones (everyone who passed the old version is
    /// asked again). Everything is checked first: a module whose content
    /// changed without a new version, or an older version than the clinic's,
    /// refuses the whole pack and nothing changes. `by`: an administrator, or
    /// `None` for the console. `built_in`: the pack compiled in (then a module
    /// the clinic holds in another form is left as it is, not refused).
    pub async fn import_training_pack(
        &self,
        by: Option<&Principal>,
        pack: &Pack,
        built_in: bool,
    ) -> Result<ImportReport> {
        if let Some(p) = by {
            policy::may_manage_training(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        }
        let stored: BTreeMap<String, TrainingModuleRow> =
            self.store().training_modules().await?.into_iter().map(|m| (m.module_key.clone(), m)).collect();
        let now = self.now();
        let mut report = ImportReport::default();
        let mut rows = Vec::new();
        let mut audit = Vec::new();
        for m in &pack.modules {
            let definition =
                serde_json::to_string(m).map_err(|_| IdentityError::Invalid("unreadable module".into()))?;
            match stored.get(&m.key) {
                Some(s) if s.version == m.version && s.definition == definition => {
                    report.unchanged.push(m.key.clone());
                    continue;
                }
                Some(s) if built_in && s.version >= m.version => {
                    report.unchanged.push(m.key.clone());
                    continue;
                }
                Some(s) if s.version == m.version => {
                    return Err(IdentityError::Invalid(format!(
                        "module {}: its content differs from the clinic's version {} but its version did not change; raise version to {} so that everyone is asked to complete it again",
                        m.key,
                        s.version,
                        s.version + 1
                    )));
                }
                Some(s) if s.version > m.version => {
                    return Err(IdentityError::Invalid(format!(
                        "module {}: version {} is older than the clinic's version {}",
                        m.key, m.version, s.version
                    )));
                }
                Some(_) => report.changed.push(m.key.clone()),
                None => report.added.push(m.key.clone()),
            }
            rows.push(TrainingModuleRow {
                module_key: m.key.clone(),
                version: m.version,
                roles: m.roles_text(),
                definition,
                active_since: now,
                source: if built_in { "built-in".into() } else { "import".into() },
            });
            // The built-in pack comes with the release (its upgrade is the event); an import is an administrator's.
            if !built_in {
                let e = self.training_entry(AuditAction::TrainingImport, Outcome::Success, by, &m.key, m.version, None);
                audit.push(e.to_row());
            }
        }
        if rows.is_empty() {
            return Ok(report);
        }
        match self.store().put_training_modules(&rows, &audit).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(IdentityError::Conflict(
                    "another import changed the modules meanwhile; nothing was changed, run it again".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.services.auditor.appended(audit.len() as u64);
        tracing::info!(added = report.added.len(), changed = report.changed.len(), "training modules imported");
        Ok(report)
    }

    /// The clinic's coverage: every active staff account × every module in force.
    pub async fn training_coverage(&self, p: &Principal) -> Result<Coverage> {
        policy::may_see_training_coverage(p).map_err(|d| IdentityError::Forbidden(d.to_string()))?;
        let modules = self.modules_in_force().await?;
        let (c, a) = self.store().training_records(None).await?;
        let rules = self.settings.training.rules;
        let now = self.now();
        let mut people = Vec::new();
        for u in self.store().users().await? {
            let Some(role) = Role::parse(&u.role).filter(|r| r.is_staff()) else { continue };
            if u.disabled_at.is_some() {
                continue;
            }
            let mine: Vec<TrainingCompletionRow> = c.iter().filter(|r| r.user_id == u.id).cloned().collect();
            let my_assignments: Vec<TrainingAssignmentRow> = a.iter().filter(|r| r.user_id == u.id).cloned().collect();
            let statuses = Self::statuses(
                &modules,
                role,
                u.created_at,
                &completions(&mine),
                &assignments(&my_assignments),
                rules,
                now,
            );
            people.push(PersonCoverage {
                username: self.username_of(&u).await?,
                user_id: u.id,
                role,
                statuses,
                passes: mine,
            });
        }
        people.sort_by(|x, y| x.username.cmp(&y.username));
        Ok(Coverage {
            modules: modules.into_iter().map(|(m, _)| m).collect(),
            people,
            enforce: self.settings.training.enforce,
            rules,
            at: now,
        })
    }
}
