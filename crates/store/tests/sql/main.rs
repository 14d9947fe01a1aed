//! The store's SQL, every public method group of [`confidant_store::Store`],
//! run on both backends: each test body runs once against a fresh SQLite file
//! and once against a fresh PostgreSQL database (created on the server in
//! CONFIDANT_TEST_POSTGRES_URL and dropped afterwards, so tests run in
//! parallel). Without that variable the PostgreSQL half says so loudly and
//! passes; in CI (`CI=true`) it fails instead.
//!
//! Rows are ciphertext in production; here they are opaque byte strings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// One change committed on its own, with no audit entry: the store's SQL
/// tested alone (identity commits each change with the entry that records it).
macro_rules! alone {
    ($store:expr, $method:ident ( $($arg:expr),* $(,)? )) => {{
        let mut changes = $store.audited().await.unwrap();
        let result = changes.$method($($arg),*).await;
        if result.is_ok() {
            changes.commit(&[]).await.unwrap();
        }
        result
    }};
}

/// Runs each named `async fn(&Db)` as `NAME::sqlite` and `NAME::postgres`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::harness::Db::sqlite().await;
                super::$name(&db).await;
                db.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::harness::Db::postgres(module_path!()).await else { return };
                super::$name(&db).await;
                db.finish().await;
            }
        }
    )*};
}

mod audit;
mod harness;
mod identity;
mod lifecycle;
mod records;
// SMART App Launch: apps, authorization codes, app tokens.
mod smart;
