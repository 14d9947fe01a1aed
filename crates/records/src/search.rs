//! Search (FHIR search-type): matches on blind tokens, within what the
//! principal may see (the same rule as a single read, as SQL), one audit
//! entry per hit. Names match by their start (FHIR string search) through
//! blind-indexed prefixes; every other parameter matches exactly.

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::{PREFIX_INDEX, ResourceType, SearchParam, ValueKind, search_params};
use confidant_policy::records::Seen;
use confidant_policy::{self as policy, Action, Principal, Visibility};
use confidant_store::Criterion;

use crate::{Records, RecordsError, Result, Stored, blind_kind};

/// A search: `(parameter, value)` pairs ANDed (commas within a value OR),
/// at most `count` results after the opaque cursor `after`.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub params: Vec<(String, String)>,
    pub count: i64,
    pub after: Option<String>,
}

/// How a search is paged and answered, beyond its parameters.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    /// Page backwards: the `count` matches just before this cursor (a Bundle's
    /// `previous` link), instead of after [`SearchRequest::after`].
    pub before: Option<String>,
    /// Count only (`_count=0`, `_summary=count`): the total, no entries. Each
    /// match counted (up to [`COUNT_ONLY_AUDITED`]) is audited as a search hit,
    /// as if it had been returned: a count of one tells that someone is a patient here.
    pub count_only: bool,
}

/// One page of search results.
#[derive(Debug)]
pub struct SearchPage {
    pub entries: Vec<Stored>,
    pub total: i64,
    /// The cursor for the next page, if there is one.
    pub next_after: Option<String>,
    /// The cursor for the previous page (its first match), if there is one.
    pub previous_before: Option<String>,
}

/// The most matches of a count-only search audited one by one (each names
/// its patient, and counts toward the bulk-read rule as a returned match
/// would). A larger count singles no one out; its first matches are audited.
pub const COUNT_ONLY_AUDITED: i64 = 100;

/// What a conditional create or update found (FHIR `If-None-Exist`, `PUT type?criteria`).
#[derive(Debug)]
pub enum Conditional {
    /// Nothing matched: the resource was created.
    Created(Stored),
    /// One record matched, one the caller may see: it is returned (audited as a
    /// search hit), nothing was written.
    Existing(Stored),
    /// One record matched and was updated with the body.
    Updated(Stored),
}

const MAX_SEARCH_PARAMS: usize = 20;
const MAX_SEARCH_VALUES: usize = 100;
/// The most records opened to compare a search term longer than the indexed
/// prefixes: names sharing their first twelve characters are few; more than
/// this many is an unusable search (or someone filling the clinic with them).
const MAX_LONG_NAME_CANDIDATES: i64 = 500;

/// A name search term longer than the indexed prefixes: the store finds the
/// records by its first [`confidant_fhir::PREFIX_MAX`] characters, and this
/// compares the whole term after decryption.
#[derive(Debug)]
pub(crate) struct LongName {
    /// The HumanName parts searched (`family`, `given`).
    parts: &'static [&'static str],
    /// Any of these (comma-separated values OR), as typed.
    terms: Vec<String>,
}

impl LongName {
    fn matches(&self, resource: &serde_json::Value) -> bool {
        let names = resource["name"].as_array().into_iter().flatten();
        let values: Vec<&str> = names
            .flat_map(|n| {
                let family = self.parts.contains(&"family").then(|| n["family"].as_str()).flatten();
                let given = self
                    .parts
                    .contains(&"given")
                    .then(|| n["given"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str))
                    .into_iter()
                    .flatten();
                family.into_iter().chain(given)
            })
            .collect();
        self.terms.iter().any(|t| values.iter().any(|v| confidant_fhir::name_starts_with(v, t)))
    }
}

impl Records {
    /// Find current resources of `rt` (FHIR search-type). Exact match only.
    pub async fn search(&self, p: &Principal, rt: ResourceType, req: &SearchRequest) -> Result<SearchPage> {
        self.search_with(p, rt, req, &SearchOptions::default()).await
    }

