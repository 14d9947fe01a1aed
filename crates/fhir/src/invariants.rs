//! FHIR R4's element-level invariants, checked on every resource written
//! (every type, before its own checks): what real clients found stored and
//! served back before (issue 19). Each refusal names the element's path and
//! the invariant's key, never a value.
//!
//! * `ele-1`: every element has a value or children: no empty object, empty
//!   array, empty string or `null` (a `null` only in a primitive array that
//!   has its `_element` partner, as FHIR JSON pairs them);
//! * `ext-1`: an extension has a `url` and either a value or nested
//!   extensions, never both (and one value at most);
//! * `ref-1`: no local (`#…`) references: contained resources are not supported;
//! * `txt-1`, `txt-2`: a narrative is XHTML of the basic formatting elements
//!   only (no script, style, form, frame, event handler or script URL) with
//!   some content, in the XHTML namespace;
//! * `cpt-2`: a contact point with a value has a system;
//! * `att-1`: an attachment with data has a content type; its `url` is an
//!   absolute URL (with a scheme), never a script or data URL;
//! * `per-1`: a period does not end before it starts;
//! * `app-2`, `app-3`, `app-4` (Appointment), `pat-1` (Patient.contact).

use serde_json::{Map, Value};

use crate::ResourceType;

type Check = Result<(), String>;

/// Check every element-level invariant of `resource` (a JSON object of type `rt`).
pub(crate) fn check(rt: ResourceType, m: &Map<String, Value>) -> Check {
    let root = rt.as_str();
    walk_object(m, root)?;
    if let Some(text) = m.get("text") {
        narrative(text, &format!("{root}.text"))?;
    }
    match rt {
        ResourceType::Appointment => appointment(m),
        ResourceType::Patient => patient(m),
        _ => Ok(()),
    }
}

fn child(path: &str, key: &str) -> String {
    match crate::shape::element_name(key) {
        Some(k) => format!("{path}.{k}"),
        None => format!("{path}.?"),
    }
}

