//! Note templates and sectioned notes.
//!
//! A template is a form: a name and sections, each with a title and a short
//! prompt, in English and Finnish. Five are built in (SOAP, DAP, BIRP, intake
//! assessment, risk assessment); the clinic defines more (admins, audited;
//! each change a new version, old versions kept). Templates are not PHI and
//! are stored in the clear (`note_templates`).
//!
//! A note written with a template stays a DocumentReference (the labels,
//! PSYTHPN, sign and lock, addenda and the access log all rest on it): each
//! section is one `content` attachment, `text/plain`, with the section's
//! title in `title` and its key in the attachment's `id`, sealed with the
//! rest of the note. The note names its template and version in the
//! extension [`TEMPLATE`] (`valueString` `id|version`). A section left empty
//! is left out; a note with nothing in any section is refused.

use base64::Engine as _;
use confidant_audit::{Action as AuditAction, Outcome};
use confidant_policy::{self as policy, Principal, records::Seen};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result};

/// The extension naming the template (and version) a note was written with: `valueString` `id|version`.
pub const TEMPLATE: &str = "urn:confidant:template";
/// The longest template name, section title and prompt (characters), and the most sections.
pub const MAX_NAME: usize = 100;
pub const MAX_PROMPT: usize = 500;
pub const MAX_SECTIONS: usize = 30;

/// A text in both languages of the interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bilingual {
    pub en: String,
    pub fi: String,
}

impl Bilingual {
    /// The same text in both (a clinic-defined template is written in the clinic's language).
    fn both(s: &str) -> Bilingual {
        Bilingual { en: s.to_owned(), fi: s.to_owned() }
    }

    /// The text in `lang` (`"fi"` or anything else for English).
    pub fn get(&self, lang: &str) -> &str {
        if lang == "fi" { &self.fi } else { &self.en }
    }
}

/// One section of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSection {
    /// Stable within the template (`subjective`, `s3`): the attachment's `id`.
    pub key: String,
    pub title: Bilingual,
    pub prompt: Bilingual,
}

/// A note template, one version of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub version: i64,
    pub name: Bilingual,
    pub sections: Vec<TemplateSection>,
    /// Built into Confidant (cannot be changed), else the clinic's.
    #[serde(skip)]
    pub built_in: bool,
}

impl Template {
    /// `id|version`, as the note's [`TEMPLATE`] extension holds it.
    pub fn reference(&self) -> String {
        format!("{}|{}", self.id, self.version)
    }
}

/// A clinic-defined template as the admin typed it: a name and, per
/// section, a title and a prompt.
#[derive(Debug, Clone, Default)]
pub struct TemplateDraft {
    pub name: String,
    pub sections: Vec<(String, String)>,
}

type Built = (
    &'static str,
    (&'static str, &'static str),
    &'static [((&'static str, &'static str), (&'static str, &'static str), &'static str)],
);

