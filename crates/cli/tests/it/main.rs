//! Integration tests: the `confidant` binary, over HTTP, on SQLite and PostgreSQL.
//! One test binary (link once); each test builds its own instance.

mod common;

mod api;
mod crash;
mod demo;
mod hostile;
mod keys;
mod tamper;
mod vastaamo;