    /// [`Records::search`], paged backwards or counting only as `opts` says.
    pub async fn search_with(
        &self,
        p: &Principal,
        rt: ResourceType,
        req: &SearchRequest,
        opts: &SearchOptions,
    ) -> Result<SearchPage> {
        self.permit(p, rt, Action::Read, AuditAction::SearchHit).await?;
        // A practitioner's appointments by date: the calendar's query (`schedule`).
        if rt == ResourceType::Appointment && req.params.iter().any(|(name, _)| name == "date") {
            let mut page = self.appointments_by_date(p, req).await?;
            if opts.count_only {
                page.entries.clear();
            }
            return Ok(page);
        }
        let now = self.clock.now_millis();
        if req.params.is_empty() && policy::search_needs_criterion(&policy::visibility(p, rt, now), rt) {
            let names: Vec<&str> = search_params(rt).iter().map(SearchParam::name).collect();
            return Err(RecordsError::Invalid(format!(
                "a {} search needs at least one search parameter: {}",
                rt.as_str(),
                names.join(", ")
            )));
        }
        let mut criteria = Vec::new();
        // Access first: results and totals hold only what the principal may see.
        criteria.extend(Self::visibility_criterion(p, rt, now));
        let long_names = self.parameter_criteria(rt, &req.params, &mut criteria)?;
        if !long_names.is_empty() {
            return self.search_long_names(p, rt, req, opts, &criteria, &long_names).await;
        }
        if opts.count_only {
            return self.count_only(p, rt, &criteria).await;
        }
        // At least one: every match counted in the total is one that could be returned and audited.
        let count = req.count.clamp(1, 100);
        // Fetch one extra row to learn whether a next (or, backwards, a previous) page exists.
        let backwards = opts.before.is_some();
        let (rows, total) = match &opts.before {
            Some(before) => self.store.search_before(rt.as_str(), &criteria, before, count + 1).await?,
            None => self.store.search(rt.as_str(), &criteria, req.after.as_deref(), count + 1).await?,
        };
        let more = rows.len() as i64 > count;
        // Backwards, the store answers nearest first: the page is the first `count`, in id order.
        let mut rows: Vec<_> = rows.into_iter().take(count as usize).collect();
        if backwards {
            rows.reverse();
        }
        let first_id = rows.first().map(|(r, _)| r.id.clone());
        let last_id = rows.last().map(|(r, _)| r.id.clone());
        // A honey record is not in its own clinician's lists (`honey`): left out unopened, unaudited.
        let seen = |via_break_glass: bool| if via_break_glass { Seen::ByBreakGlass } else { Seen::Yes };
        let listed = rows.len();
        let rows: Vec<_> = rows.into_iter().filter(|(row, bg)| !self.hides_from_search(p, row, seen(*bg))).collect();
        let hidden = (listed - rows.len()) as i64;
        // One entry per hit: each names the patient whose record was returned. One
        // altered row does not take the others down with it: it is left out, the rest answered.
        let (entries, audit, skipped) = self.open_found(p, AuditAction::SearchHit, rows).await?;
        let skipped = skipped + hidden;
        let (next_after, previous_before) = if backwards {
            // A page before a cursor has the cursor's page after it.
            (last_id, if more { first_id } else { None })
        } else {
            (if more { last_id } else { None }, if req.after.is_some() { first_id } else { None })
        };
        let total = (total - skipped).max(0);
        self.audited(p, &audit, SearchPage { entries, total, next_after, previous_before }).await
    }

