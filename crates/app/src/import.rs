//! `confidant import`: bring a clinic's records in — FHIR Bundles (transaction,
//! collection, searchset, as exported by search or `$everything`), NDJSON of
//! resources, and CSV of patients or appointments — through the same path as a
//! FHIR transaction ([`Records::transaction`]): the same validation, policy,
//! sealing and audit entries, every file of one import in ONE store
//! transaction. Nothing is written unless everything is accepted.
//!
//! The import acts as a named staff account (`--as`: a clinician registers
//! patients into their own care, as in the web UI), with the source `console`
//! in every entry; the import itself is recorded as a console action.
//! Exported records' ids and references (`Patient/{old id}`, fullUrls) are
//! mapped to the new records' ids.
//!
//! Before anything is looked up, every resource is checked on its own
//! ([`confidant_fhir::validate`]), so that the report lists every line or
//! entry refused, not just the first; then the transaction (or, `--dry-run`,
//! its plan) runs and stops at the first refusal of the policy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use confidant_fhir::{BundleKind, EntryMethod, ResourceType};
use confidant_records::{TxDone, TxEntry, TxOp, TxPlan};
use serde_json::{Value, json};

use crate::console::Console;
use crate::progress::{Progress, Unit};

/// A line or entry of an input file that was refused, and why (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub file: String,
    /// `line 3` (NDJSON, CSV: the line in the file) or `entry 2` (a Bundle).
    pub place: String,
    pub reason: String,
}

/// What an import did (or, dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Records created (or to be created), by type, in the order first met.
    pub created: Vec<(String, usize)>,
    /// Conditional creates that found an existing record (nothing created for them).
    pub existing: usize,
    pub updated: usize,
    /// Everything refused; if any, nothing was written.
    pub refused: Vec<Refusal>,
}

impl ImportReport {
    fn count(&mut self, rt: ResourceType) {
        match self.created.iter_mut().find(|(t, _)| t == rt.as_str()) {
            Some((_, n)) => *n += 1,
            None => self.created.push((rt.as_str().to_owned(), 1)),
        }
    }
}

/// One resource to import, with where it came from.
struct Item {
    file: String,
    place: String,
    entry: TxEntry,
}

