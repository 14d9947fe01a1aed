//! Honey records (DESIGN.md §7): synthetic patients written through the same
//! paths as real ones — registered by a clinician of the clinic, in that
//! clinician's care, with appointments, sessions and notes — by the honey
//! keeper (`confidant_app::honey`), which acts only through a service from
//! [`Records::for_planting`]. Which patients they are is sealed (under the
//! organisation's key), so a copy of the database does not tell them from
//! real ones; the detector alerts on any touch.
//!
//! A honey record is in a real clinician's care, so that the dump shows a
//! care team like anyone's. That clinician never meets it: their searches
//! and lists leave it out, and nobody's calendar shows its appointments (nor
//! does it block a booking). Anyone else who finds it — reception searching
//! by name, a break-glass, a read by id — touches it, and the detector alerts.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use confidant_fhir::ResourceType;
use confidant_policy::records::Seen;
use confidant_policy::{Principal, Role};
use confidant_store::{Criterion, VersionRow};

use crate::{Records, RecordsError, Result};

const SETTING_HONEY: &str = "honey_records";
const SEALED_KIND: &str = "HoneyRecords";
const SEALED_OWNER: &str = "instance";

/// The honey records' patient ids as last read from the store.
pub(crate) type HoneyCache = Arc<RwLock<Arc<HashSet<String>>>>;

impl Records {
    /// The honey records' patient ids (empty if none were planted), read from the store.
    pub async fn honey_records(&self) -> Result<HashSet<String>> {
        let Some(sealed) = self.store.setting(SETTING_HONEY).await? else { return Ok(HashSet::new()) };
        let plain = self.open_secret(SEALED_KIND, SEALED_OWNER, &sealed).await?;
        let ids: Vec<String> = serde_json::from_slice(&plain).map_err(|_| RecordsError::Integrity)?;
        Ok(ids.into_iter().collect())
    }

    /// Read the honey records' list again (another node may have planted
    /// some) and return it; lists and calendars hide what it holds.
    pub async fn refresh_honey(&self) -> Result<Arc<HashSet<String>>> {
        let now = Arc::new(self.honey_records().await?);
        match self.honey.write() {
            Ok(mut h) => *h = now.clone(),
            Err(poisoned) => *poisoned.into_inner() = now.clone(),
        }
        Ok(now)
    }

    /// The honey records' patient ids as last read ([`Records::refresh_honey`]).
    pub fn honey_set(&self) -> Arc<HashSet<String>> {
        match self.honey.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Add patients to the honey records' sealed list.
    pub async fn add_honey_records(&self, ids: &[String]) -> Result<()> {
        let mut all: Vec<String> = self.honey_records().await?.into_iter().collect();
        all.extend(ids.iter().cloned());
        all.sort();
        all.dedup();
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&all).map_err(|_| RecordsError::Integrity)?);
        let sealed = self.seal_secret(SEALED_KIND, SEALED_OWNER, &plain).await?;
        match self.store.setting(SETTING_HONEY).await? {
            Some(old) => {
                if !self.store.replace_setting(SETTING_HONEY, &old, &sealed).await? {
                    return Err(RecordsError::Conflict);
                }
            }
            None => self.store.insert_setting(SETTING_HONEY, &sealed, self.clock.now_millis()).await?,
        }
        self.refresh_honey().await?;
        Ok(())
    }

    /// The records service the honey keeper plants and acts through: the same
    /// store, keys, clock and audit log, every access audited and authorised
    /// as usual, but watched by no detector (its own planted activity raises
    /// no alert) and with honey records in its lists.
    pub fn for_planting(&self) -> Records {
        Records {
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            clock: self.clock.clone(),
            auditor: self.auditor.clone(),
            subscriber: None,
            bookings: self.bookings.clone(),
            honey: self.honey.clone(),
            shows_honey: true,
        }
    }

    /// Does a search leave this row out for `p`? A honey record's own
    /// care-team clinician never meets it in their lists (it would be a false
    /// alert, and a stranger in their list); everyone else's search finds it
    /// as it finds anyone, and touches it.
    pub(crate) fn hides_from_search(&self, p: &Principal, row: &VersionRow, seen: Seen) -> bool {
        !self.shows_honey
            && seen == Seen::Yes
            && p.role == Role::Clinician
            && row.compartment != confidant_store::ORGANISATION
            && self.honey_set().contains(&row.compartment)
    }

    /// Does a calendar leave this appointment out? Honey records' appointments
    /// are in no one's calendar and block no booking.
    pub(crate) fn hides_from_calendar(&self, row: &VersionRow) -> bool {
        !self.shows_honey && self.honey_set().contains(&row.compartment)
    }

    /// The current rows (ids, sizes, access columns: nothing is decrypted or
    /// returned opened) of a honey record's resources of type `rt`, for the
    /// keeper to choose what to act on. Refused for any patient not on the
    /// honey list and for any service but the keeper's.
    pub async fn honey_resources(&self, patient: &str, rt: ResourceType) -> Result<Vec<VersionRow>> {
        if !self.shows_honey || !self.honey_set().contains(patient) {
            return Err(RecordsError::Forbidden("only the honey keeper lists a honey record's resources".into()));
        }
        let criteria = [Criterion::Compartment(patient.to_owned())];
        let (rows, _) = self.store.search(rt.as_str(), &criteria, None, 1000).await?;
        Ok(rows.into_iter().map(|(r, _)| r).collect())
    }

    /// A honey record's current resource, opened for the keeper to write its
    /// next version (synthetic, nobody's data: not an access to audit). Refused
    /// for any row outside the honey list and for any service but the keeper's.
    pub async fn honey_current(&self, row: VersionRow) -> Result<serde_json::Value> {
        if !self.shows_honey || !self.honey_set().contains(&row.compartment) {
            return Err(RecordsError::Forbidden("only the honey keeper opens a honey record unaudited".into()));
        }
        Ok(self.open_record(row).await?.resource)
    }
}
