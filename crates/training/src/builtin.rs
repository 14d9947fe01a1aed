//! The pack compiled into the binary: `training/pack.toml` and its pages in
//! the repository. Opening an instance brings its modules into the database
//! where it holds an older version (or none); an imported pack with a newer
//! version of a module wins over it.

use crate::pack::{Pack, PackError, parse_pack};

/// The built-in pack's text.
pub const BUILT_IN_PACK: &str = include_str!("../../../training/pack.toml");

/// The pages the built-in pack names (`page_file`), compiled in.
const PAGES: &[(&str, &str)] = &[
    ("phishing.en.md", include_str!("../../../training/phishing.en.md")),
    ("phishing.fi.md", include_str!("../../../training/phishing.fi.md")),
    ("passwords.en.md", include_str!("../../../training/passwords.en.md")),
    ("passwords.fi.md", include_str!("../../../training/passwords.fi.md")),
    ("patient-data.en.md", include_str!("../../../training/patient-data.en.md")),
    ("patient-data.fi.md", include_str!("../../../training/patient-data.fi.md")),
    ("break-glass.en.md", include_str!("../../../training/break-glass.en.md")),
    ("break-glass.fi.md", include_str!("../../../training/break-glass.fi.md")),
    ("incidents.en.md", include_str!("../../../training/incidents.en.md")),
    ("incidents.fi.md", include_str!("../../../training/incidents.fi.md")),
    ("vastaamo.en.md", include_str!("../../../training/vastaamo.en.md")),
    ("vastaamo.fi.md", include_str!("../../../training/vastaamo.fi.md")),
];

/// The built-in pack, checked as an imported one is.
pub fn built_in_pack() -> Result<Pack, PackError> {
    parse_pack(BUILT_IN_PACK, |name| {
        PAGES.iter().find(|(n, _)| *n == name).map(|(_, t)| (*t).to_owned()).ok_or_else(|| "not compiled in".into())
    })
}

#[cfg(test)]
mod tests {
    use confidant_policy::Role;

    use super::*;

    #[test]
    fn the_built_in_pack_is_valid_and_covers_every_staff_role() {
        let pack = built_in_pack().unwrap();
        let keys: Vec<&str> = pack.modules.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["phishing", "passwords", "patient-data", "break-glass", "incidents", "vastaamo"]);
        for role in Role::ALL {
            let n = pack.modules.iter().filter(|m| m.is_for(role)).count();
            assert_eq!(n > 0, role.is_staff(), "{role}: {n}");
        }
        for m in &pack.modules {
            assert!((3..=5).contains(&m.questions.len()), "{}: 3–5 questions", m.key);
            assert!(m.page.en.len() > 600 && m.page.fi.len() > 600, "{}: a real page in both languages", m.key);
            // Rendered, every page has headings and no raw markup left over.
            for page in [&m.page.en, &m.page.fi] {
                let html = crate::render_markdown(page);
                assert!(html.contains("<h2>") && !html.contains("&lt;"), "{}: {html}", m.key);
            }
        }
        // Every file shipped is used.
        for (name, _) in PAGES {
            assert!(BUILT_IN_PACK.contains(name), "{name}");
        }
    }
}