/// Import `files` into the instance in `dir`, acting as `as_user` (see the module).
pub async fn import(
    console: &Console,
    dir: &Path,
    files: &[PathBuf],
    as_user: &str,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let mut report = ImportReport { dry_run, ..ImportReport::default() };
    let mut items = Vec::new();
    progress.note(&format!("[1/3] reading {} file(s)", files.len()));
    for path in files {
        let bytes = crate::progress::read_file(path, "reading", progress)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("{name}: not UTF-8 text"))?;
        parse_file(&name, text, &mut items, &mut report.refused);
    }
    resolve_exported_ids(&mut items)?;
    refer_to_imported_patients(&mut items);
    // Patients first: the records that refer to them find them in the same transaction.
    items.sort_by_key(|i| !matches!(&i.entry.op, TxOp::Create { rt: ResourceType::Patient, .. }));
    progress.note(&format!("[2/3] checking {} record(s)", items.len()));
    // References to other records of the import are resolved in the transaction; here they
    // stand for a record of the type they name.
    let mut placeholders: HashMap<String, String> = items
        .iter()
        .filter_map(|i| {
            Some((i.entry.full_url.clone()?, format!("{}/placeholder", i.entry.op.resource_type().as_str())))
        })
        .collect();
    for item in &items {
        if let TxOp::Create { resource, .. } | TxOp::Update { resource, .. } = &item.entry.op {
            for r in confidant_fhir::conditional_references(resource) {
                let ty = r.split_once('?').map(|(t, _)| t.to_owned()).unwrap_or_default();
                placeholders.insert(r, format!("{ty}/placeholder"));
            }
        }
    }
    let mut counter = progress.start("checking", items.len() as u64, Unit::Items("records"));
    for (done, item) in items.iter().enumerate() {
        if let TxOp::Create { rt, resource, .. } | TxOp::Update { rt, resource, .. } = &item.entry.op {
            let mut copy = resource.clone();
            confidant_fhir::rewrite_references(&mut copy, &placeholders);
            if let Err(why) = confidant_fhir::validate(*rt, &mut copy, console.now()) {
                report.refused.push(Refusal { file: item.file.clone(), place: item.place.clone(), reason: why });
            }
        }
        counter.set(done as u64 + 1);
    }
    counter.finish();
    if !report.refused.is_empty() {
        return Ok(report);
    }
    let crate::instance::Instance { records, identity, .. } = crate::instance::Instance::open(console, dir).await?;
    let outcome = async {
        let mut principal = identity.principal_of(as_user).await.context("--as: no such active staff account")?;
        principal.source = Some(confidant_audit::CONSOLE.to_owned());
        let places: Vec<(String, String)> = items.iter().map(|i| (i.file.clone(), i.place.clone())).collect();
        let entries: Vec<TxEntry> = items.into_iter().map(|i| i.entry).collect();
        let refused = |index: Option<usize>, e: confidant_records::RecordsError| {
            let (file, place) = index.and_then(|i| places.get(i).cloned()).unwrap_or_default();
            Refusal { file, place, reason: e.to_string() }
        };
        progress.note(&format!(
            "[3/3] {} {} record(s) in one transaction",
            if dry_run { "planning" } else { "writing" },
            entries.len()
        ));
        if dry_run {
            match records.plan_transaction(&principal, entries).await {
                Ok(plan) => {
                    for p in plan {
                        match p {
                            TxPlan::Create(rt) => report.count(rt),
                            TxPlan::Existing(..) => report.existing += 1,
                            TxPlan::Update(..) => report.updated += 1,
                            TxPlan::Read(..) => {}
                        }
                    }
                }
                Err(f) => report.refused.push(refused(f.index, f.error)),
            }
            return Ok::<_, anyhow::Error>(());
        }
        match records.transaction(&principal, entries).await {
            Ok(done) => {
                for d in done {
                    match d {
                        TxDone::Created(s) => report.count(s.resource_type),
                        TxDone::Existing(_) => report.existing += 1,
                        TxDone::Updated(_) => report.updated += 1,
                        TxDone::Read(_) => {}
                    }
                }
                let created: usize = report.created.iter().map(|(_, n)| n).sum();
                let entry = console.entry(confidant_audit::Action::Create, &format!("import/{created} records"));
                console.record_with(records.auditor(), entry).await?;
            }
            Err(f) => report.refused.push(refused(f.index, f.error)),
        }
        Ok(())
    }
    .await;
    records.store().close().await;
    outcome?;
    Ok(report)
}

/// The resources of one file, by its shape: a JSON Bundle or resource, NDJSON, or CSV.
fn parse_file(name: &str, text: &str, items: &mut Vec<Item>, refused: &mut Vec<Refusal>) {
    let refuse = |refused: &mut Vec<Refusal>, place: String, reason: String| {
        refused.push(Refusal { file: name.to_owned(), place, reason });
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if name.ends_with(".csv") {
        match csv_resources(name, text) {
            Ok(found) => items.extend(found),
            Err((line, why)) => refuse(refused, format!("line {line}"), why),
        }
    } else if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match confidant_fhir::parse_json(line.as_bytes()) {
                Ok(v) => match resource_item(name, format!("line {}", i + 1), v) {
                    Ok(item) => items.push(item),
                    Err(why) => refuse(refused, format!("line {}", i + 1), why),
                },
                Err(why) => refuse(refused, format!("line {}", i + 1), format!("not a JSON resource: {why}")),
            }
        }
    } else {
        match confidant_fhir::parse_json(trimmed.as_bytes()) {
            Err(why) => refuse(refused, "the file".into(), format!("not JSON: {why}")),
            Ok(v) if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
                bundle_items(name, &v, items, refused);
            }
            Ok(v) => match resource_item(name, "the file".into(), v) {
                Ok(item) => items.push(item),
                Err(why) => refuse(refused, "the file".into(), why),
            },
        }
    }
}

/// A resource to create (an exported one: its id kept aside for references, its version dropped).
fn resource_item(file: &str, place: String, v: Value) -> Result<Item, String> {
    let rt = v
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(ResourceType::parse)
        .ok_or("resourceType: not a type this server stores")?;
    if rt.written_by_server() {
        return Err(format!("{}: written by the server itself, never imported", rt.as_str()));
    }
    Ok(Item {
        file: file.to_owned(),
        place,
        entry: TxEntry { full_url: None, op: TxOp::Create { rt, resource: v, if_none_exist: None } },
    })
}