/// The built-in templates: id, name (en, fi), sections ((title en, fi), (prompt en, fi), key).
const BUILT_IN: &[Built] = &[
    (
        "soap",
        ("SOAP", "SOAP"),
        &[
            (
                ("Subjective", "Subjektiivinen"),
                (
                    "What the patient reports: concerns, mood, events since the last session.",
                    "Mitä potilas kertoo: huolet, mieliala, tapahtumat edellisen käynnin jälkeen.",
                ),
                "subjective",
            ),
            (
                ("Objective", "Objektiivinen"),
                (
                    "What you observed: appearance, behaviour, affect, measures.",
                    "Mitä havaitsit: olemus, käytös, affekti, mittarit.",
                ),
                "objective",
            ),
            (
                ("Assessment", "Arvio"),
                (
                    "Your clinical impression and progress towards the goals.",
                    "Kliininen arviosi ja edistyminen kohti tavoitteita.",
                ),
                "assessment",
            ),
            (
                ("Plan", "Suunnitelma"),
                (
                    "Next steps: interventions, homework, next session.",
                    "Seuraavat askeleet: interventiot, kotitehtävät, seuraava käynti.",
                ),
                "plan",
            ),
        ],
    ),
    (
        "dap",
        ("DAP", "DAP"),
        &[
            (
                ("Data", "Tiedot"),
                ("What was said and observed in the session.", "Mitä käynnillä sanottiin ja havaittiin."),
                "data",
            ),
            (
                ("Assessment", "Arvio"),
                ("Your interpretation and the patient's progress.", "Tulkintasi ja potilaan edistyminen."),
                "assessment",
            ),
            (("Plan", "Suunnitelma"), ("What happens next.", "Mitä tehdään seuraavaksi."), "plan"),
        ],
    ),
    (
        "birp",
        ("BIRP", "BIRP"),
        &[
            (
                ("Behaviour", "Käyttäytyminen"),
                ("The patient's presentation and what they reported.", "Potilaan olemus ja mitä hän kertoi."),
                "behaviour",
            ),
            (("Intervention", "Interventio"), ("What you did in the session.", "Mitä teit käynnillä."), "intervention"),
            (("Response", "Vaste"), ("How the patient responded.", "Miten potilas reagoi."), "response"),
            (("Plan", "Suunnitelma"), ("What happens next.", "Mitä tehdään seuraavaksi."), "plan"),
        ],
    ),
    (
        "intake",
        ("Intake assessment", "Alkuarvio"),
        &[
            (
                ("Reason for referral", "Lähetteen syy"),
                ("Who referred the patient and why.", "Kuka potilaan lähetti ja miksi."),
                "referral",
            ),
            (
                ("Presenting problem", "Nykyinen ongelma"),
                ("The problem in the patient's words; onset and course.", "Ongelma potilaan sanoin; alku ja kulku."),
                "presenting",
            ),
            (
                ("History", "Tausta"),
                (
                    "Psychiatric, medical, family and social history.",
                    "Psykiatrinen, somaattinen, perhe- ja sosiaalinen tausta.",
                ),
                "history",
            ),
            (
                ("Mental status", "Psyykkinen tila"),
                (
                    "Appearance, mood, affect, thought, cognition, insight.",
                    "Olemus, mieliala, affekti, ajattelu, kognitio, sairaudentunto.",
                ),
                "mental_status",
            ),
            (
                ("Risk", "Riskit"),
                ("Risk to self and others (see the risk assessment).", "Riski itselle ja muille (ks. riskiarvio)."),
                "risk",
            ),
            (
                ("Goals", "Tavoitteet"),
                ("What the patient wants from therapy.", "Mitä potilas toivoo terapialta."),
                "goals",
            ),
            (
                ("Plan", "Suunnitelma"),
                ("Treatment plan and next steps.", "Hoitosuunnitelma ja seuraavat askeleet."),
                "plan",
            ),
        ],
    ),
    (
        "risk",
        ("Risk assessment", "Riskiarvio"),
        &[
            (
                ("Ideation", "Ajatukset"),
                (
                    "Thoughts of self-harm or suicide: frequency, intensity.",
                    "Itsetuhoiset tai itsemurha-ajatukset: tiheys, voimakkuus.",
                ),
                "ideation",
            ),
            (
                ("Plan and intent", "Suunnitelma ja aikomus"),
                ("Any plan, preparation or intent.", "Suunnitelma, valmistelut tai aikomus."),
                "plan_intent",
            ),
            (
                ("Means", "Keinot"),
                ("Access to means; what was agreed about them.", "Pääsy keinoihin; mitä niistä sovittiin."),
                "means",
            ),
            (
                ("History", "Aiemmat"),
                ("Earlier attempts or self-harm.", "Aiemmat yritykset tai itsetuhoisuus."),
                "history",
            ),
            (
                ("Protective factors", "Suojaavat tekijät"),
                ("People, reasons and resources that protect.", "Suojaavat ihmiset, syyt ja voimavarat."),
                "protective",
            ),
            (
                ("Risk level", "Riskitaso"),
                ("Low, moderate or high, and why.", "Matala, kohtalainen vai korkea, ja miksi."),
                "level",
            ),
            (
                ("Safety plan", "Turvasuunnitelma"),
                ("Agreed steps, contacts and follow-up.", "Sovitut askeleet, yhteystiedot ja seuranta."),
                "safety_plan",
            ),
        ],
    ),
];

