//! The one piece of raw markup a Markdown page may carry: an SVG graph such as crew draws (a postmortem's
//! impact graph). It is parsed against an allow-list and written out again — elements, attributes and values
//! crew's graphs use, text re-escaped, links only to crew's own pages — or refused whole, so a person editing
//! the Markdown cannot put a script, a handler, a style or a link elsewhere on the page.

/// The elements a graph is made of.
const ELEMENTS: &[&str] = &["svg", "g", "a", "line", "polyline", "circle", "rect", "text", "title"];

/// What an attribute's value may be.
#[derive(Clone, Copy)]
enum Value {
    /// Digits, signs, points, commas, spaces: coordinates, `points`, `viewBox`.
    Numbers,
    /// Letters, digits, `-`, `_` and spaces: classes, `data-kind`, `role`, `text-anchor`.
    Words,
    /// A page of crew's own (`/deploys/12`).
    OwnPage,
    /// Exactly the SVG namespace.
    Namespace,
}

const ATTRIBUTES: &[(&str, Value)] = &[
    ("x", Value::Numbers),
    ("y", Value::Numbers),
    ("x1", Value::Numbers),
    ("y1", Value::Numbers),
    ("x2", Value::Numbers),
    ("y2", Value::Numbers),
    ("cx", Value::Numbers),
    ("cy", Value::Numbers),
    ("r", Value::Numbers),
    ("width", Value::Numbers),
    ("height", Value::Numbers),
    ("points", Value::Numbers),
    ("viewBox", Value::Numbers),
    ("class", Value::Words),
    ("role", Value::Words),
    ("text-anchor", Value::Words),
    ("data-kind", Value::Words),
    ("href", Value::OwnPage),
    ("xmlns", Value::Namespace),
];

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// The most elements one graph may have (crew's draw one per point and marker).
const MAX_ELEMENTS: usize = 20_000;

/// `html`, an SVG element (leading and trailing whitespace aside), rewritten from the allow-list; `None` when
/// anything in it is not on it (the caller then shows the block as text).
pub fn sanitise(html: &str) -> Option<String> {
    let src = html.trim();
    if !src.starts_with("<svg") {
        return None;
    }
    let mut out = String::with_capacity(src.len());
    let mut open: Vec<&str> = Vec::new();
    let mut count = 0;
    let mut rest = src;
    let mut closed_root = false;
    while !rest.is_empty() {
        if closed_root {
            return None; // anything after the root's end
        }
        if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>')?;
            let name = after[..end].trim_end();
            if open.pop()? != name {
                return None;
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
            rest = &after[end + 1..];
            closed_root = open.is_empty();
        } else if let Some(after) = rest.strip_prefix('<') {
            let (name, tail) = split_name(after)?;
            let name = *ELEMENTS.iter().find(|e| **e == name)?;
            if open.is_empty() != (name == "svg") {
                return None; // one root, and it is the svg
            }
            count += 1;
            if count > MAX_ELEMENTS {
                return None;
            }
            out.push('<');
            out.push_str(name);
            let (attrs, self_closing, tail) = attributes(tail)?;
            for (k, v) in attrs {
                out.push(' ');
                out.push_str(k);
                out.push_str("=\"");
                escape(&v, &mut out);
                out.push('"');
            }
            if self_closing {
                out.push_str("/>");
                closed_root = open.is_empty();
            } else {
                out.push('>');
                open.push(name);
            }
            rest = tail;
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            if open.is_empty() {
                return None;
            }
            escape(&decode(&rest[..end])?, &mut out);
            rest = &rest[end..];
        }
    }
    (open.is_empty() && closed_root).then_some(out)
}

/// An element's name and what follows it.
fn split_name(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

/// A start tag's attributes (each allowed, its value checked and decoded), whether it closes itself, and what
/// follows the tag.
#[allow(clippy::type_complexity)]
fn attributes(mut s: &str) -> Option<(Vec<(&'static str, String)>, bool, &str)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix("/>") {
            return Some((out, true, r));
        }
        if let Some(r) = s.strip_prefix('>') {
            return Some((out, false, r));
        }
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))?;
        let (name, r) = (&s[..end], &s[end..]);
        let &(name, kind) = ATTRIBUTES.iter().find(|(a, _)| *a == name)?;
        if out.iter().any(|(a, _)| *a == name) {
            return None;
        }
        let r = r.strip_prefix("=\"")?;
        let close = r.find('"')?;
        let value = decode(&r[..close])?;
        if !allowed(kind, &value) {
            return None;
        }
        out.push((name, value));
        s = &r[close + 1..];
    }
}

