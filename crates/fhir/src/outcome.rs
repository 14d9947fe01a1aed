//! OperationOutcome: how every error reaches a FHIR client.

use serde_json::{Value, json};

/// The FHIR `issue-type` codes we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    NotFound,
    NotSupported,
    Conflict,
    Security,
    Login,
    Forbidden,
    Throttled,
    /// A temporary failure: try again later.
    Transient,
    TooCostly,
    Exception,
    Processing,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::NotFound => "not-found",
            IssueType::NotSupported => "not-supported",
            IssueType::Conflict => "conflict",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Throttled => "throttled",
            IssueType::Transient => "transient",
            IssueType::TooCostly => "too-costly",
            IssueType::Exception => "exception",
            IssueType::Processing => "processing",
        }
    }
}

/// An OperationOutcome with one error issue. `diagnostics` must hold no PHI
/// and no internals: element paths and what to do, never values.
pub fn operation_outcome(code: IssueType, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": code.code(),
            "diagnostics": diagnostics,
        }]
    })
}
