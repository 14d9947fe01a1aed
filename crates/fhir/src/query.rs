//! A search or history query string as the FHIR API reads it: the paging and
//! result parameters (`_count`, `_after`, `_before`, `_summary`, `_elements`,
//! `_sort`, `_include`, `_revinclude`) taken out, the ignored ones dropped, other control parameters
//! refused (or, with lenient handling, ignored). Here, not in the server, so
//! that its fuzz target builds without the server's dependencies.

/// Matches per page when `_count` is not given.
pub const DEFAULT_COUNT: i64 = 20;
/// The most matches per page.
pub const MAX_COUNT: i64 = 100;

/// Why a query string is refused (the text is what the client is told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("_count must be a whole number from 0 to 100")]
    Count,
    #[error("_after and _before must be a cursor from a Bundle's next or previous link")]
    Cursor,
    #[error("give _after or _before, not both")]
    BothCursors,
    #[error("_elements must be a comma-separated list of element names")]
    Elements,
    /// A control parameter or value this server does not support (named, escaped).
    #[error("{0}")]
    NotSupported(String),
}

/// Query parameters, with the paging and result ones taken out.
#[derive(Debug, Default)]
pub struct SearchQuery {
    pub params: Vec<(String, String)>,
    /// Matches per page; 0 with `count_only`.
    pub count: i64,
    pub after: Option<String>,
    /// The `previous` link's cursor: the page just before this match.
    pub before: Option<String>,
    /// `_count=0` or `_summary=count`: the total only.
    pub count_only: bool,
    /// `_elements`: the elements to return (besides the mandatory ones).
    pub elements: Option<Vec<String>>,
    /// `_sort`, as given (the handler knows what its type sorts by).
    pub sort: Option<String>,
    /// Result parameters kept for the Bundle's links (`_elements`, `_sort`, `_summary`).
    pub kept: Vec<(String, String)>,
    /// `_include`: the references of the matches to bring along (each once).
    pub include: Vec<&'static crate::Include>,
    /// `_revinclude`: the resources referring to the matches to bring along (each once).
    pub revinclude: Vec<&'static crate::Include>,
}

/// `_count`: a whole number, at most [`MAX_COUNT`]; 0 asks for the total only
/// (each match counted is audited as a search hit, as if it had been returned).
pub fn parse_count(v: &str) -> Result<i64, QueryError> {
    Ok(v.parse::<i64>().ok().filter(|c| *c >= 0).ok_or(QueryError::Count)?.min(MAX_COUNT))
}

fn unsupported(k: &str) -> QueryError {
    QueryError::NotSupported(format!(
        "parameter '{}' is not supported (send Prefer: handling=lenient to have unsupported parameters ignored)",
        k.escape_default()
    ))
}

/// A search or history query string (strict handling): `_count`, `_after`,
/// `_before`, `_summary`, `_elements`, `_sort` taken out, the ignored
/// `_format`, `_pretty`, `_total` dropped, other `_` parameters but `_id`
/// refused, the rest kept in order.
pub fn parse_search_query(raw: Option<&str>) -> Result<SearchQuery, QueryError> {
    parse_search_query_with(raw, false)
}

/// [`parse_search_query`]; with `lenient` (`Prefer: handling=lenient`) unsupported `_` parameters are ignored.
pub fn parse_search_query_with(raw: Option<&str>, lenient: bool) -> Result<SearchQuery, QueryError> {
    let mut q = SearchQuery { count: DEFAULT_COUNT, ..SearchQuery::default() };
    let mut includes = 0;
    let cursor = |v: &str| {
        if crate::is_valid_id(v) { Ok(Some(v.to_owned())) } else { Err(QueryError::Cursor) }
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "_count" => q.count = parse_count(&v)?,
            "_after" => q.after = cursor(&v)?,
            "_before" => q.before = cursor(&v)?,
            "_summary" => match v.as_ref() {
                "count" => {
                    q.count_only = true;
                    q.kept.push((k.into_owned(), v.into_owned()));
                }
                "false" => {}
                _ if lenient => {}
                _ => {
                    return Err(QueryError::NotSupported("_summary supports count and false only".into()));
                }
            },
            "_elements" => {
                let names: Vec<String> = v.split(',').map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
                if names.is_empty()
                    || names.len() > 64
                    || names.iter().any(|n| n.len() > 64 || !n.bytes().all(|b| b.is_ascii_alphanumeric()))
                {
                    return Err(QueryError::Elements);
                }
                q.elements = Some(names);
                q.kept.push((k.into_owned(), v.into_owned()));
            }
            "_sort" => {
                q.sort = Some(v.clone().into_owned());
                q.kept.push((k.into_owned(), v.into_owned()));
            }
            // Only JSON is served (other formats are refused with 406 before this); these change nothing.
            "_format" | "_pretty" | "_total" => {}
            "_id" => q.params.push((k.into_owned(), v.into_owned())),
            "_include" | "_revinclude" => {
                includes += 1;
                if includes > crate::MAX_INCLUDE_PARAMS {
                    return Err(QueryError::NotSupported(format!(
                        "at most {} _include and _revinclude parameters per request",
                        crate::MAX_INCLUDE_PARAMS
                    )));
                }
                let list = if k == "_include" { &mut q.include } else { &mut q.revinclude };
                match crate::parse_include(&v) {
                    Ok(i) if !list.contains(&i) => list.push(i),
                    Ok(_) => {}
                    Err(_) if lenient => {}
                    Err(e) => return Err(QueryError::NotSupported(e)),
                }
            }
            k if k.starts_with("_include:") || k.starts_with("_revinclude:") => {
                if !lenient {
                    return Err(QueryError::NotSupported(format!(
                        "'{}' is not supported: includes are not followed further (no :iterate or :recurse)",
                        k.escape_default()
                    )));
                }
            }
            k if k.starts_with('_') => {
                if !lenient {
                    return Err(unsupported(k));
                }
            }
            _ => q.params.push((k.into_owned(), v.into_owned())),
        }
    }
    if q.after.is_some() && q.before.is_some() {
        return Err(QueryError::BothCursors);
    }
    // `_count=0` or `_summary=count`, in either order: the total only.
    q.count_only |= q.count == 0;
    if q.count_only {
        q.count = 0;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_INCLUDE_PARAMS;

    #[test]
    fn includes_are_parsed_once_each_and_bounded() {
        let q = parse_search_query(Some(
            "_id=x&_include=DocumentReference:subject&_include=DocumentReference:subject:Patient&_revinclude=CareTeam:subject",
        ))
        .unwrap();
        assert_eq!(q.include.len(), 1, "the same include twice is one");
        assert_eq!(q.revinclude[0].name(), "CareTeam:subject");
        assert_eq!(q.params.len(), 1);
        for bad in ["_include=Foo:bar", "_include=*", "_revinclude=Patient:link", "_include:iterate=CareTeam:subject"] {
            assert!(matches!(parse_search_query(Some(bad)), Err(QueryError::NotSupported(_))), "{bad}");
            // Lenient handling ignores what it cannot serve, as it does other parameters.
            let q = parse_search_query_with(Some(bad), true).unwrap();
            assert!(q.include.is_empty() && q.revinclude.is_empty(), "{bad}");
        }
        let many = ["_include=CareTeam:subject"; MAX_INCLUDE_PARAMS + 1].join("&");
        let e = parse_search_query_with(Some(&many), true).unwrap_err();
        assert!(e.to_string().contains("at most 10"), "{e}");
    }
}
