//! A search or history query string as the FHIR API reads it: the paging
//! parameters (`_count`, `_after`) taken out, the ignored ones dropped, other
//! control parameters refused. Here, not in the server, so that its fuzz
//! target builds without the server's dependencies.

/// Matches per page when `_count` is not given.
pub const DEFAULT_COUNT: i64 = 20;
/// The most matches per page.
pub const MAX_COUNT: i64 = 100;

/// Query parameters, with the paging ones taken out.
#[derive(Debug)]
pub struct SearchQuery {
    pub params: Vec<(String, String)>,
    pub count: i64,
    pub after: Option<String>,
}

/// Why a query string is refused (the text is what the client is told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("_count must be a whole number from 1 to 100")]
    Count,
    #[error("_after must be a cursor from a Bundle's next link")]
    After,
    /// A control parameter this server does not support (named, escaped).
    #[error("parameter '{0}' is not supported")]
    NotSupported(String),
}

/// `_count`: a whole number, at most [`MAX_COUNT`]. Not 0: a count without the matches would tell whether someone is a patient
/// here without an audit entry naming them (every match returned is audited).
pub fn parse_count(v: &str) -> Result<i64, QueryError> {
    Ok(v.parse::<i64>().ok().filter(|c| *c >= 1).ok_or(QueryError::Count)?.min(MAX_COUNT))
}

/// A search or history query string: `_count`, `_after` and the ignored `_format`, `_pretty`,
/// `_total` taken out, other `_` parameters but `_id` refused, the rest kept in order.
pub fn parse_search_query(raw: Option<&str>) -> Result<SearchQuery, QueryError> {
    let mut q = SearchQuery { params: Vec::new(), count: DEFAULT_COUNT, after: None };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "_count" => q.count = parse_count(&v)?,
            "_after" => {
                if !crate::is_valid_id(&v) {
                    return Err(QueryError::After);
                }
                q.after = Some(v.into_owned());
            }
            // Only JSON is served; these change nothing.
            "_format" | "_pretty" | "_total" => {}
            "_id" => q.params.push((k.into_owned(), v.into_owned())),
            k if k.starts_with('_') => return Err(QueryError::NotSupported(k.escape_default().to_string())),
            _ => q.params.push((k.into_owned(), v.into_owned())),
        }
    }
    Ok(q)
}
