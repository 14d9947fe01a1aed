//! Who watches the audit stream as it is written: the breach detector.
//!
//! The service that appends a request's entries (records, identity) was
//! given its [`Subscriber`] when it was built, and publishes to it on the
//! request path: [`Subscriber::admit`] before a response's entries are
//! appended (it may refuse the rest of a response), [`Subscriber::committed`]
//! once they are. Both are awaited before the response leaves, so that a
//! session a rule locks is locked for the very next request.
//!
//! The subscriber may append entries of its own (its alerts) through the
//! [`crate::Auditor`] it was built with: it depends on the auditor, the
//! auditor on nothing, and the service on both — no cycle, no back-reference.

use std::future::Future;
use std::pin::Pin;

use crate::Entry;

/// A boxed future of a [`Subscriber`] method (the trait is used as `dyn`).
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What watches committed entries. `credential`: the session or API token of
/// the request (`session/<id>`, `token/<id>`), for rules that lock it.
pub trait Subscriber: Send + Sync {
    /// Entries about to be appended for one response: how many of them (a
    /// prefix) may be given out. Anything less refuses the response.
    fn admit<'a>(&'a self, credential: Option<&'a str>, entries: &'a [Entry]) -> Pending<'a, usize>;

    /// Entries committed to the log.
    fn committed<'a>(&'a self, credential: Option<&'a str>, entries: &'a [Entry]) -> Pending<'a, ()>;

    /// A stored record (`Type/id`) failed its integrity check at `at` (Unix ms).
    fn integrity_failure<'a>(&'a self, at: i64, resource: &'a str) -> Pending<'a, ()>;
}
