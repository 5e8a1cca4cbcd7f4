//! A runbook's Markdown, read without IO: rendered to HTML (raw HTML shown as text, links kept inside crew,
//! images from elsewhere dropped, headings given ids), its title, which of the four sections (Meaning, Impact,
//! Diagnosis, Mitigation) it lacks, and the Mitigation's first lines as plain text for the robot.

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};
use std::collections::HashMap;

/// The sections every runbook has, in the order people read them.
pub const SECTIONS: [&str; 4] = ["Meaning", "Impact", "Diagnosis", "Mitigation"];

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// The HTML of `md`, the runbook at `path` (`runbooks/db/failover.md`), whose folder relative links start from.
///
/// Nothing of the Markdown reaches the page as markup but what crew writes itself: raw HTML (blocks and inline)
/// is shown as text; a link keeps its target only when it is an absolute `http(s)` URL, a page of crew (`/…`),
/// an anchor (`#…`), or a relative link to another runbook (`other.md`, `../db/failover.md`), which becomes
/// that runbook's page (`/runbooks/…`); any other link (`javascript:`, `data:`, other schemes, a file that is
/// not a runbook, a path leaving `runbooks/`) is rendered as its text. Images are kept only from crew's own
/// pages (`/…`); others are rendered as their alt text. Headings get ids (`mitigation`, `step-2`), unique in
/// the page.
pub fn render(md: &str, path: &str) -> String {
    render_inner(md, path, false)
}

/// As [`render`], but an HTML block that is one SVG graph such as crew draws (a postmortem's impact graph) is
/// kept, rewritten through `web::svg`'s allow-list; any other raw HTML, or a graph with anything off the list,
/// is shown as text.
pub fn render_with_graphs(md: &str, path: &str) -> String {
    render_inner(md, path, true)
}

fn render_inner(md: &str, path: &str, graphs: bool) -> String {
    let folder = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mut events: Vec<Event> = Vec::new();
    // For every open link and image: whether it was kept (its end must then be kept too).
    let mut links: Vec<bool> = Vec::new();
    let mut images: Vec<bool> = Vec::new();
    // The heading being read: where its start is in `events`, and its text so far.
    let mut heading: Option<(usize, String)> = None;
    let mut ids: HashMap<String, usize> = HashMap::new();
    // An HTML block being read, when graphs may pass.
    let mut block: Option<String> = None;
    for ev in Parser::new_ext(md, options()) {
        if let Some(b) = &mut block {
            match ev {
                Event::Html(t) => {
                    b.push_str(&t);
                    continue;
                }
                Event::End(TagEnd::HtmlBlock) => {
                    let raw = block.take().unwrap_or_default();
                    match crate::web::svg::sanitise(&raw) {
                        Some(svg) => events.push(Event::Html(format!("{svg}\n").into())),
                        None => {
                            events.push(Event::Start(Tag::Paragraph));
                            events.push(Event::Text(raw.into()));
                            events.push(Event::End(TagEnd::Paragraph));
                        }
                    }
                    continue;
                }
                _ => {}
            }
        }
        let ev = match ev {
            Event::Start(Tag::HtmlBlock) if graphs => {
                block = Some(String::new());
                continue;
            }
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
            Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
            Event::Start(Tag::Link { link_type, dest_url, title, id }) => match link_href(&dest_url, link_type, folder)
            {
                Some(href) => {
                    links.push(true);
                    Event::Start(Tag::Link { link_type: LinkType::Inline, dest_url: href.into(), title, id })
                }
                None => {
                    links.push(false);
                    continue;
                }
            },
            Event::End(TagEnd::Link) => match links.pop() {
                Some(true) => Event::End(TagEnd::Link),
                _ => continue,
            },
            Event::Start(Tag::Image { dest_url, title, id, .. }) => {
                if own_page(&dest_url) {
                    images.push(true);
                    Event::Start(Tag::Image { link_type: LinkType::Inline, dest_url, title, id })
                } else {
                    images.push(false);
                    continue;
                }
            }
            Event::End(TagEnd::Image) => match images.pop() {
                Some(true) => Event::End(TagEnd::Image),
                _ => continue,
            },
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some((events.len(), String::new()));
                Event::Start(Tag::Heading { level, id: None, classes: vec![], attrs: vec![] })
            }
            Event::End(TagEnd::Heading(level)) => {
                if let Some((at, text)) = heading.take() {
                    let id = unique(&mut ids, slug(&text));
                    events[at] =
                        Event::Start(Tag::Heading { level, id: Some(id.into()), classes: vec![], attrs: vec![] });
                }
                Event::End(TagEnd::Heading(level))
            }
            other => other,
        };
        if let (Some((_, text)), Event::Text(t) | Event::Code(t)) = (&mut heading, &ev) {
            text.push_str(t);
        }
        events.push(ev);
    }
    let mut html = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

