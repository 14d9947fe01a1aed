//! A small, safe Markdown renderer for training pages: headings (`#`–`###`),
//! paragraphs, bullet and numbered lists, block quotes, `**strong**`,
//! `*emphasis*`, `` `code` `` and `[links](https://…)`. Every character of
//! the source is HTML-escaped; the only tags in the output are the ones
//! written here, so raw HTML in a pack shows as text. A link's target must be
//! `http(s)://` or relative (`/training`, `page.html`); any other (such as
//! `javascript:` or `data:`) is shown as plain text.
//!
//! (pulldown-cmark is not in this machine's package lists; a pack's pages need
//! only this subset.)

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// May a link go there? `http(s)://…` or a relative reference without a scheme.
fn safe_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if url.is_empty() || url.len() > 500 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return true;
    }
    if url.starts_with("//") || url.starts_with('\\') {
        return false;
    }
    // Relative: no scheme (a ':' before any '/', '?' or '#').
    let head = url.split(['/', '?', '#']).next().unwrap_or("");
    !head.contains(':')
}

/// Inline markup of one block's text.
fn inline(s: &str, out: &mut String) {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut text = String::new();
    let flush = |text: &mut String, out: &mut String| {
        escape(text, out);
        text.clear();
    };
    let find = |from: usize, pat: &[char]| -> Option<usize> {
        (from..chars.len().saturating_sub(pat.len() - 1)).find(|&j| chars[j..j + pat.len()] == *pat)
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '`'
            && let Some(end) = find(i + 1, &['`'])
        {
            flush(&mut text, out);
            out.push_str("<code>");
            escape(&chars[i + 1..end].iter().collect::<String>(), out);
            out.push_str("</code>");
            i = end + 1;
            continue;
        }
        if c == '*'
            && chars.get(i + 1) == Some(&'*')
            && let Some(end) = find(i + 2, &['*', '*']).filter(|&e| e > i + 2)
        {
            flush(&mut text, out);
            out.push_str("<strong>");
            inline(&chars[i + 2..end].iter().collect::<String>(), out);
            out.push_str("</strong>");
            i = end + 2;
            continue;
        }
        if (c == '*' || c == '_')
            && chars.get(i + 1).is_some_and(|n| !n.is_whitespace())
            && (i == 0 || !chars[i - 1].is_alphanumeric())
            && let Some(end) = find(i + 1, &[c]).filter(|&e| e > i + 1)
        {
            flush(&mut text, out);
            out.push_str("<em>");
            inline(&chars[i + 1..end].iter().collect::<String>(), out);
            out.push_str("</em>");
            i = end + 1;
            continue;
        }
        if c == '['
            && let Some(close) = find(i + 1, &[']', '('])
            && let Some(end) = find(close + 2, &[')'])
        {
            let label: String = chars[i + 1..close].iter().collect();
            let url: String = chars[close + 2..end].iter().collect();
            if safe_url(&url) {
                flush(&mut text, out);
                out.push_str("<a href=\"");
                escape(&url, out);
                out.push_str("\">");
                inline(&label, out);
                out.push_str("</a>");
            } else {
                // Shown as its label alone: the target is not followed.
                text.push_str(&label);
            }
            i = end + 1;
            continue;
        }
        text.push(c);
        i += 1;
    }
    flush(&mut text, out);
}

#[derive(PartialEq)]
enum Block {
    None,
    Paragraph,
    Bullets,
    Numbers,
    Quote,
}

fn close(block: &mut Block, lines: &mut Vec<String>, out: &mut String) {
    match block {
        Block::None => {}
        Block::Paragraph | Block::Quote => {
            let tag = if *block == Block::Quote { "blockquote><p" } else { "p" };
            out.push('<');
            out.push_str(tag);
            out.push('>');
            inline(&lines.join(" "), out);
            out.push_str(if *block == Block::Quote { "</p></blockquote>\n" } else { "</p>\n" });
        }
        Block::Bullets | Block::Numbers => {
            let tag = if *block == Block::Bullets { "ul" } else { "ol" };
            out.push_str(&format!("<{tag}>"));
            for item in lines.iter() {
                out.push_str("<li>");
                inline(item, out);
                out.push_str("</li>");
            }
            out.push_str(&format!("</{tag}>\n"));
        }
    }
    *block = Block::None;
    lines.clear();
}