    /// A count-only search: the total of what the principal may see, each match
    /// counted (up to [`COUNT_ONLY_AUDITED`]) audited as a search hit; nothing decrypted.
    async fn count_only(&self, p: &Principal, rt: ResourceType, criteria: &[Criterion]) -> Result<SearchPage> {
        let (rows, total) = self.store.search(rt.as_str(), criteria, None, COUNT_ONLY_AUDITED).await?;
        let seen = |via_break_glass: bool| if via_break_glass { Seen::ByBreakGlass } else { Seen::Yes };
        let hidden = rows.iter().filter(|(row, bg)| self.hides_from_search(p, row, seen(*bg))).count() as i64;
        let audit: Vec<_> = rows
            .iter()
            .filter(|(row, bg)| !self.hides_from_search(p, row, seen(*bg)))
            .map(|(row, bg)| self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(row), seen(*bg)))
            .collect();
        let total = (total - hidden).max(0);
        let page = SearchPage { entries: Vec::new(), total, next_after: None, previous_before: None };
        self.audited(p, &audit, page).await
    }

    /// The criteria of search parameters `params` of `rt`, appended to `criteria`;
    /// the name terms longer than the indexed prefixes are returned, to be compared after decryption.
    pub(crate) fn parameter_criteria(
        &self,
        rt: ResourceType,
        params: &[(String, String)],
        criteria: &mut Vec<Criterion>,
    ) -> Result<Vec<LongName>> {
        // Bounded work per request: a search is a handful of exact matches.
        if params.len() > MAX_SEARCH_PARAMS {
            return Err(RecordsError::Invalid(format!("at most {MAX_SEARCH_PARAMS} search parameters per request")));
        }
        let mut long_names = Vec::new();
        for (name, value) in params {
            let (base, modifier) = match name.split_once(':') {
                Some((b, m)) => (b, Some(m)),
                None => (name.as_str(), None),
            };
            let param = search_params(rt).iter().find(|p| p.name() == base).ok_or_else(|| {
                RecordsError::Invalid(format!("{} has no search parameter '{}'", rt.as_str(), base.escape_default()))
            })?;
            let exact_allowed = matches!(param, SearchParam::Blind { .. } | SearchParam::Name { exact: Some(_), .. });
            if let Some(m) = modifier
                && (m != "exact" || !exact_allowed)
            {
                return Err(RecordsError::NotSupported(format!(
                    "modifier ':{}' is not supported; search is exact-match",
                    m.escape_default()
                )));
            }
            let values: Vec<&str> = value.split(',').map(str::trim).collect();
            if values.len() > MAX_SEARCH_VALUES {
                return Err(RecordsError::Invalid(format!(
                    "at most {MAX_SEARCH_VALUES} comma-separated values per parameter"
                )));
            }
            if values.iter().any(|v| v.is_empty()) {
                return Err(RecordsError::Invalid(format!("search parameter '{base}' needs a value")));
            }
            match param {
                SearchParam::Name { parts, exact, .. } => {
                    let (criterion, long) =
                        self.name_criterion(rt, parts, exact.filter(|_| modifier.is_some()), &values)?;
                    criteria.push(criterion);
                    long_names.extend(long);
                }
                _ => criteria.push(self.criterion(rt, param, &values)?),
            }
        }
        Ok(long_names)
    }

    /// A search by a term longer than the indexed prefixes: every candidate the
    /// store finds by the prefixes is opened and compared whole, in memory; the
    /// page and the total are of those that match. Only the hits returned are
    /// audited: the others leave the server in no form, not even as a count.
    async fn search_long_names(
        &self,
        p: &Principal,
        rt: ResourceType,
        req: &SearchRequest,
        opts: &SearchOptions,
        criteria: &[Criterion],
        long_names: &[LongName],
    ) -> Result<SearchPage> {
        let count = req.count.clamp(1, 100) as usize;
        let (rows, _) = self.store.search(rt.as_str(), criteria, None, MAX_LONG_NAME_CANDIDATES + 1).await?;
        if rows.len() as i64 > MAX_LONG_NAME_CANDIDATES {
            return Err(RecordsError::Invalid(format!(
                "more than {MAX_LONG_NAME_CANDIDATES} names start with the same {} characters: search by another parameter too",
                confidant_fhir::PREFIX_MAX
            )));
        }
        let mut matching = Vec::new();
        for (row, via_break_glass) in rows {
            let seen = if via_break_glass { Seen::ByBreakGlass } else { Seen::Yes };
            if self.hides_from_search(p, &row, seen) {
                continue;
            }
            let entry = self.entry(p, AuditAction::SearchHit, Outcome::Success, Some(&row), seen);
            match self.open_record(row).await {
                Ok(stored) if long_names.iter().all(|l| l.matches(&stored.resource)) => matching.push((entry, stored)),
                Ok(_) | Err(RecordsError::Integrity) => {}
                Err(e) => return Err(e),
            }
        }
        let total = matching.len() as i64;
        if opts.count_only {
            let audit: Vec<_> = matching.into_iter().map(|(e, _)| e).take(COUNT_ONLY_AUDITED as usize).collect();
            let page = SearchPage { entries: Vec::new(), total, next_after: None, previous_before: None };
            return self.audited(p, &audit, page).await;
        }
        // The store answers in id order: a page is a window of it.
        let (page, next_after, previous_before) = match opts.before.as_deref() {
            Some(before) => {
                let earlier: Vec<_> = matching.into_iter().filter(|(_, s)| s.id.as_str() < before).collect();
                let more = earlier.len() > count;
                let page: Vec<_> = earlier.into_iter().rev().take(count).rev().collect();
                let first = page.first().map(|(_, s)| s.id.clone()).filter(|_| more);
                let last = page.last().map(|(_, s)| s.id.clone());
                (page, last, first)
            }
            None => {
                let after = req.after.as_deref().unwrap_or("");
                let mut page: Vec<_> =
                    matching.into_iter().filter(|(_, s)| s.id.as_str() > after).take(count + 1).collect();
                let next_after = if page.len() > count {
                    page.truncate(count);
                    page.last().map(|(_, s)| s.id.clone())
                } else {
                    None
                };
                let previous = page.first().map(|(_, s)| s.id.clone()).filter(|_| req.after.is_some());
                (page, next_after, previous)
            }
        };
        let (audit, entries): (Vec<_>, Vec<_>) = page.into_iter().unzip();
        self.audited(p, &audit, SearchPage { entries, total, next_after, previous_before }).await
    }

    /// The criterion of a name search: the blind prefix of each value (any part
    /// of `parts`), or with `exact` (`:exact`) the whole value's exact token.
    /// Values longer than the indexed prefixes are returned to be compared after decryption.
    fn name_criterion(
        &self,
        rt: ResourceType,
        parts: &'static [&'static str],
        exact: Option<&'static str>,
        values: &[&str],
    ) -> Result<(Criterion, Option<LongName>)> {
        if let Some(param) = exact {
            let tokens =
                values.iter().map(|v| self.keyring.search_token(rt.as_str(), param, blind_kind(ValueKind::Text), v));
            return Ok((Criterion::Token { param, tokens: tokens.collect() }, None));
        }
        let mut tokens = Vec::with_capacity(values.len() * parts.len());
        let mut any_long = false;
        for v in values {
            let (prefix, cut) = confidant_fhir::search_prefix(v).map_err(RecordsError::Invalid)?;
            for part in parts {
                tokens.push(self.keyring.name_prefix_token(rt.as_str(), part, &prefix));
            }
            any_long |= cut;
        }
        // Comma-separated values OR: with one long value among them, every value is
        // compared after decryption (a short one matches there by its start as well).
        let long = any_long.then(|| LongName { parts, terms: values.iter().map(|v| (*v).to_owned()).collect() });
        Ok((Criterion::Token { param: PREFIX_INDEX, tokens }, long))
    }

    pub(crate) fn visibility_criterion(p: &Principal, rt: ResourceType, now: i64) -> Option<Criterion> {
        match policy::visibility(p, rt, now) {
            Visibility::All => None,
            Visibility::CareTeam { practitioner_id, user_id, now } => {
                Some(Criterion::CareTeam { practitioner_id, user_id, now })
            }
            Visibility::OwnRecord { patient_id } => Some(Criterion::OwnRecord { patient_id }),
        }
    }

    pub(crate) fn criterion(&self, rt: ResourceType, param: &SearchParam, values: &[&str]) -> Result<Criterion> {
        match param {
            SearchParam::Id => {
                if values.len() != 1 {
                    return Err(RecordsError::NotSupported("_id takes one value".into()));
                }
                Ok(Criterion::Id(values[0].to_owned()))
            }
            // Names are searched by `name_criterion` (a prefix, perhaps compared after decryption).
            SearchParam::Name { name, .. } => Err(RecordsError::NotSupported(format!("{name} is a name search"))),
            SearchParam::Patient { name } => {
                if values.len() != 1 {
                    return Err(RecordsError::NotSupported(format!("{name} takes one value")));
                }
                let id = values[0].strip_prefix("Patient/").unwrap_or(values[0]);
                if !confidant_fhir::is_valid_id(id) {
                    return Err(RecordsError::Invalid(format!("{name} must be Patient/{{id}} or {{id}}")));
                }
                Ok(Criterion::Compartment(id.to_owned()))
            }
            SearchParam::Blind { name, kind, .. } => {
                let mut tokens = Vec::with_capacity(values.len());
                for v in values {
                    let v = match kind {
                        ValueKind::Date => {
                            let v = v.strip_prefix("eq").unwrap_or(v);
                            if v.starts_with(|c: char| c.is_ascii_alphabetic()) {
                                return Err(RecordsError::NotSupported(
                                    "birthdate supports exact dates only (no ge/le ranges): it is blind-indexed".into(),
                                ));
                            }
                            // `>1980-01-01` and other malformed values: a 400, not an empty Bundle.
                            if v.contains('T') || confidant_fhir::time_range(v).is_none() {
                                return Err(RecordsError::Invalid(format!(
                                    "{name} must be a date (YYYY, YYYY-MM or YYYY-MM-DD), optionally prefixed eq"
                                )));
                            }
                            v
                        }
                        // A reference search takes Practitioner/{id} or the id.
                        ValueKind::Identifier if matches!(*name, "practitioner" | "actor") => {
                            v.strip_prefix("Practitioner/").unwrap_or(v)
                        }
                        ValueKind::Identifier => match v.split_once('|') {
                            Some(("", value)) => value,
                            Some((_, "")) => {
                                return Err(RecordsError::NotSupported(
                                    "identifier=system| (any value of a system) is not supported: identifiers are blind-indexed".into(),
                                ));
                            }
                            _ => v,
                        },
                        _ => v,
                    };
                    tokens.push(self.keyring.search_token(rt.as_str(), name, blind_kind(*kind), v));
                }
                Ok(Criterion::Token { param: name, tokens })
            }
        }
    }
}