/// Whether an image's source is one of crew's own pages (`/static/…`), the only images the page's policy loads.
fn own_page(url: &str) -> bool {
    url.starts_with('/') && !url.starts_with("//") && !url.contains('\\') && !url.chars().any(char::is_control)
}

/// Where a link in the runbook at `folder` may go (see [`render`]); `None` drops it.
fn link_href(dest: &str, link_type: LinkType, folder: &str) -> Option<String> {
    if link_type == LinkType::Email {
        return None;
    }
    let dest = dest.trim();
    // Browsers ignore tabs, newlines and other controls inside a URL (`java\tscript:`), so the scheme is judged
    // on what they would read.
    let seen: String = dest.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect::<String>();
    let lower = seen.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let ok = url::Url::parse(dest).is_ok_and(|u| u.host().is_some()) && seen == dest;
        return ok.then(|| dest.to_string());
    }
    if seen != dest || dest.contains('\\') {
        return None;
    }
    let end = dest.find(['/', '?', '#']).unwrap_or(dest.len());
    if dest[..end].contains(':') {
        // A scheme: javascript:, data:, vbscript:, mailto:, file:, ...
        return None;
    }
    if dest.starts_with('#') {
        return Some(dest.to_string());
    }
    if dest.starts_with('/') {
        return own_page(dest).then(|| dest.to_string());
    }
    let cut = dest.find(['?', '#']).unwrap_or(dest.len());
    let (path, rest) = dest.split_at(cut);
    let target = join(folder, path)?;
    (target.starts_with("runbooks/") && target.ends_with(".md")).then(|| format!("/{target}{rest}"))
}

/// `rel` resolved against `folder` (both relative to the repository's root); `None` if it leaves the root.
fn join(folder: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// A heading's id: its words in lower case, joined by `-` (`Step 2: roll back` → `step-2-roll-back`).
fn slug(text: &str) -> String {
    let mut s = String::new();
    for c in text.trim().chars() {
        if c.is_alphanumeric() {
            s.extend(c.to_lowercase());
        } else if (c.is_whitespace() || c == '-' || c == '_') && !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-');
    if s.is_empty() {
        "section".to_string()
    } else {
        s.to_string()
    }
}

/// `id`, or `id-1`, `id-2`, ... when the page already has it.
fn unique(ids: &mut HashMap<String, usize>, id: String) -> String {
    let n = ids.entry(id.clone()).or_insert(0);
    *n += 1;
    if *n == 1 {
        id
    } else {
        let again = format!("{id}-{}", *n - 1);
        // `step-1` written as a heading of its own and a second `step` must not meet.
        unique(ids, again)
    }
}

/// Every heading: its level (1 to 6) and its text.
pub fn headings(md: &str) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut current: Option<(u8, String)> = None;
    for ev in Parser::new_ext(md, options()) {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => current = Some((level as u8, String::new())),
            Event::End(TagEnd::Heading(_)) => out.extend(current.take()),
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                if let Some((_, text)) = &mut current {
                    text.push_str(&t);
                }
            }
            _ => {}
        }
    }
    out.into_iter().map(|(l, t)| (l, t.trim().to_string())).collect()
}