fn bundle_items(file: &str, v: &Value, items: &mut Vec<Item>, refused: &mut Vec<Refusal>) {
    let refuse = |refused: &mut Vec<Refusal>, place: String, reason: String| {
        refused.push(Refusal { file: file.to_owned(), place, reason });
    };
    match v.get("type").and_then(Value::as_str) {
        Some("transaction") => match confidant_fhir::parse_bundle(v, usize::MAX) {
            Ok((BundleKind::Transaction, entries)) => {
                for (i, e) in entries.into_iter().enumerate() {
                    let place = format!("entry {i}");
                    let op = match (e.method, e.id, e.resource) {
                        (EntryMethod::Post, _, Some(resource)) => {
                            match e.if_none_exist.as_deref().map(confidant_fhir::parse_conditions).transpose() {
                                Ok(c) => TxOp::Create { rt: e.resource_type, resource, if_none_exist: c },
                                Err(why) => {
                                    refuse(refused, place, why.message);
                                    continue;
                                }
                            }
                        }
                        (EntryMethod::Put, Some(id), Some(resource)) => {
                            TxOp::Update { rt: e.resource_type, id, resource, if_match: e.if_match }
                        }
                        _ => {
                            refuse(refused, place, "an import writes: only POST and PUT entries".into());
                            continue;
                        }
                    };
                    items.push(Item { file: file.to_owned(), place, entry: TxEntry { full_url: e.full_url, op } });
                }
            }
            Ok(_) => {}
            Err(e) => refuse(refused, e.index.map(|i| format!("entry {i}")).unwrap_or("the file".into()), e.message),
        },
        Some("collection" | "searchset" | "batch") => {
            for (i, e) in v.get("entry").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let place = format!("entry {i}");
                // A search's included OperationOutcome (mode outcome) is not a record.
                if e.pointer("/search/mode").and_then(Value::as_str) == Some("outcome") {
                    continue;
                }
                let Some(resource) = e.get("resource").cloned() else {
                    refuse(refused, place, "entry without a resource".into());
                    continue;
                };
                match resource_item(file, place.clone(), resource) {
                    Ok(mut item) => {
                        item.entry.full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
                        items.push(item);
                    }
                    Err(why) => refuse(refused, place, why),
                }
            }
        }
        _ => refuse(refused, "the file".into(), "Bundle.type: transaction, collection, searchset or batch".into()),
    }
}

/// Exported records keep their old ids: each gets a `urn:uuid:` of the
/// import, and every reference to it (`Type/{old id}`, its fullUrl) is
/// pointed there; the transaction then gives the new ids.
fn resolve_exported_ids(items: &mut [Item]) -> Result<()> {
    let mut map = HashMap::new();
    for item in items.iter_mut() {
        let TxOp::Create { rt, resource, .. } = &mut item.entry.op else { continue };
        let old_id = resource.get("id").and_then(Value::as_str).map(str::to_owned);
        if let Value::Object(m) = resource {
            m.remove("id");
            // A new note's author is the clinician who writes it (the policy allows no other):
            // here, the one the import acts as.
            if *rt == ResourceType::DocumentReference {
                m.remove("author");
            }
            if let Some(Value::Object(meta)) = m.get_mut("meta") {
                meta.remove("versionId");
                meta.remove("lastUpdated");
                if meta.is_empty() {
                    m.remove("meta");
                }
            }
        }
        let urn = match &item.entry.full_url {
            Some(u) if confidant_fhir::is_urn_uuid(u) => u.clone(),
            _ => new_urn()?,
        };
        if let Some(old) = old_id {
            map.insert(format!("{}/{old}", rt.as_str()), urn.clone());
        }
        if let Some(u) = item.entry.full_url.replace(urn.clone())
            && u != urn
        {
            map.insert(u, urn);
        }
    }
    for item in items.iter_mut() {
        if let TxOp::Create { resource, .. } | TxOp::Update { resource, .. } = &mut item.entry.op {
            confidant_fhir::rewrite_references(resource, &map);
        }
    }
    Ok(())
}