fn allowed(kind: Value, v: &str) -> bool {
    match kind {
        Value::Numbers => v.chars().all(|c| c.is_ascii_digit() || " .,-+eE".contains(c)),
        Value::Words => v.chars().all(|c| c.is_ascii_alphanumeric() || " -_".contains(c)),
        Value::Namespace => v == SVG_NS,
        Value::OwnPage => {
            v.starts_with('/')
                && !v.starts_with("//")
                && !v.contains('\\')
                && !v.chars().any(|c| c.is_control() || c.is_whitespace())
        }
    }
}

/// Text with the entities maud writes (`&amp;` `&lt;` `&gt;` `&quot;` `&#39;`, and numeric ones) decoded;
/// `None` for a bare `<` or an entity it does not know.
fn decode(s: &str) -> Option<String> {
    if s.contains('<') {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').filter(|e| *e <= 10)?;
        let entity = &after[..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(n).filter(|c| !c.is_control() || *c == '\n' || *c == '\t')?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

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

#[cfg(test)]
mod tests {
    use super::sanitise;

    #[test]
    fn a_graph_as_crew_draws_it_passes_and_is_written_back_escaped() {
        let g = "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 760 170\" role=\"img\">\n\
                 <title>shop.errors{host=a&amp;b} &lt;b&gt;</title>\
                 <line class=\"axis\" x1=\"56\" y1=\"148\" x2=\"752\" y2=\"148\"></line>\
                 <a href=\"/deploys/3\"><line class=\"marker deploy\" x1=\"1.0\" y1=\"12\" x2=\"1.0\" y2=\"148\" data-kind=\"deploy\"><title>deployed &quot;x&quot;</title></line></a>\
                 <polyline class=\"series s0\" points=\"56.0,10.0 60.5,-2e3\"></polyline><circle cx=\"1\" cy=\"2\" r=\"2.5\"/>\n</svg>\n";
        let out = sanitise(g).expect("crew's own graph passes");
        assert!(out.starts_with("<svg class=\"graph\""), "{out}");
        assert!(out.contains("<title>shop.errors{host=a&amp;b} &lt;b&gt;</title>"), "{out}");
        assert!(out.contains("<title>deployed &quot;x&quot;</title>"), "{out}");
        assert!(out.contains("<circle cx=\"1\" cy=\"2\" r=\"2.5\"/>"), "{out}");
        assert_eq!(sanitise(&out).as_deref(), Some(out.as_str()), "idempotent");
    }

    #[test]
    fn anything_off_the_list_refuses_the_whole_block() {
        for bad in [
            "<svg><script>alert(1)</script></svg>",
            "<svg onload=\"alert(1)\"></svg>",
            "<svg><a href=\"javascript:alert(1)\"><text>x</text></a></svg>",
            "<svg><a href=\"//evil.example/\"><text>x</text></a></svg>",
            "<svg><a href=\"https://evil.example/\"><text>x</text></a></svg>",
            "<svg><a xlink:href=\"/x\"></a></svg>",
            "<svg style=\"background:url(x)\"></svg>",
            "<svg class='graph'></svg>",
            "<svg class=graph></svg>",
            "<svg class=\"a\" class=\"b\"></svg>",
            "<svg class=\"x\" x=\"1);\"></svg>",
            "<svg xmlns=\"http://www.w3.org/1999/xhtml\"></svg>",
            "<svg><foreignObject><div>x</div></foreignObject></svg>",
            "<svg><text>a &unknown; b</text></svg>",
            "<svg><text>a &#0; b</text></svg>",
            "<svg><line></svg>",
            "<svg></svg><script>alert(1)</script>",
            "<svg></svg><svg></svg>",
            "<svg><!-- a comment --></svg>",
            "<svg><svg></svg></svg>",
            "<p>not a graph</p>",
            "<svg><text>x</text>",
            "",
        ] {
            assert_eq!(sanitise(bad), None, "{bad}");
        }
    }
}