/// The first heading's text, the runbook's title.
pub fn title(md: &str) -> Option<String> {
    headings(md).into_iter().map(|(_, t)| t).find(|t| !t.is_empty())
}

/// Whether a heading names `section` (any case, a trailing colon allowed: `## mitigation:`).
fn names(heading: &str, section: &str) -> bool {
    heading.trim().trim_end_matches(':').trim().eq_ignore_ascii_case(section)
}

/// Which of [`SECTIONS`] have no heading (of any level) in `md`, in their order.
pub fn missing_sections(md: &str) -> Vec<&'static str> {
    let hs = headings(md);
    SECTIONS.into_iter().filter(|s| !hs.iter().any(|(_, h)| names(h, s))).collect()
}

/// The first `n` non-empty lines of the Mitigation section as plain text (markup dropped, each paragraph, list
/// item, table row and code line a line of its own), for `!runbook NAME`. The section ends at the next heading of
/// its level or above; deeper headings inside it are lines too. Empty when there is no Mitigation section.
pub fn mitigation_lines(md: &str, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    if n == 0 {
        return lines;
    }
    let mut line = String::new();
    let flush = |line: &mut String, lines: &mut Vec<String>| {
        for l in line.split('\n') {
            let l = l.split_whitespace().collect::<Vec<_>>().join(" ");
            if !l.is_empty() {
                lines.push(l);
            }
        }
        line.clear();
    };
    // The Mitigation heading's level once it is found, and the heading being read.
    let mut section: Option<u8> = None;
    let mut heading: Option<(u8, String)> = None;
    for ev in Parser::new_ext(md, options()) {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => {
                let level = level as u8;
                if section.is_some_and(|s| level <= s) {
                    break;
                }
                flush(&mut line, &mut lines);
                heading = Some((level, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, text)) = heading.take() else { continue };
                match section {
                    None if names(&text, "Mitigation") => section = Some(level),
                    None => {}
                    Some(_) => {
                        line.push_str(&text);
                        flush(&mut line, &mut lines);
                    }
                }
            }
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => match &mut heading {
                Some((_, text)) => text.push_str(&t),
                None if section.is_some() => line.push_str(&t),
                None => {}
            },
            Event::SoftBreak | Event::HardBreak => line.push('\n'),
            Event::Start(t) if !inline(&t) => flush(&mut line, &mut lines),
            Event::End(t) if !inline_end(t) => flush(&mut line, &mut lines),
            _ => {}
        }
        if lines.len() >= n {
            break;
        }
    }
    flush(&mut line, &mut lines);
    lines.truncate(n);
    lines
}

fn inline(t: &Tag) -> bool {
    matches!(
        t,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. }
    )
}

fn inline_end(t: TagEnd) -> bool {
    matches!(
        t,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image
    )
}

