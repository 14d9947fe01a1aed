//! Integration tests: the `confidant` binary, over HTTP, on SQLite and PostgreSQL.
//! One test binary (link once); each test builds its own instance.

// A panic in a test is a failed test, not a crashed clinic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod access;
mod api;
mod audit;
mod backup;
mod crash;
mod demo;
mod detection;
mod erasure;
// FHIR conformance that real clients need (issue 19).
mod fhir_conformance;
mod hostile;
mod intake;
mod keys;
mod measures;
mod metrics;
mod notes;
mod pentest_audit;
mod pentest_auth;
mod pentest_reach;
mod pentest_records;
// phishing drills
mod phishing;
mod posture;
mod practice;
mod prefix;
mod reminders;
mod rotation;
mod schedule;
mod tamper;
mod templates;
mod tls;
mod training;
mod ui;
mod upgrade;
mod validator;
mod vastaamo;
// SMART App Launch 2: discovery, the authorization code flow with PKCE (issue 19).
mod smart;
// _include, _revinclude and Patient/$everything (issue 19).
mod fhir_include;
// FHIR transaction and batch Bundles (issue 19).
mod fhir_transaction;
// `confidant import` (issue 19).
mod import;
