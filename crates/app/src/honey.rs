//! Honey records: synthetic patients planted by `init` (and `honey plant`),
//! shaped like a clinic's real ones — demographics, a few sessions, notes —
//! and sealed like them. Which patients they are is sealed too; the detector
//! alerts on any touch (see confidant-detect). The patients come from
//! [`crate::synthetic`], which the demo uses too; nothing here knows the demo.

use anyhow::{Context, Result};
use confidant_records::Records;

use crate::console::Console;
use crate::synthetic::synthetic_patient;

/// Plant `count` honey records and add them to the sealed list.
pub async fn plant(records: &Records, count: u32) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in 0..count as usize {
        let (patient, related) = synthetic_patient(n)?;
        ids.push(records.plant(patient, related).await.context("cannot store a honey record")?);
    }
    if !ids.is_empty() {
        records.add_honey_records(&ids).await.context("cannot store the honey records' list")?;
    }
    Ok(ids)
}

/// `confidant honey plant`: returns how many honey records there are now in
/// all. The ids are not returned: a terminal's scrollback is no place for them.
pub async fn plant_more(console: &Console, dir: &std::path::Path, count: u32) -> Result<usize> {
    let crate::instance::Instance { records, .. } = crate::instance::Instance::open(console, dir).await?;
    let result = plant(&records, count).await;
    let total = records.honey_records().await.map(|h| h.len());
    records.store().close().await;
    result?;
    Ok(total?)
}