/// The built-in templates (version 1 each).
pub fn built_in_templates() -> Vec<Template> {
    BUILT_IN
        .iter()
        .map(|(id, (en, fi), sections)| Template {
            id: (*id).to_owned(),
            version: 1,
            name: Bilingual { en: (*en).to_owned(), fi: (*fi).to_owned() },
            sections: sections
                .iter()
                .map(|((ten, tfi), (pen, pfi), key)| TemplateSection {
                    key: (*key).to_owned(),
                    title: Bilingual { en: (*ten).to_owned(), fi: (*tfi).to_owned() },
                    prompt: Bilingual { en: (*pen).to_owned(), fi: (*pfi).to_owned() },
                })
                .collect(),
            built_in: true,
        })
        .collect()
}

/// A built-in template by id.
pub fn built_in_template(id: &str) -> Option<Template> {
    built_in_templates().into_iter().find(|t| t.id == id)
}

/// The `id|version` a note names in its [`TEMPLATE`] extension, if any.
pub fn template_of(note: &Value) -> Option<(String, i64)> {
    let v =
        note.get("extension")?.as_array()?.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(TEMPLATE))?;
    let (id, version) = v.get("valueString")?.as_str()?.split_once('|')?;
    Some((id.to_owned(), version.parse().ok()?))
}

/// One section of a note as stored: its key and title (if it has them) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSection {
    pub key: Option<String>,
    pub title: Option<String>,
    pub text: String,
}

/// The sections of a note: one per inline text attachment (a plain note has one, untitled).
pub fn note_sections(note: &Value) -> Vec<NoteSection> {
    let content = note.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    content
        .iter()
        .filter_map(|c| c.get("attachment"))
        .map(|a| {
            let data = a.get("data").and_then(Value::as_str).unwrap_or("");
            let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
            NoteSection {
                key: a.get("id").and_then(Value::as_str).map(str::to_owned),
                title: a.get("title").and_then(Value::as_str).map(str::to_owned),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            }
        })
        .collect()
}