fn walk_object(m: &Map<String, Value>, path: &str) -> Check {
    if m.is_empty() {
        return Err(format!("{path} must not be an empty object: leave the element out (FHIR invariant ele-1)"));
    }
    for (key, v) in m {
        let here = child(path, key);
        // A primitive array and its `_element` partner may hold nulls where the other has the item.
        let partnered = match key.strip_prefix('_') {
            Some(base) => m.contains_key(base),
            None => m.contains_key(&format!("_{key}")),
        };
        walk(v, &here, partnered)?;
        match key.as_str() {
            "extension" | "modifierExtension" => extensions(v, &here)?,
            "reference" if v.as_str().is_some_and(|r| r.starts_with('#')) => {
                return Err(format!(
                    "{here}: a local reference (#...) needs a contained resource, which this server does not \
                     accept: refer to a resource stored on its own (FHIR invariant ref-1)"
                ));
            }
            "telecom" => {
                for (i, t) in v.as_array().into_iter().flatten().enumerate() {
                    if let Some(t) = t.as_object()
                        && t.contains_key("value")
                        && !t.contains_key("system")
                    {
                        return Err(format!(
                            "{here}[{i}]: a contact point with a value needs a system (phone, email, ...) \
                             (FHIR invariant cpt-2)"
                        ));
                    }
                }
            }
            "attachment" | "valueAttachment" | "photo" => {
                let items: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for (i, a) in items.into_iter().enumerate() {
                    let p = if v.is_array() { format!("{here}[{i}]") } else { here.clone() };
                    if let Some(a) = a.as_object() {
                        attachment(a, &p)?;
                    }
                }
            }
            "period" | "requestedPeriod" | "planningHorizon" | "valuePeriod" | "effectivePeriod" => {
                let items: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for p in items.into_iter().filter_map(Value::as_object) {
                    period(p, &here)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn walk(v: &Value, path: &str, partnered: bool) -> Check {
    match v {
        Value::Object(m) => walk_object(m, path),
        Value::Array(a) => {
            if a.is_empty() {
                return Err(format!("{path} must not be an empty array: leave the element out (FHIR invariant ele-1)"));
            }
            for (i, item) in a.iter().enumerate() {
                if item.is_null() && partnered {
                    continue;
                }
                walk(item, &format!("{path}[{i}]"), false)?;
            }
            // Every item null: nothing there at all.
            if a.iter().all(Value::is_null) {
                return Err(format!("{path} holds no value (FHIR invariant ele-1)"));
            }
            Ok(())
        }
        Value::Null => Err(format!("{path} must not be null: leave the element out (FHIR invariant ele-1)")),
        Value::String(s) if s.is_empty() => {
            Err(format!("{path} must not be an empty string: leave the element out (FHIR invariant ele-1)"))
        }
        _ => Ok(()),
    }
}

fn extensions(v: &Value, path: &str) -> Check {
    let Some(items) = v.as_array() else { return Err(format!("{path} must be an array")) };
    for (i, e) in items.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let Some(e) = e.as_object() else { return Err(format!("{here} must be a JSON object")) };
        if e.get("url").and_then(Value::as_str).is_none_or(|u| u.trim().is_empty()) {
            return Err(format!("{here}.url is required: an extension says what it is by its url"));
        }
        let values = e.keys().filter(|k| k.starts_with("value")).count();
        let nested = e.contains_key("extension");
        if values > 1 {
            return Err(format!("{here} has more than one value[x]: give one"));
        }
        if (values == 1) == nested {
            return Err(format!(
                "{here} must have either a value[x] or nested extensions, not both and not neither (FHIR invariant ext-1)"
            ));
        }
    }
    Ok(())
}

fn attachment(a: &Map<String, Value>, path: &str) -> Check {
    if a.contains_key("data") && !a.contains_key("contentType") {
        return Err(format!("{path}: an attachment with data needs a contentType (FHIR invariant att-1)"));
    }
    if let Some(url) = a.get("url").and_then(Value::as_str) {
        let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| {
            let mut b = s.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        });
        match scheme.map(str::to_ascii_lowercase).as_deref() {
            None => {
                return Err(format!(
                    "{path}.url must be an absolute URL with a scheme (https://..., urn:...), not a relative path"
                ));
            }
            Some("javascript" | "vbscript" | "data" | "file") => {
                return Err(format!(
                    "{path}.url: this scheme is not accepted (script, data and file URLs); put inline content in data"
                ));
            }
            Some(_) => {}
        }
        if url.chars().any(char::is_whitespace) {
            return Err(format!("{path}.url must be a URL: no whitespace"));
        }
    }
    Ok(())
}

fn period(p: &Map<String, Value>, path: &str) -> Check {
    let bound = |k: &str| p.get(k).and_then(Value::as_str).and_then(crate::time_range);
    if let (Some((from, _)), Some((_, until))) = (bound("start"), bound("end"))
        && until <= from
    {
        return Err(format!("{path}.end must not be before {path}.start (FHIR invariant per-1)"));
    }
    Ok(())
}

fn appointment(m: &Map<String, Value>) -> Check {
    let status = m.get("status").and_then(Value::as_str).unwrap_or("");
    let (start, end) = (m.contains_key("start"), m.contains_key("end"));
    if start != end {
        return Err("Appointment: give both start and end, or neither (FHIR invariant app-2)".into());
    }
    if !start && !matches!(status, "proposed" | "cancelled" | "waitlist") {
        return Err(format!(
            "Appointment.start and Appointment.end are required unless the status is proposed, cancelled or \
             waitlist (this one is {}) (FHIR invariant app-3)",
            if crate::shape::element_name(status).is_some() { status } else { "another status" }
        ));
    }
    if m.contains_key("cancelationReason") && !matches!(status, "cancelled" | "noshow") {
        return Err(
            "Appointment.cancelationReason is only for a cancelled or no-show appointment (FHIR invariant app-4)"
                .into(),
        );
    }
    Ok(())
}

fn patient(m: &Map<String, Value>) -> Check {
    for (i, c) in m.get("contact").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Some(c) = c.as_object() else { continue };
        if !["name", "telecom", "address", "organization"].iter().any(|k| c.contains_key(*k)) {
            return Err(format!(
                "Patient.contact[{i}] needs a name, telecom, address or organization (FHIR invariant pat-1)"
            ));
        }
    }
    Ok(())
}

/// The elements a narrative may use: HTML 4.0's basic formatting, lists,
/// tables, links and images (FHIR's xhtml type, invariant txt-1).
const NARRATIVE_ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "b",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
];

/// Attributes a narrative element may carry (no event handlers: `on…`).
const NARRATIVE_ATTRIBUTES: &[&str] = &[
    "xmlns",
    "xml:lang",
    "lang",
    "dir",
    "class",
    "id",
    "title",
    "style",
    "href",
    "name",
    "src",
    "alt",
    "width",
    "height",
    "colspan",
    "rowspan",
    "align",
    "valign",
    "border",
    "cellpadding",
    "cellspacing",
    "summary",
    "scope",
    "abbr",
    "headers",
    "span",
    "start",
    "type",
    "value",
    "cite",
    "datetime",
];

fn narrative(v: &Value, path: &str) -> Check {
    let Some(n) = v.as_object() else { return Err(format!("{path} must be a JSON object")) };
    match n.get("status").and_then(Value::as_str) {
        Some("generated" | "extensions" | "additional" | "empty") => {}
        _ => return Err(format!("{path}.status is required: generated, extensions, additional or empty")),
    }
    let div = n.get("div").and_then(Value::as_str).ok_or_else(|| format!("{path}.div is required"))?;
    xhtml(div, &format!("{path}.div"))
}

/// The narrative's XHTML: a `div` in the XHTML namespace, allowed elements and
/// attributes only, some text (txt-1, txt-2). Values are never quoted back.
fn xhtml(div: &str, path: &str) -> Check {
    let refuse = |why: &str| Err(format!("{path}: {why} (FHIR invariant txt-1)"));
    let trimmed = div.trim();
    if !trimmed.starts_with("<div") || !trimmed.ends_with("</div>") {
        return refuse("the narrative must be one <div xmlns=\"http://www.w3.org/1999/xhtml\"> element");
    }
    let mut rest = trimmed;
    let mut first = true;
    let mut text = false;
    while let Some(lt) = rest.find('<') {
        text |= !rest[..lt].trim().is_empty();
        rest = &rest[lt + 1..];
        let Some(gt) = rest.find('>') else { return refuse("a tag is not closed") };
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with(['!', '?']) {
            return refuse("comments, CDATA, doctypes and processing instructions are not accepted in a narrative");
        }
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let tag = tag.strip_suffix('/').unwrap_or(tag);
        let (name, attrs) = match tag.find(|c: char| c.is_whitespace()) {
            Some(i) => (&tag[..i], &tag[i..]),
            None => (tag, ""),
        };
        let name = name.to_ascii_lowercase();
        if !NARRATIVE_ELEMENTS.contains(&name.as_str()) {
            return refuse(
                "an element that is not basic formatting (such as script, style, iframe, object or form) is not \
                 accepted in a narrative",
            );
        }
        let attrs =
            attributes(attrs).ok_or_else(|| format!("{path}: an attribute is malformed (FHIR invariant txt-1)"))?;
        for (k, v) in &attrs {
            let k = k.to_ascii_lowercase();
            if !NARRATIVE_ATTRIBUTES.contains(&k.as_str()) {
                return refuse(
                    "an attribute that is not a formatting attribute (such as an on... event handler) is not accepted",
                );
            }
            let value: String = v.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
            let value = value.to_ascii_lowercase();
            if matches!(k.as_str(), "href" | "src" | "cite")
                && ["javascript:", "vbscript:", "data:", "&#"].iter().any(|s| value.starts_with(s))
            {
                return refuse("a script or data URL is not accepted in a narrative");
            }
            if k == "style"
                && ["expression", "url(", "javascript", "@import", "behavior"].iter().any(|s| value.contains(s))
            {
                return refuse("a style that loads or runs anything is not accepted in a narrative");
            }
        }
        if first {
            first = false;
            if name != "div" || !attrs.iter().any(|(k, v)| k == "xmlns" && v == "http://www.w3.org/1999/xhtml") {
                return refuse(
                    "the narrative's div must be in the XHTML namespace: <div xmlns=\"http://www.w3.org/1999/xhtml\">",
                );
            }
        }
    }
    text |= !rest.trim().is_empty();
    let has_image = trimmed.contains("<img");
    if !text && !has_image {
        return Err(format!("{path}: the narrative must have some content (FHIR invariant txt-2)"));
    }
    Ok(())
}

/// `k="v"` pairs of a tag, or `None` if they do not parse.
fn attributes(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        s = s[eq + 1..].trim_start();
        let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = s[1..].find(quote)?;
        out.push((key.to_owned(), s[1..=end].to_owned()));
        s = &s[end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::ResourceType;

    fn refused(rt: ResourceType, v: Value) -> String {
        super::check(rt, v.as_object().unwrap()).expect_err(&v.to_string())
    }

    fn accepted(rt: ResourceType, v: Value) {
        super::check(rt, v.as_object().unwrap()).unwrap_or_else(|e| panic!("{v}: {e}"));
    }

    #[test]
    fn empty_elements_are_refused_with_their_path() {
        let rt = ResourceType::DocumentReference;
        for (v, path) in [
            (json!({"relatesTo": [{}]}), "DocumentReference.relatesTo[0]"),
            (json!({"category": []}), "DocumentReference.category"),
            (json!({"description": ""}), "DocumentReference.description"),
            (json!({"description": null}), "DocumentReference.description"),
            (json!({"context": {"period": {}}}), "DocumentReference.context.period"),
            (json!({"_date": {}}), "DocumentReference._date"),
        ] {
            let e = refused(rt, v.clone());
            assert!(e.starts_with(path) && e.contains("ele-1"), "{v}: {e}");
        }
        accepted(
            ResourceType::Patient,
            json!({"name": [{"given": ["A", null], "_given": [null, {"extension": [{"url": "u", "valueString": "x"}]}]}]}),
        );
        assert!(refused(ResourceType::Patient, json!({"name": [{"given": ["A", null]}]})).contains("ele-1"));
    }

    #[test]
    fn extensions_need_a_url_and_one_of_value_or_extensions() {
        let rt = ResourceType::Encounter;
        for v in [
            json!({"extension": [{"valueString": "x"}]}),
            json!({"extension": [{"url": "u"}]}),
            json!({"extension": [{"url": "u", "valueString": "x", "extension": [{"url": "v", "valueCode": "c"}]}]}),
            json!({"extension": [{"url": "u", "valueString": "x", "valueCode": "c"}]}),
            json!({"modifierExtension": [{"url": "u"}]}),
            json!({"class": {"extension": [{"url": "u"}]}}),
        ] {
            let e = refused(rt, v.clone());
            assert!(e.contains("extension") || e.contains("Extension"), "{v}: {e}");
        }
        accepted(rt, json!({"extension": [{"url": "u", "extension": [{"url": "v", "valueCode": "c"}]}]}));
    }

    #[test]
    fn narratives_are_basic_xhtml_only() {
        let with = |div: &str| json!({"text": {"status": "generated", "div": div}});
        let rt = ResourceType::DocumentReference;
        accepted(rt, with("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Session <b>one</b></p><br/></div>"));
        for div in [
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><SCRIPT src=\"x\"></SCRIPT>x</div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick=\"alert(1)\">x</p></div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"javascript:alert(1)\">x</a></div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\" JaVa\tScript:alert(1)\">x</a></div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><iframe src=\"https://x\"></iframe>x</div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p style=\"background:url(https://x)\">x</p></div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><!-- x --><p>x</p></div>",
            "<div><p>no namespace</p></div>",
            "<p>not a div</p>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">   </div>",
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p",
        ] {
            let e = refused(rt, with(div));
            assert!(e.starts_with("DocumentReference.text.div") && e.contains("txt-"), "{div}: {e}");
            assert!(!e.contains("alert"), "{e}");
        }
        assert!(
            refused(rt, json!({"text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}))
                .contains("status")
        );
    }

    #[test]
    fn contact_points_attachments_references_and_periods() {
        let e =
            refused(ResourceType::Patient, json!({"telecom": [{"system": "email", "value": "a@b"}, {"value": "040"}]}));
        assert!(e.starts_with("Patient.telecom[1]") && e.contains("cpt-2"), "{e}");
        accepted(ResourceType::Patient, json!({"telecom": [{"system": "phone", "value": "040"}]}));
        let att = |a: Value| json!({"content": [{"attachment": a}]});
        let rt = ResourceType::DocumentReference;
        assert!(refused(rt, att(json!({"data": "aGk="}))).contains("att-1"));
        for url in ["notes/1.pdf", "/x", "javascript:alert(1)", "data:text/html,x", "https://x/a b"] {
            let e = refused(rt, att(json!({"contentType": "application/pdf", "url": url})));
            assert!(e.starts_with("DocumentReference.content[0].attachment.url"), "{url}: {e}");
        }
        accepted(rt, att(json!({"contentType": "application/pdf", "url": "https://docs.example/1.pdf"})));
        accepted(rt, att(json!({"contentType": "application/pdf", "url": "urn:uuid:0f2d"})));
        assert!(refused(rt, json!({"subject": {"reference": "#p1"}})).contains("ref-1"));
        let e = refused(ResourceType::Encounter, json!({"period": {"start": "2026-02-01", "end": "2026-01-01"}}));
        assert!(e.contains("per-1"), "{e}");
    }

    #[test]
    fn appointments_and_patient_contacts() {
        let rt = ResourceType::Appointment;
        let e = refused(rt, json!({"status": "booked"}));
        assert!(e.contains("app-3"), "{e}");
        assert!(refused(rt, json!({"status": "booked", "start": "2026-01-01T10:00:00Z"})).contains("app-2"));
        accepted(rt, json!({"status": "proposed"}));
        accepted(rt, json!({"status": "booked", "start": "2026-01-01T10:00:00Z", "end": "2026-01-01T11:00:00Z"}));
        let e = refused(
            rt,
            json!({"status": "booked", "start": "2026-01-01T10:00:00Z", "end": "2026-01-01T11:00:00Z",
                   "cancelationReason": {"coding": [{"code": "pat"}]}}),
        );
        assert!(e.contains("app-4"), "{e}");
        let e = refused(ResourceType::Patient, json!({"contact": [{"gender": "female"}]}));
        assert!(e.contains("pat-1"), "{e}");
    }
}
