//! The module pack: a TOML file of modules, each with a key and a version.
//! A module's page is Markdown, embedded (`page.en = """..."""`) or in a
//! file next to the pack (`page_file.en = "phishing.en.md"`). The whole pack
//! is checked before anything is used: one bad field refuses all of it.
//!
//! ```toml
//! [[module]]
//! key = "phishing"
//! version = 1
//! roles = ["all"]              # or "clinician", "reception", "admin", "auditor"
//! pass_mark = 3                # correct answers needed
//! title = { en = "Phishing", fi = "Tietojenkalastelu" }
//! page_file = { en = "phishing.en.md", fi = "phishing.fi.md" }
//!
//! [[module.question]]
//! text = { en = "…", fi = "…" }
//! [[module.question.choice]]
//! text = { en = "…", fi = "…" }
//! correct = true
//! feedback = { en = "…", fi = "…" }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use confidant_policy::Role;
use serde::{Deserialize, Serialize};

/// The largest pack file read (pages included): a pack is a few dozen KiB.
pub const MAX_PACK_BYTES: usize = 1024 * 1024;
const MAX_PAGE_BYTES: usize = 64 * 1024;
const MAX_TEXT_BYTES: usize = 2000;
const MAX_MODULES: usize = 100;
const MAX_QUESTIONS: usize = 10;
const MAX_CHOICES: usize = 6;

/// Why a pack was refused. The message names the module and field, so an
/// administrator can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PackError(pub String);

fn bad(msg: impl Into<String>) -> PackError {
    PackError(msg.into())
}

/// A text in both languages of the pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub fi: String,
}

impl Text {
    /// The text in `lang` (`"fi"` or English).
    pub fn get(&self, lang: &str) -> &str {
        if lang == "fi" { &self.fi } else { &self.en }
    }
}

/// Whom a module is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleRole {
    /// Every staff member.
    All,
    Clinician,
    Reception,
    Admin,
    Auditor,
}

impl ModuleRole {
    pub fn covers(self, role: Role) -> bool {
        role.is_staff()
            && match self {
                ModuleRole::All => true,
                ModuleRole::Clinician => role == Role::Clinician,
                ModuleRole::Reception => role == Role::Reception,
                ModuleRole::Admin => role == Role::Admin,
                ModuleRole::Auditor => role == Role::Auditor,
            }
    }

    pub fn parse(s: &str) -> Option<ModuleRole> {
        [ModuleRole::All, ModuleRole::Clinician, ModuleRole::Reception, ModuleRole::Admin, ModuleRole::Auditor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModuleRole::All => "all",
            ModuleRole::Clinician => "clinician",
            ModuleRole::Reception => "reception",
            ModuleRole::Admin => "admin",
            ModuleRole::Auditor => "auditor",
        }
    }
}

/// One answer of a question, with what the trainee is told having chosen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub text: Text,
    #[serde(default)]
    pub correct: bool,
    pub feedback: Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub text: Text,
    #[serde(rename = "choice", default)]
    pub choices: Vec<Choice>,
}

/// One module, as stored and shown (pages embedded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub key: String,
    pub version: i64,
    pub roles: Vec<ModuleRole>,
    pub pass_mark: usize,
    pub title: Text,
    /// Markdown, rendered by [`crate::render_markdown`].
    pub page: Text,
    #[serde(rename = "question")]
    pub questions: Vec<Question>,
}

impl Module {
    /// Is this module required of `role`?
    pub fn is_for(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r.covers(role))
    }

    /// The roles as stored beside the module (`all`, `clinician,reception`).
    pub fn roles_text(&self) -> String {
        self.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Grade `answers` (question index → choice index). Every question must be
    /// answered once with one of its choices; anything else changes nothing.
    pub fn grade(&self, answers: &Answers) -> Result<Graded, PackError> {
        if answers.0.len() != self.questions.len() {
            return Err(bad("answer every question, once each"));
        }
        let mut results = Vec::with_capacity(self.questions.len());
        for (i, q) in self.questions.iter().enumerate() {
            let chosen = *answers.0.get(&i).ok_or_else(|| bad("answer every question, once each"))?;
            let choice = q.choices.get(chosen).ok_or_else(|| bad("an answer is not one of the question's choices"))?;
            results.push(QuestionResult { question: i, chosen, correct: choice.correct });
        }
        let score = results.iter().filter(|r| r.correct).count();
        Ok(Graded { score, out_of: self.questions.len(), passed: score >= self.pass_mark, results })
    }
}

/// Answers to a module's questions: question index → choice index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(pub BTreeMap<usize, usize>);

