//! Free text people type that others read: a break-glass reason is shown to
//! the patient and to auditors. Characters that cannot be seen, or that
//! reorder what is seen, are removed before it is stored and again before it
//! is shown, so that a reason of zero-width or bidi-control characters
//! counts as no reason, and a stored one cannot disguise itself on a page
//! (Unicode Technical Report #36, "Unicode Security Considerations", §2.2 and
//! §3.5; CVE-2021-42574, "Trojan Source").

/// Whether `c` is invisible or changes how the text around it is shown:
/// control characters (C0, DEL, C1), format characters (zero-width space,
/// joiners, soft hyphen, bidi embeddings, overrides, isolates and marks,
/// byte-order mark, tags, interlinear annotation) and the fillers and
/// variation selectors that render as nothing.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// `text` as people will see it: line breaks, tabs and other white space
/// become single spaces, invisible and bidi-control characters are removed,
/// and the ends are trimmed.
pub fn visible_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else if !is_invisible(c) {
            out.push(c);
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// How many characters of `text` can be seen (not white space, not invisible).
pub fn visible_len(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace() && !is_invisible(*c)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_bidi_characters_go() {
        let zero_width = "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}".repeat(4);
        assert_eq!(visible_text(&zero_width), "");
        assert_eq!(visible_len(&zero_width), 0);
        let bidi = "\u{202E}\u{2066}\u{2067}\u{2068}\u{2069}\u{200E}\u{200F}\u{061C}".repeat(3);
        assert_eq!(visible_text(&bidi), "");
        // Trojan Source: an override that shows "urgent" for "tnegru".
        assert_eq!(visible_text("see \u{202E}tnegru\u{202C} now"), "see tnegru now");
        assert_eq!(visible_text("  line one\r\n\tline\u{0}two \u{7}\u{85} "), "line one linetwo");
        assert_eq!(visible_len("a b\u{200B}c\u{E0041}"), 3);
        // Letters of every script stay, with their accents.
        assert_eq!(visible_text("Äkillinen kriisi – 患者"), "Äkillinen kriisi – 患者");
    }
}