/// Text shortened to `max` characters (on a character boundary), for messages that quote what was asked.
pub fn short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKOUT: &str = "# Checkout errors\n\n## Meaning\nPayments fail.\n\n## Impact\nNo orders.\n\n\
        ## Diagnosis\nSee [the graph](/graphs?q=shop.errors) and [failover](db/failover.md#steps).\n\n\
        ## Mitigation\n1. Roll back: `!rollback production`\n2. Switch off the new checkout:\n   `!flag checkout off`\n\n\
        Then tell #ops.\nAnd wait.\n\n### Later\nWrite the postmortem.\n\n## Notes\nNot mitigation.\n";

    #[test]
    fn raw_html_is_shown_as_text() {
        let md =
            "# T\n\n<script>alert(1)</script>\n\nHello <b onclick=\"x()\">there</b> <img src=x onerror=alert(2)>\n";
        let html = render(md, "runbooks/t.md");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b ") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;b onclick=\"x()\"&gt;there&lt;/b&gt;"), "{html}");
    }

    #[test]
    fn links_stay_inside_crew_and_other_schemes_are_dropped() {
        let table = [
            ("[x](javascript:alert(1))", None),
            ("[x](JavaScript:alert(1))", None),
            ("[x](<java\tscript:alert(1)>)", None),
            ("[x](data:text/html;base64,PHNjcmlwdD4=)", None),
            ("[x](vbscript:msgbox)", None),
            ("[x](mailto:a@example.com)", None),
            ("<javascript:alert(1)>", None),
            ("<a@example.com>", None),
            ("[x](//evil.example/p)", None),
            ("[x](../crew.toml)", None),
            ("[x](../../../etc/passwd.md)", None),
            ("[x](notes.txt)", None),
            ("[x](https://wiki.example.com/db)", Some("https://wiki.example.com/db")),
            ("<https://status.example.com>", Some("https://status.example.com")),
            ("[x](/graphs?q=shop.errors)", Some("/graphs?q=shop.errors")),
            ("[x](#mitigation)", Some("#mitigation")),
            ("[x](other.md)", Some("/runbooks/db/other.md")),
            ("[x](./other.md#step-2)", Some("/runbooks/db/other.md#step-2")),
            ("[x](../checkout.md)", Some("/runbooks/checkout.md")),
            ("[x](../db/failover.md)", Some("/runbooks/db/failover.md")),
            ("[x](../../runbooks/checkout.md)", Some("/runbooks/checkout.md")),
            ("[x][r]\n\n[r]: ../checkout.md", Some("/runbooks/checkout.md")),
        ];
        for (md, want) in table {
            let html = render(md, "runbooks/db/replica.md");
            match want {
                Some(href) => {
                    let escaped = href.replace('&', "&amp;");
                    assert!(html.contains(&format!("<a href=\"{escaped}\">")), "{md}: {html}");
                }
                None => {
                    assert!(!html.contains("<a "), "{md}: {html}");
                    assert!(!html.to_ascii_lowercase().contains("href"), "{md}: {html}");
                }
            }
        }
        // A dropped link keeps its words.
        assert_eq!(render("[click me](javascript:alert(1))", "runbooks/a.md"), "<p>click me</p>\n");
    }

    #[test]
    fn images_from_elsewhere_are_their_alt_text() {
        let html = render("![the graph](https://evil.example/t.png) ![local](shot.png)", "runbooks/a.md");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("the graph") && html.contains("local"), "{html}");
        let html = render("![logo](/static/logo.svg)", "runbooks/a.md");
        assert!(html.contains("<img src=\"/static/logo.svg\" alt=\"logo\""), "{html}");
    }

    #[test]
    fn headings_get_unique_ids() {
        let html =
            render("# Checkout errors\n## Step 2: roll back\n## Mitigation\n## Mitigation\n## ???\n", "runbooks/a.md");
        for want in [
            "<h1 id=\"checkout-errors\">",
            "<h2 id=\"step-2-roll-back\">",
            "<h2 id=\"mitigation\">",
            "<h2 id=\"mitigation-1\">",
            "<h2 id=\"section\">",
        ] {
            assert!(html.contains(want), "{want}: {html}");
        }
        let html = render("## `<b>` \"quoted\"\n", "runbooks/a.md");
        assert!(html.contains("<h2 id=\"b-quoted\"><code>&lt;b&gt;</code> \"quoted\"</h2>"), "{html}");
    }

    #[test]
    fn sections_are_found_at_any_level_and_in_any_case() {
        assert_eq!(missing_sections(CHECKOUT), Vec::<&str>::new());
        assert_eq!(title(CHECKOUT).as_deref(), Some("Checkout errors"));
        let md = "Intro\n\n### meaning\n#### IMPACT:\nDiagnosis\n---------\nnot a heading: Mitigation\n";
        assert_eq!(missing_sections(md), ["Mitigation"]);
        assert_eq!(title(md).as_deref(), Some("meaning"));
        assert_eq!(missing_sections(""), SECTIONS);
        assert_eq!(title("no heading"), None);
    }

    #[test]
    fn the_mitigations_first_lines_as_plain_text() {
        assert_eq!(
            mitigation_lines(CHECKOUT, 3),
            ["Roll back: !rollback production", "Switch off the new checkout:", "!flag checkout off"]
        );
        assert_eq!(
            mitigation_lines(CHECKOUT, 10),
            [
                "Roll back: !rollback production",
                "Switch off the new checkout:",
                "!flag checkout off",
                "Then tell #ops.",
                "And wait.",
                "Later",
                "Write the postmortem.",
            ]
        );
        assert_eq!(mitigation_lines(CHECKOUT, 0), Vec::<String>::new());
        assert_eq!(mitigation_lines("# Meaning\nx\n", 3), Vec::<String>::new());
        let code = "## mitigation\n```\nsystemctl restart www\n\nsystemctl status www\n```\n";
        assert_eq!(mitigation_lines(code, 3), ["systemctl restart www", "systemctl status www"]);
        assert_eq!(mitigation_lines("# Mitigation\n<b>now</b> **really**\n", 3), ["<b>now</b> really"]);
    }

    /// Markdown made of the pieces an attack would use, in any order.
    fn risky() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("<script>alert(1)</script>".to_string()),
            Just("<img src=x onerror=alert(1)>".to_string()),
            Just("<a href=\"javascript:x\">".to_string()),
            Just("</a>".to_string()),
            Just("<div>\n".to_string()),
            Just("[a](".to_string()),
            Just("](#x)".to_string()),
            Just(")".to_string()),
            Just("javascript:alert(1)".to_string()),
            Just("data:text/html,<b>".to_string()),
            Just(" jav\tascript:".to_string()),
            Just("<javascript:x>".to_string()),
            Just("![i](".to_string()),
            Just("//evil.example".to_string()),
            Just("../".to_string()),
            Just("x.md".to_string()),
            Just("https://ok.example/".to_string()),
            Just("\n\n".to_string()),
            Just("\n# ".to_string()),
            Just("\n    ".to_string()),
            Just("\n```\n".to_string()),
            Just("`".to_string()),
            Just("*".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("&".to_string()),
            Just("[r]: ".to_string()),
            Just("[r]".to_string()),
            "[a-z <>:/]{0,6}".prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]
        /// Whatever the Markdown, the page gets only crew's own markup, and links only to where crew allows.
        #[test]
        fn no_markup_of_the_file_reaches_the_page(md in risky()) {
            let html = render(&md, "runbooks/db/replica.md");
            let allowed = [
                "p", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "em", "strong", "del", "code", "pre", "ul",
                "ol", "li", "blockquote", "table", "thead", "tbody", "tr", "th", "td", "hr", "br", "input",
            ];
            // Text's `<` is escaped, so every `<` left starts a tag crew wrote: its name and attributes are read.
            for tag in html.split('<').skip(1) {
                let (tag, _) = tag.split_once('>').unwrap_or((tag, ""));
                let tag = tag.trim_start_matches('/');
                let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
                proptest::prop_assert!(allowed.contains(&name.as_str()), "tag {name:?} in {html}");
                let mut rest = tag[name.len()..].trim_start();
                while !rest.is_empty() && rest != "/" {
                    let (attr, after) = rest.split_once("=\"").unwrap_or((rest, ""));
                    let (value, after) = after.split_once('"').unwrap_or((after, ""));
                    // `class` is a fenced block's language (`language-sh`), escaped by pulldown-cmark like any text.
                    let known = ["href", "src", "alt", "title", "id", "type", "disabled", "checked", "start", "style", "class"];
                    proptest::prop_assert!(known.contains(&attr), "attribute {attr:?} in {html}");
                    if attr == "href" || attr == "src" {
                        let ok = (value.starts_with('/') && !value.starts_with("//"))
                            || value.starts_with('#')
                            || value.starts_with("http://")
                            || value.starts_with("https://");
                        proptest::prop_assert!(ok, "{attr}={value:?} in {html}");
                    }
                    rest = after.trim_start();
                }
            }
        }
    }

    #[test]
    fn long_names_are_shortened_on_a_character_boundary() {
        assert_eq!(short("ééé", 2), "éé…");
        assert_eq!(short("ab", 2), "ab");
    }
}