impl Answers {
    /// From form fields `q0=2&q1=0…`: each name `q<n>`, each value a choice
    /// number; a repeated, unknown or malformed field is refused.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Answers, PackError> {
        let mut out = BTreeMap::new();
        for (name, value) in fields {
            let Some(n) = name.strip_prefix('q') else { continue };
            let parse = |s: &str| {
                (!s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse::<usize>().ok())
                    .flatten()
            };
            let (Some(q), Some(c)) = (parse(n), parse(value)) else {
                return Err(bad("an answer could not be read"));
            };
            if out.insert(q, c).is_some() {
                return Err(bad("a question was answered twice"));
            }
        }
        Ok(Answers(out))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuestionResult {
    pub question: usize,
    pub chosen: usize,
    pub correct: bool,
}

/// A graded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graded {
    pub score: usize,
    pub out_of: usize,
    pub passed: bool,
    pub results: Vec<QuestionResult>,
}

/// A checked pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub modules: Vec<Module>,
}

impl Pack {
    pub fn module(&self, key: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.key == key)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    #[serde(rename = "module", default)]
    modules: Vec<ModuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleFile {
    key: String,
    version: i64,
    roles: Vec<ModuleRole>,
    pass_mark: usize,
    title: Text,
    page: Option<Text>,
    page_file: Option<Text>,
    #[serde(rename = "question", default)]
    questions: Vec<Question>,
}

/// Is `key` a module key: 1–40 of a–z, 0–9 and `-`, starting with a letter?
pub fn valid_key(key: &str) -> bool {
    (1..=40).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_text(t: &Text, what: &str, max: usize) -> Result<(), PackError> {
    for (lang, s) in [("en", &t.en), ("fi", &t.fi)] {
        if s.trim().is_empty() {
            return Err(bad(format!("{what}: the {lang} text is empty")));
        }
        if s.len() > max {
            return Err(bad(format!("{what}: the {lang} text is longer than {max} bytes")));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(bad(format!("{what}: the {lang} text has a control character")));
        }
    }
    Ok(())
}

/// Where a page file's name may point: a plain file name next to the pack.
fn valid_file_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name.ends_with(".md")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parse and check a pack. `page_file(name)` reads a page named by
/// `page_file` (a file next to the pack); it is only ever asked for a plain
/// `*.md` file name, never a path.
pub fn parse_pack(text: &str, mut page_file: impl FnMut(&str) -> Result<String, String>) -> Result<Pack, PackError> {
    if text.len() > MAX_PACK_BYTES {
        return Err(bad(format!("the pack is larger than {MAX_PACK_BYTES} bytes")));
    }
    let file: PackFile = toml::from_str(text).map_err(|e| bad(format!("the pack is not valid TOML: {e}")))?;
    if file.modules.is_empty() {
        return Err(bad("the pack has no [[module]]"));
    }
    if file.modules.len() > MAX_MODULES {
        return Err(bad(format!("the pack has more than {MAX_MODULES} modules")));
    }
    let mut keys = BTreeSet::new();
    let mut modules = Vec::new();
    let mut total = text.len();
    for m in file.modules {
        if !valid_key(&m.key) {
            return Err(bad(format!(
                "module key {:?}: use 1–40 characters of a–z, 0–9 and '-', starting with a letter",
                m.key.chars().take(50).collect::<String>()
            )));
        }
        let k = m.key.clone();
        if !keys.insert(k.clone()) {
            return Err(bad(format!("module {k}: the key is in the pack twice")));
        }
        if !(1..=1_000_000).contains(&m.version) {
            return Err(bad(format!("module {k}: version must be a whole number from 1 to 1000000")));
        }
        if m.roles.is_empty() {
            return Err(bad(format!("module {k}: roles is empty (use [\"all\"] for every staff member)")));
        }
        check_text(&m.title, &format!("module {k}: title"), 200)?;
        let page = match (m.page, m.page_file) {
            (Some(p), None) => p,
            (None, Some(f)) => {
                let mut read = |name: &str| -> Result<String, PackError> {
                    if !valid_file_name(name) {
                        return Err(bad(format!(
                            "module {k}: page_file {name:?} must be a file name ending in .md next to the pack (no folders)"
                        )));
                    }
                    page_file(name).map_err(|e| bad(format!("module {k}: page_file {name}: {e}")))
                };
                Text { en: read(&f.en)?, fi: read(&f.fi)? }
            }
            _ => return Err(bad(format!("module {k}: give either page or page_file, not both or neither"))),
        };
        check_text(&page, &format!("module {k}: page"), MAX_PAGE_BYTES)?;
        total += page.en.len() + page.fi.len();
        if total > MAX_PACK_BYTES {
            return Err(bad(format!("the pack with its pages is larger than {MAX_PACK_BYTES} bytes")));
        }
        if m.questions.is_empty() || m.questions.len() > MAX_QUESTIONS {
            return Err(bad(format!("module {k}: give 1 to {MAX_QUESTIONS} questions")));
        }
        for (i, q) in m.questions.iter().enumerate() {
            let at = format!("module {k}: question {}", i + 1);
            check_text(&q.text, &at, MAX_TEXT_BYTES)?;
            if q.choices.len() < 2 || q.choices.len() > MAX_CHOICES {
                return Err(bad(format!("{at}: give 2 to {MAX_CHOICES} choices")));
            }
            if q.choices.iter().filter(|c| c.correct).count() != 1 {
                return Err(bad(format!("{at}: exactly one choice must have correct = true")));
            }
            for (j, c) in q.choices.iter().enumerate() {
                check_text(&c.text, &format!("{at}, choice {}", j + 1), MAX_TEXT_BYTES)?;
                check_text(&c.feedback, &format!("{at}, choice {} feedback", j + 1), MAX_TEXT_BYTES)?;
            }
        }
        if m.pass_mark == 0 || m.pass_mark > m.questions.len() {
            return Err(bad(format!(
                "module {k}: pass_mark must be from 1 to the number of questions ({})",
                m.questions.len()
            )));
        }
        modules.push(Module {
            key: m.key,
            version: m.version,
            roles: m.roles,
            pass_mark: m.pass_mark,
            title: m.title,
            page,
            questions: m.questions,
        });
    }
    Ok(Pack { modules })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r##"
[[module]]
key = "demo"
version = 2
roles = ["clinician"]
pass_mark = 1
title = { en = "Demo", fi = "Demo" }
page = { en = "# Hi", fi = "# Hei" }
[[module.question]]
text = { en = "Q?", fi = "K?" }
[[module.question.choice]]
text = { en = "yes", fi = "kyllä" }
correct = true
feedback = { en = "Right.", fi = "Oikein." }
[[module.question.choice]]
text = { en = "no", fi = "ei" }
feedback = { en = "No.", fi = "Ei." }
"##;

    fn no_files(_: &str) -> Result<String, String> {
        Err("no files".into())
    }

    #[test]
    fn a_good_pack_parses_and_grades() {
        let p = parse_pack(ONE, no_files).unwrap();
        let m = p.module("demo").unwrap();
        assert_eq!((m.version, m.pass_mark), (2, 1));
        assert!(m.is_for(Role::Clinician) && !m.is_for(Role::Reception) && !m.is_for(Role::Patient));
        let a = Answers::from_fields([("q0", "0"), ("csrf", "x")]).unwrap();
        assert!(m.grade(&a).unwrap().passed);
        let a = Answers::from_fields([("q0", "1")]).unwrap();
        let g = m.grade(&a).unwrap();
        assert!(!g.passed && g.score == 0 && !g.results[0].correct);
        for bad_answers in [vec![("q0", "2")], vec![("q1", "0")], vec![]] {
            assert!(m.grade(&Answers::from_fields(bad_answers).unwrap()).is_err());
        }
        for hostile in
            [vec![("q0", "0"), ("q0", "1")], vec![("q0", "-1")], vec![("q0", "99999999999")], vec![("qx", "0")]]
        {
            assert!(Answers::from_fields(hostile).is_err());
        }
    }

    #[test]
    fn every_bad_field_is_refused_with_its_module_named() {
        let cases = [
            (ONE.replace("key = \"demo\"", "key = \"Demo!\""), "module key"),
            (ONE.replace("version = 2", "version = 0"), "version"),
            (ONE.replace("roles = [\"clinician\"]", "roles = []"), "roles"),
            (ONE.replace("roles = [\"clinician\"]", "roles = [\"janitor\"]"), "not valid TOML"),
            (ONE.replace("pass_mark = 1", "pass_mark = 2"), "pass_mark"),
            (ONE.replace("fi = \"Demo\"", "fi = \" \""), "title: the fi text is empty"),
            (ONE.replace("correct = true", "correct = false"), "exactly one"),
            (ONE.replace("page = { en = \"# Hi\", fi = \"# Hei\" }", ""), "either page or page_file"),
            (ONE.replace("page = {", "page_file = { en = \"../etc/passwd\", fi = \"a.md\" }\nx = {"), "not valid TOML"),
            (format!("{ONE}\nunknown = 1"), "not valid TOML"),
            (format!("{ONE}{}", &ONE[ONE.find("[[module]]").unwrap()..]), "twice"),
            ("".to_owned(), "no [[module]]"),
        ];
        for (text, expected) in cases {
            let e = parse_pack(&text, no_files).unwrap_err().0;
            assert!(e.contains(expected), "{expected:?} in {e:?}");
        }
        let traversal = ONE.replace("page = {", "page_file = {").replace("\"# Hi\"", "\"../secret.md\"");
        let e = parse_pack(&traversal, |_| Ok("never read".into())).unwrap_err().0;
        assert!(e.contains("no folders"), "{e}");
        let huge = format!("{ONE}{}", " ".repeat(MAX_PACK_BYTES));
        assert!(parse_pack(&huge, no_files).unwrap_err().0.contains("larger"));
    }
}
