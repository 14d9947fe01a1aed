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
/// and no internals: element paths and what to do, never values. A
/// diagnostic that starts with an element's path (`Patient.telecom[1]: …`)
/// names it in `expression` too, as FHIR clients look for it there.
pub fn operation_outcome(code: IssueType, diagnostics: &str) -> Value {
    let mut issue = json!({
        "severity": "error",
        "code": code.code(),
        "diagnostics": diagnostics,
    });
    if let Some(path) = element_path(diagnostics) {
        issue["expression"] = json!([path]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// The FHIRPath a diagnostic starts with (`Type.element[0].child`), if it does.
fn element_path(diagnostics: &str) -> Option<&str> {
    let token = diagnostics.split([' ', ':']).next()?;
    let mut parts = token.split('.');
    let root = parts.next()?;
    let root_ok = root.len() > 1
        && root.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && root.bytes().all(|b| b.is_ascii_alphabetic());
    let mut rest = parts.peekable();
    rest.peek()?;
    let rest_ok = rest.all(|p| {
        let name = p.split('[').next().unwrap_or("");
        !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && p[name.len()..]
                .split_terminator(']')
                .all(|i| i.strip_prefix('[').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    });
    (root_ok && rest_ok).then_some(token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_named_in_expression() {
        let o =
            super::operation_outcome(super::IssueType::Invalid, "Patient.telecom[1]: a contact point needs a system");
        assert_eq!(o["issue"][0]["expression"][0], "Patient.telecom[1]");
        let o =
            super::operation_outcome(super::IssueType::Invalid, "DocumentReference.content[0].attachment.url must be");
        assert_eq!(o["issue"][0]["expression"][0], "DocumentReference.content[0].attachment.url");
        for no in ["Patient: element 'x'", "request body is not valid JSON", "Patient.? x", "Patient.a[x] y", "X.y"] {
            let o = super::operation_outcome(super::IssueType::Invalid, no);
            assert!(o["issue"][0].get("expression").is_none(), "{no}");
        }
    }
}