/// A conditional reference to a patient by identifier (an appointment line's) names the
/// patient of the same import with that identifier, if there is one: the transaction then
/// links the two; otherwise it finds the stored patient.
fn refer_to_imported_patients(items: &mut [Item]) {
    let mut map = HashMap::new();
    for item in items.iter() {
        if let (TxOp::Create { rt: ResourceType::Patient, if_none_exist: Some(c), .. }, Some(urn)) =
            (&item.entry.op, &item.entry.full_url)
            && let [(k, v)] = c.as_slice()
            && k == "identifier"
        {
            map.insert(confidant_fhir::conditional_reference(ResourceType::Patient, &[("identifier", v)]), urn.clone());
        }
    }
    for item in items.iter_mut() {
        if let TxOp::Create { resource, .. } | TxOp::Update { resource, .. } = &mut item.entry.op {
            confidant_fhir::rewrite_references(resource, &map);
        }
    }
}

/// A random `urn:uuid:` (version 4).
fn new_urn() -> Result<String> {
    let mut b = [0u8; 16];
    confidant_vault::random_bytes(&mut b).context("no randomness")?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!("urn:uuid:{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

/// The columns of a patients CSV, in this order (a header line first).
pub const PATIENT_COLUMNS: [&str; 8] =
    ["identifier_system", "identifier_value", "family", "given", "birth_date", "gender", "phone", "email"];

/// The columns of an appointments CSV, in this order (a header line first).
/// `patient_identifier` is `system|value` of a patient in the same import (or
/// already stored); `practitioner` a Practitioner id; `start` and `end` instants.
pub const APPOINTMENT_COLUMNS: [&str; 5] = ["patient_identifier", "practitioner", "start", "end", "status"];

/// The resources of a CSV file (see [`PATIENT_COLUMNS`], [`APPOINTMENT_COLUMNS`]);
/// a malformed line refuses the file, naming it.
fn csv_resources(file: &str, text: &str) -> Result<Vec<Item>, (usize, String)> {
    let mut lines = text.trim_start_matches('\u{feff}').lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { return Ok(Vec::new()) };
    let header = csv_fields(header).map_err(|why| (1, why))?;
    let patients = header == PATIENT_COLUMNS;
    if !patients && header != APPOINTMENT_COLUMNS {
        return Err((
            1,
            format!(
                "the header must be `{}` (patients) or `{}` (appointments)",
                PATIENT_COLUMNS.join(","),
                APPOINTMENT_COLUMNS.join(",")
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let f = csv_fields(line).map_err(|why| (line_no, why))?;
        if f.len() != header.len() {
            return Err((line_no, format!("{} fields, the header has {}", f.len(), header.len())));
        }
        let place = format!("line {line_no}");
        let entry = if patients { patient_row(&f) } else { appointment_row(&f) }.map_err(|why| (line_no, why))?;
        out.push(Item { file: file.to_owned(), place, entry });
    }
    Ok(out)
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && confidant_fhir::date_range(s).is_some()
}

fn patient_row(f: &[String]) -> Result<TxEntry, String> {
    let [system, value, family, given, birth, gender, phone, email] = f else { return Err("wrong field count".into()) };
    let mut p = json!({"resourceType": "Patient"});
    if !family.is_empty() || !given.is_empty() {
        let mut name = json!({});
        if !family.is_empty() {
            name["family"] = json!(family);
        }
        if !given.is_empty() {
            name["given"] = json!(given.split(' ').filter(|g| !g.is_empty()).collect::<Vec<_>>());
        }
        p["name"] = json!([name]);
    }
    if !birth.is_empty() {
        if !is_date(birth) {
            return Err("birth_date must be a date such as 1980-02-01".into());
        }
        p["birthDate"] = json!(birth);
    }
    if !gender.is_empty() {
        p["gender"] = json!(gender);
    }
    let mut telecom = Vec::new();
    if !phone.is_empty() {
        telecom.push(json!({"system": "phone", "value": phone}));
    }
    if !email.is_empty() {
        telecom.push(json!({"system": "email", "value": email}));
    }
    if !telecom.is_empty() {
        p["telecom"] = Value::Array(telecom);
    }
    let mut full_url = None;
    let mut if_none_exist = None;
    if !value.is_empty() {
        let mut id = json!({"value": value});
        if !system.is_empty() {
            id["system"] = json!(system);
        }
        p["identifier"] = json!([id]);
        // A patient already stored with this identifier is found, not duplicated; appointments refer to it by it.
        let condition = if system.is_empty() { value.clone() } else { format!("{system}|{value}") };
        full_url = Some(identifier_urn(&condition));
        if_none_exist = Some(vec![("identifier".to_owned(), condition)]);
    }
    Ok(TxEntry { full_url, op: TxOp::Create { rt: ResourceType::Patient, resource: p, if_none_exist } })
}

/// The one name, within an import, of the patient with an identifier (a
/// `urn:uuid:` derived from it, so that an appointment line can refer to it).
fn identifier_urn(condition: &str) -> String {
    // Not a secret and not stored: a stable label inside one import (FNV-1a, 128 bits from two seeds).
    let fnv = |seed: u64| condition.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let h = format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142));
    format!("urn:uuid:{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn appointment_row(f: &[String]) -> Result<TxEntry, String> {
    let [patient, practitioner, start, end, status] = f else { return Err("wrong field count".into()) };
    if patient.is_empty() {
        return Err("patient_identifier is required (system|value of the patient)".into());
    }
    for (name, v) in [("start", start), ("end", end)] {
        if confidant_fhir::time_range(v).is_none() || v.len() <= 10 {
            return Err(format!("{name} must be an instant such as 2027-03-01T09:00:00Z"));
        }
    }
    let status = if status.is_empty() { "booked" } else { status.as_str() };
    // A conditional reference: the patient of the import with this identifier, or the one stored.
    let reference = confidant_fhir::conditional_reference(ResourceType::Patient, &[("identifier", patient.as_str())]);
    let mut participant = vec![json!({"actor": {"reference": reference}, "status": "accepted"})];
    if !practitioner.is_empty() {
        participant.push(json!({"actor": {"reference": format!("Practitioner/{practitioner}")}, "status": "accepted"}));
    }
    let a = json!({"resourceType": "Appointment", "status": status, "start": start, "end": end, "participant": participant});
    Ok(TxEntry { full_url: None, op: TxOp::Create { rt: ResourceType::Appointment, resource: a, if_none_exist: None } })
}

/// The fields of one CSV line (RFC 4180: commas, fields in double quotes with `""` for a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                out.push(std::mem::take(&mut field).trim().to_owned());
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(field.trim().to_owned());
    Ok(out)
}

/// Refuse an import with nothing in it.
pub fn require_files(files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        bail!("name at least one file to import");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines() {
        assert_eq!(csv_fields("a, b ,\"c,d\",\"e\"\"f\"").unwrap(), ["a", "b", "c,d", "e\"f"]);
        assert!(csv_fields("\"open").is_err());
        assert!(csv_fields("a\"b").is_err());
        assert_eq!(csv_fields("").unwrap(), [""]);
    }

    #[test]
    fn patients_and_appointments_from_csv() {
        let text = "identifier_system,identifier_value,family,given,birth_date,gender,phone,email\n\
                    urn:oid:1.2.246.21,010180-123A,Virtanen,Aino Maria,1980-01-01,female,+358401234567,\n";
        let items = csv_resources("p.csv", text).unwrap();
        assert_eq!(items.len(), 1);
        let TxOp::Create { resource, if_none_exist, .. } = &items[0].entry.op else { panic!() };
        assert_eq!(resource["name"][0]["given"], json!(["Aino", "Maria"]));
        assert_eq!(if_none_exist.as_ref().unwrap()[0].1, "urn:oid:1.2.246.21|010180-123A");
        let bad =
            "identifier_system,identifier_value,family,given,birth_date,gender,phone,email\n,,A,B,1980-13-45,,,\n";
        assert_eq!(csv_resources("p.csv", bad).err().unwrap().0, 2);
        let appts = "patient_identifier,practitioner,start,end,status\n\
                     urn:oid:1.2.246.21|010180-123A,abc,2027-03-01T09:00:00Z,2027-03-01T09:45:00Z,\n";
        let items = csv_resources("a.csv", appts).unwrap();
        let TxOp::Create { resource, .. } = &items[0].entry.op else { panic!() };
        assert_eq!(
            resource["participant"][0]["actor"]["reference"],
            "Patient?identifier=urn%3Aoid%3A1.2.246.21%7C010180-123A"
        );
        assert!(confidant_fhir::is_urn_uuid(&identifier_urn("x")));
        assert!(csv_resources("x.csv", "name,age\n").is_err());
    }
}