/// A numbered list item's text (`1. text`, `12) text`).
fn numbered(line: &str) -> Option<&str> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = &line[digits..];
    rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") "))
}

/// Render `md` as HTML (see the module's documentation for what is kept).
pub fn render_markdown(md: &str) -> String {
    let mut out = String::new();
    let mut block = Block::None;
    let mut lines: Vec<String> = Vec::new();
    for raw in md.lines() {
        let line = raw.trim();
        if line.is_empty() {
            close(&mut block, &mut lines, &mut out);
            continue;
        }
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            close(&mut block, &mut lines, &mut out);
            // The page's title is the module's (h1); its headings are `##` and below.
            let level = hashes;
            out.push_str(&format!("<h{level}>"));
            inline(line[hashes..].trim(), &mut out);
            out.push_str(&format!("</h{level}>\n"));
            continue;
        }
        let (kind, text) = if let Some(t) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
            (Block::Bullets, t)
        } else if let Some(t) = numbered(line) {
            (Block::Numbers, t)
        } else if let Some(t) = line.strip_prefix('>') {
            (Block::Quote, t.trim_start())
        } else {
            // A continuation line belongs to the list item or paragraph above.
            match block {
                Block::Bullets | Block::Numbers if raw.starts_with(' ') => {
                    if let Some(last) = lines.last_mut() {
                        last.push(' ');
                        last.push_str(line);
                    }
                    continue;
                }
                Block::Quote | Block::Bullets | Block::Numbers => {
                    close(&mut block, &mut lines, &mut out);
                    (Block::Paragraph, line)
                }
                _ => (Block::Paragraph, line),
            }
        };
        if block != kind {
            close(&mut block, &mut lines, &mut out);
            block = kind;
        }
        lines.push(text.to_owned());
    }
    close(&mut block, &mut lines, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_renders() {
        let html = render_markdown(
            "## Title\n\nSome **bold** and *em* and `code`.\nSame paragraph.\n\n- one\n- two\n  continued\n\n1. first\n2. second\n\n> quoted\n\n[Training](/training) and [site](https://example.org/a?b=1).",
        );
        assert_eq!(
            html,
            "<h2>Title</h2>\n<p>Some <strong>bold</strong> and <em>em</em> and <code>code</code>. Same paragraph.</p>\n\
             <ul><li>one</li><li>two continued</li></ul>\n<ol><li>first</li><li>second</li></ol>\n\
             <blockquote><p>quoted</p></blockquote>\n\
             <p><a href=\"/training\">Training</a> and <a href=\"https://example.org/a?b=1\">site</a>.</p>\n"
        );
    }

    #[test]
    fn no_raw_html_and_no_unsafe_link_passes() {
        for hostile in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "[x](//evil.example/)",
            "[x](vbscript:msgbox)",
            "[x\" onclick=\"alert(1)](https://ok.example/)",
            "[x](https://ok.example/\"onmouseover=\"alert(1))",
            "**<b>nested</b>**",
            "`<script>`",
            "# <h1>",
        ] {
            let html = render_markdown(hostile);
            assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("<b>"), "{hostile}: {html}");
            assert!(
                !html.contains("javascript:") && !html.contains("JaVaScRiPt:") && !html.contains("data:"),
                "{html}"
            );
            assert!(!html.contains("href=\"//") && !html.contains("vbscript"), "{html}");
            assert!(!html.contains("\" onclick") && !html.contains("\"onmouseover"), "{html}");
        }
        assert!(render_markdown("a < b & c").contains("a &lt; b &amp; c"));
    }
}
