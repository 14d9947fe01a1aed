//! The one audit path for what an administrator does at the server's console
//! (the command line): every such entry is built here, as the console
//! principal, with the console's clock. Where the store writes the change and
//! its entry in one transaction (legal hold, erasure, a patient's key
//! rotation) the caller hands it [`Console::entry`]'s row; otherwise
//! [`Console::record`] appends it.

use std::sync::Arc;

use anyhow::Result;
use confidant_audit::{Action, Auditor, Entry};
use confidant_policy::{Principal, Role};
use confidant_records::{Clock, SystemClock};
use confidant_store::Store;

/// The operator at the server's console, and the clock their actions are stamped with.
#[derive(Clone)]
pub struct Console {
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new(Arc::new(SystemClock))
    }
}

impl Console {
    pub fn new(clock: Arc<dyn Clock>) -> Console {
        Console { clock }
    }

    /// The clock (records opened from the console share it).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Now, in Unix milliseconds.
    pub fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The principal the console acts as: the admin role's rights (staff
    /// directory, care teams), never more.
    pub fn principal() -> Principal {
        Principal {
            user_id: confidant_identity::CONSOLE.into(),
            role: Role::Admin,
            practitioner_id: None,
            patient_id: None,
            scopes: None,
            source: None,
            credential: None,
            training: Default::default(),
        }
    }

    /// The audit entry of `action` on `target`, done at the console.
    pub fn entry(&self, action: Action, target: &str) -> Entry {
        let mut e = Entry::by_console(self.now(), action);
        e.target = Some(target.to_owned());
        e
    }

    /// [`Console::entry`] about one patient.
    pub fn patient_entry(&self, action: Action, patient: &str, target: &str) -> Entry {
        let mut e = self.entry(action, target);
        e.patient = Some(patient.to_owned());
        e.resource = Some(format!("Patient/{patient}"));
        e
    }

    /// Append `entry` to the audit log of `store`.
    pub async fn record(&self, store: &Store, entry: Entry) -> Result<()> {
        Auditor::start(store.clone()).append(&[entry]).await?;
        Ok(())
    }

    /// Append `entry` through an instance's own auditor (it feeds the detector).
    pub async fn record_with(&self, auditor: &Auditor, entry: Entry) -> Result<()> {
        auditor.append(&[entry]).await?;
        Ok(())
    }
}