/// A note's `content` for `template` with `answers` (section key → text),
/// section titles in `lang`: one titled attachment per section that has
/// text, in the template's order (empty sections left out; keys the
/// template does not have ignored). Empty if every section is.
pub fn sectioned_content(template: &Template, answers: &[(String, String)], lang: &str) -> Vec<Value> {
    template
        .sections
        .iter()
        .filter_map(|s| {
            let text = answers.iter().find(|(k, _)| *k == s.key).map(|(_, t)| t.as_str()).unwrap_or("");
            (!text.trim().is_empty()).then(|| {
                json!({"attachment": {
                    "id": s.key, "title": s.title.get(lang), "contentType": "text/plain; charset=utf-8",
                    "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                }})
            })
        })
        .collect()
}

/// Set (or, with `None`, remove) the note's [`TEMPLATE`] extension.
pub fn set_template(note: &mut Value, template: Option<&Template>) {
    let Value::Object(m) = note else { return };
    let mut ext: Vec<Value> = m.get("extension").and_then(Value::as_array).cloned().unwrap_or_default();
    ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(TEMPLATE));
    if let Some(t) = template {
        ext.push(json!({"url": TEMPLATE, "valueString": t.reference()}));
    }
    if ext.is_empty() {
        m.remove("extension");
    } else {
        m.insert("extension".into(), Value::Array(ext));
    }
}

/// Why a template draft is refused (nothing is saved), or its clean form.
fn checked_draft(d: &TemplateDraft) -> Result<(String, Vec<(String, String)>)> {
    let invalid = |m: String| Err(RecordsError::Invalid(m));
    let clean = |s: &str| s.trim().to_owned();
    let bad_chars = |s: &str| s.chars().any(char::is_control);
    let name = clean(&d.name);
    if name.is_empty() {
        return invalid("name: give the template a name".into());
    }
    if name.chars().count() > MAX_NAME || bad_chars(&name) {
        return invalid(format!("name: at most {MAX_NAME} characters, on one line"));
    }
    let sections: Vec<(String, String)> =
        d.sections.iter().map(|(t, p)| (clean(t), clean(p))).filter(|(t, p)| !(t.is_empty() && p.is_empty())).collect();
    if sections.is_empty() {
        return invalid("sections: give at least one section".into());
    }
    if sections.len() > MAX_SECTIONS {
        return invalid(format!("sections: at most {MAX_SECTIONS}"));
    }
    for (i, (t, p)) in sections.iter().enumerate() {
        let n = i + 1;
        if t.is_empty() {
            return invalid(format!("section {n}: give it a title"));
        }
        if t.chars().count() > MAX_NAME || bad_chars(t) {
            return invalid(format!("section {n}: a title is at most {MAX_NAME} characters, on one line"));
        }
        if p.chars().count() > MAX_PROMPT || bad_chars(p) {
            return invalid(format!("section {n}: a prompt is at most {MAX_PROMPT} characters, on one line"));
        }
    }
    Ok((name, sections))
}

impl Records {
    /// Every template a note can be written with: the built-in ones, then the
    /// clinic's (their latest versions).
    pub async fn note_templates(&self, p: &Principal) -> Result<Vec<Template>> {
        policy::may_use_templates(p).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        let mut all = built_in_templates();
        for row in self.store.latest_templates().await? {
            all.push(Self::parse_template(&row)?);
        }
        Ok(all)
    }

    /// One template, the latest version or the one given (a note names the
    /// version it was written with; old versions are kept).
    pub async fn note_template(&self, p: &Principal, id: &str, version: Option<i64>) -> Result<Template> {
        policy::may_use_templates(p).map_err(|d| RecordsError::Forbidden(d.to_string()))?;
        if let Some(t) = built_in_template(id) {
            return match version {
                None | Some(1) => Ok(t),
                Some(_) => Err(RecordsError::NotFound(format!("template {id}"))),
            };
        }
        match self.store.template_version(id, version).await? {
            Some(row) => Self::parse_template(&row),
            None => Err(RecordsError::NotFound(format!("template {id}"))),
        }
    }

    fn parse_template(row: &confidant_store::TemplateRow) -> Result<Template> {
        let mut t: Template = serde_json::from_str(&row.definition).map_err(|_| RecordsError::Integrity)?;
        t.id.clone_from(&row.id);
        t.version = row.version;
        Ok(t)
    }

    /// Create a clinic template (`id` `None`) or save the next version of one
    /// (`expected`: the version the change was made from), audited as a
    /// create or update of `NoteTemplate/{id}`. Admins only; a built-in
    /// template cannot be changed. Refused whole if any part is invalid.
    pub async fn save_note_template(
        &self,
        p: &Principal,
        id: Option<&str>,
        expected: Option<i64>,
        draft: &TemplateDraft,
    ) -> Result<Template> {
        let action = if id.is_some() { AuditAction::Update } else { AuditAction::Create };
        if let Err(d) = policy::may_manage_templates(p) {
            let mut e = self.entry(p, action, Outcome::Denied, None, Seen::Yes);
            e.resource = Some("NoteTemplate".into());
            if let Err(err) = self.auditor.append(std::slice::from_ref(&e)).await {
                tracing::error!(error = %err, "audit append of a refused template change failed");
            }
            return Err(RecordsError::Forbidden(d.to_string()));
        }
        let (name, sections) = checked_draft(draft)?;
        let id = match id {
            Some(id) if built_in_template(id).is_some() => {
                return Err(RecordsError::Unprocessable("a built-in template cannot be changed".into()));
            }
            Some(id) => {
                if self.store.template_version(id, None).await?.is_none() {
                    return Err(RecordsError::NotFound(format!("template {id}")));
                }
                id.to_owned()
            }
            None => confidant_vault::random_id().map_err(RecordsError::Vault)?,
        };
        let mut template = Template {
            id: id.clone(),
            version: 0,
            name: Bilingual::both(&name),
            sections: sections
                .iter()
                .enumerate()
                .map(|(i, (t, pr))| TemplateSection {
                    key: format!("s{}", i + 1),
                    title: Bilingual::both(t),
                    prompt: Bilingual::both(pr),
                })
                .collect(),
            built_in: false,
        };
        let definition = serde_json::to_string(&template).map_err(|_| RecordsError::Integrity)?;
        let now = self.clock.now_millis();
        let audit = |version: i64| {
            let mut e = self.entry(p, action, Outcome::Success, None, Seen::Yes);
            e.resource = Some(format!("NoteTemplate/{id}"));
            e.version = Some(version);
            e.to_row()
        };
        let version = self.store.insert_template_version(&id, expected, &definition, now, &p.user_id, audit).await?;
        self.auditor.appended(1);
        template.version = version;
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_have_their_sections_in_both_languages() {
        let all = built_in_templates();
        let ids: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["soap", "dap", "birp", "intake", "risk"]);
        let soap = built_in_template("soap").unwrap();
        let titles: Vec<&str> = soap.sections.iter().map(|s| s.title.en.as_str()).collect();
        assert_eq!(titles, ["Subjective", "Objective", "Assessment", "Plan"]);
        for t in &all {
            for s in &t.sections {
                assert!(!s.title.fi.is_empty() && !s.prompt.fi.is_empty() && !s.prompt.en.is_empty(), "{}", s.key);
                assert!(t.sections.iter().filter(|o| o.key == s.key).count() == 1, "{}: keys unique", t.id);
            }
        }
    }

    #[test]
    fn sections_round_trip_and_empty_ones_are_left_out() {
        let soap = built_in_template("soap").unwrap();
        let answers = vec![
            ("subjective".to_owned(), "feels better".to_owned()),
            ("plan".to_owned(), "  ".to_owned()),
            ("x".to_owned(), "ignored".to_owned()),
        ];
        let mut note = json!({"content": sectioned_content(&soap, &answers, "fi")});
        set_template(&mut note, Some(&soap));
        let sections = note_sections(&note);
        assert_eq!(
            sections,
            [NoteSection {
                key: Some("subjective".into()),
                title: Some("Subjektiivinen".into()),
                text: "feels better".into()
            }]
        );
        assert_eq!(template_of(&note), Some(("soap".into(), 1)));
        set_template(&mut note, None);
        assert_eq!(template_of(&note), None);
        assert!(note.get("extension").is_none());
        assert!(sectioned_content(&soap, &[], "en").is_empty());
    }

    #[test]
    fn template_drafts_are_checked_whole() {
        let ok = TemplateDraft {
            name: " Couples ".into(),
            sections: vec![("Each partner".into(), "".into()), ("".into(), "".into())],
        };
        assert_eq!(
            checked_draft(&ok).unwrap(),
            ("Couples".to_owned(), vec![("Each partner".to_owned(), String::new())])
        );
        let bad = [
            TemplateDraft { name: "  ".into(), sections: vec![("A".into(), "".into())] },
            TemplateDraft { name: "N".into(), sections: vec![] },
            TemplateDraft { name: "N".into(), sections: vec![("A".into(), "p".into()); MAX_SECTIONS + 1] },
            TemplateDraft { name: "x".repeat(MAX_NAME + 1), sections: vec![("A".into(), "".into())] },
            TemplateDraft { name: "N".into(), sections: vec![("A".into(), "p".repeat(MAX_PROMPT + 1))] },
            TemplateDraft { name: "N".into(), sections: vec![("".into(), "prompt without a title".into())] },
            TemplateDraft { name: "N\u{0}".into(), sections: vec![("A".into(), "".into())] },
        ];
        for d in bad {
            assert!(checked_draft(&d).is_err(), "{d:?}");
        }
    }
}
