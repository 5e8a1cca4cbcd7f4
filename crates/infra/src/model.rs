//! Roles and their resources as written in `roles/*.toml`: one array of tables per resource type
//! (`[[file]]`, `[[directory]]`, `[[symlink]]`, `[[package]]`, `[[service]]`, `[[user]]`, `[[group]]`,
//! `[[command]]`), each strict (an unknown attribute is an error naming the file, line and key).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A definition that cannot be used, naming where: `roles/web.toml:12: file[1].mdoe: unknown field`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InfraError {
    #[error("{file}:{line}: {key}: {message}")]
    At { file: String, line: usize, key: String, message: String },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("a cycle: {0}")]
    Cycle(String),
}

/// The resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Package,
    Service,
    User,
    Group,
    Command,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
            Kind::Package => "package",
            Kind::Service => "service",
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Command => "command",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "file" => Kind::File,
            "directory" => Kind::Directory,
            "symlink" => Kind::Symlink,
            "package" => Kind::Package,
            "service" => Kind::Service,
            "user" => Kind::User,
            "group" => Kind::Group,
            "command" => Kind::Command,
            _ => return None,
        })
    }
}

/// Ordering and refresh edges every resource may declare, by reference (`service:www`, `file:/etc/x`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edges {
    #[serde(default)]
    pub require: Vec<String>,
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// Where a file's content comes from: exactly one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Literal(String),
    /// Bytes as base64: content resolved on the controller (a template rendered, a source read) and sent to a
    /// host's engine, which then needs no repository.
    Base64(String),
    /// A template path relative to the repository, rendered with the host's vars and facts.
    Template(String),
    /// A file in the repository, copied as it is.
    Source(String),
}

/// What a resource should be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spec {
    File {
        path: String,
        content: Content,
        owner: Option<String>,
        group: Option<String>,
        mode: Option<u32>,
        sensitive: bool,
    },
    Directory {
        path: String,
        owner: Option<String>,
        group: Option<String>,
        mode: Option<u32>,
    },
    Symlink {
        path: String,
        target: String,
    },
    Package {
        name: String,
        version: Option<String>,
        /// A .deb to install with dpkg (a repository path, resolved to its bytes before it is sent to a host).
        deb: Option<Content>,
    },
    Service {
        name: String,
        provider: String,
        start: Option<String>,
        stop: Option<String>,
        status: Option<String>,
        restart: Option<String>,
    },
    User {
        name: String,
        uid: Option<u32>,
        group: Option<String>,
        home: Option<String>,
        shell: Option<String>,
    },
    Group {
        name: String,
        gid: Option<u32>,
    },
    Command {
        name: String,
        run: String,
        creates: Option<String>,
        unless: Option<String>,
        onlyif: Option<String>,
        refresh_only: bool,
    },
}

/// One resource of a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: Kind,
    pub spec: Spec,
    pub edges: Edges,
    /// Where it was declared, for messages: `roles/web.toml:12`.
    pub file: String,
    pub line: usize,
}

impl Resource {
    /// Its reference: `file:/etc/www/app.conf`, `service:www`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.title())
    }

    /// The path or name that identifies it within its type.
    pub fn title(&self) -> &str {
        match &self.spec {
            Spec::File { path, .. } | Spec::Directory { path, .. } | Spec::Symlink { path, .. } => path,
            Spec::Package { name, .. }
            | Spec::Service { name, .. }
            | Spec::User { name, .. }
            | Spec::Group { name, .. }
            | Spec::Command { name, .. } => name,
        }
    }
}

/// A role: its name (the file's stem) and resources in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub resources: Vec<Resource>,
}

/// `[[hosts]]` of crew.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// `ssh://user@host:port` or `local`.
    pub address: String,
    pub roles: Vec<String>,
    /// A root prefix every path is under (`/` on a real machine; tests give each host its own folder).
    #[serde(default = "slash")]
    pub root: String,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Extra `ssh` options for this host (`-i key`, `-o ...`).
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

fn slash() -> String {
    "/".into()
}

// ---- the file format, strict per type ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDecl {
    path: String,
    content: Option<String>,
    template: Option<String>,
    source: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    mode: Option<String>,
    #[serde(default)]
    sensitive: bool,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryDecl {
    path: String,
    owner: Option<String>,
    group: Option<String>,
    mode: Option<String>,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SymlinkDecl {
    path: String,
    target: String,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageDecl {
    name: String,
    version: Option<String>,
    /// A .deb in the repository to install (`dpkg -i`), for packages no archive has.
    deb: Option<String>,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDecl {
    name: String,
    #[serde(default = "systemd")]
    provider: String,
    start: Option<String>,
    stop: Option<String>,
    status: Option<String>,
    restart: Option<String>,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

fn systemd() -> String {
    "systemd".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDecl {
    name: String,
    uid: Option<u32>,
    group: Option<String>,
    home: Option<String>,
    shell: Option<String>,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDecl {
    name: String,
    gid: Option<u32>,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandDecl {
    name: String,
    run: String,
    creates: Option<String>,
    unless: Option<String>,
    onlyif: Option<String>,
    #[serde(default)]
    refresh_only: bool,
    // Written out in each type (not a flattened struct): serde's deny_unknown_fields does not see through
    // flatten, and an unknown attribute must be refused.
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

fn mode(s: Option<String>) -> Result<Option<u32>, String> {
    s.map(|m| {
        let digits = m.trim_start_matches("0o");
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!("mode `{m}` is not an octal mode like \"0644\""));
        }
        u32::from_str_radix(digits, 8).map_err(|e| e.to_string())
    })
    .transpose()
}

/// A path on the host: absolute and without `..`, so it stays inside the host's root (`/../../x` would leave
/// a root prefix).
fn absolute(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.split('/').any(|part| part == "..") || p.contains('\0') {
        return Err(format!("`{p}` must be an absolute path without `..`"));
    }
    Ok(())
}

/// A file of the repository (a source, a template, a .deb): relative to it and without `..`, so it stays
/// inside (`/etc/hostname` would copy the controller's own file). Links that leave the repository are refused
/// where the file is read.
fn in_repo(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|part| part == "..") || p.contains('\0') {
        return Err(format!("`{p}` must be a path inside the repository (relative to it, without `..`)"));
    }
    Ok(())
}

/// Parses one role file. `file` names it in messages (`roles/web.toml`); the role's name is its stem.
pub fn parse_role(file: &str, text: &str) -> Result<Role, InfraError> {
    let name = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or(file).to_string();
    // Parsed twice: once as a document with spans (for line numbers), then each entry into its strict type.
    let doc: toml::Spanned<toml::Table> = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        InfraError::At { file: file.into(), line, key: "-".into(), message: e.message().trim().to_string() }
    })?;
    let spans = spans(text);
    let mut resources = Vec::new();
    for (type_name, entries) in doc.get_ref() {
        let at_key = |i: Option<usize>, key: &str, message: String| {
            let path = match i {
                Some(i) => format!("{type_name}[{i}]{}{key}", if key.is_empty() { "" } else { "." }),
                None => type_name.clone(),
            };
            let line = spans
                .iter()
                .find(|(t, n, _)| t == type_name && (i.is_none() || Some(*n) == i))
                .map(|(_, _, l)| *l)
                .unwrap_or(1);
            InfraError::At { file: file.into(), line, key: path, message }
        };
        let kind = Kind::parse(type_name).ok_or_else(|| {
            at_key(
                None,
                "",
                "unknown resource type: file, directory, symlink, package, service, user, group or command".into(),
            )
        })?;
        let list =
            entries.as_array().ok_or_else(|| at_key(None, "", format!("write resources as [[{type_name}]] tables")))?;
        for (i, entry) in list.iter().enumerate() {
            let line = spans.iter().find(|(t, n, _)| t == type_name && *n == i).map(|(_, _, l)| *l).unwrap_or(1);
            let strict = |e: serde_path_to_error::Error<toml::de::Error>| {
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                at_key(Some(i), &key, e.into_inner().message().trim().to_string())
            };
            let bad = |key: &str, message: String| at_key(Some(i), key, message);
            let value = toml::Value::Table(entry.as_table().cloned().ok_or_else(|| bad("", "not a table".into()))?);
            macro_rules! decl {
                ($t:ty) => {
                    serde_path_to_error::deserialize::<_, $t>(value.clone()).map_err(|e| {
                        // toml::Value's deserializer reports through toml::de::Error.
                        strict(e)
                    })?
                };
            }
            let (spec, edges) = match kind {
                Kind::File => {
                    let d: FileDecl = decl!(FileDecl);
                    absolute(&d.path).map_err(|m| bad("path", m))?;
                    let content = match (d.content, d.template, d.source) {
                        (Some(c), None, None) => Content::Literal(c),
                        (None, Some(t), None) => {
                            in_repo(&t).map_err(|m| bad("template", m))?;
                            Content::Template(t)
                        }
                        (None, None, Some(s)) => {
                            in_repo(&s).map_err(|m| bad("source", m))?;
                            Content::Source(s)
                        }
                        _ => return Err(bad("", "give exactly one of content, template or source".into())),
                    };
                    let m = mode(d.mode).map_err(|m| bad("mode", m))?;
                    (
                        Spec::File {
                            path: d.path,
                            content,
                            owner: d.owner,
                            group: d.group,
                            mode: m,
                            sensitive: d.sensitive,
                        },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::Directory => {
                    let d: DirectoryDecl = decl!(DirectoryDecl);
                    absolute(&d.path).map_err(|m| bad("path", m))?;
                    let m = mode(d.mode).map_err(|m| bad("mode", m))?;
                    (
                        Spec::Directory { path: d.path, owner: d.owner, group: d.group, mode: m },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::Symlink => {
                    let d: SymlinkDecl = decl!(SymlinkDecl);
                    absolute(&d.path).map_err(|m| bad("path", m))?;
                    (
                        Spec::Symlink { path: d.path, target: d.target },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::Package => {
                    let d: PackageDecl = decl!(PackageDecl);
                    if let Some(deb) = &d.deb {
                        in_repo(deb).map_err(|m| bad("deb", m))?;
                    }
                    (
                        Spec::Package { name: d.name, version: d.version, deb: d.deb.map(Content::Source) },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::Service => {
                    let d: ServiceDecl = decl!(ServiceDecl);
                    match d.provider.as_str() {
                        "systemd" => {}
                        "command" => {
                            for (k, v) in [("start", &d.start), ("stop", &d.stop), ("status", &d.status)] {
                                if v.is_none() {
                                    return Err(bad(k, "the command provider needs start, stop and status".into()));
                                }
                            }
                        }
                        other => {
                            return Err(bad("provider", format!("unknown provider `{other}`: systemd or command")))
                        }
                    }
                    (
                        Spec::Service {
                            name: d.name,
                            provider: d.provider,
                            start: d.start,
                            stop: d.stop,
                            status: d.status,
                            restart: d.restart,
                        },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::User => {
                    let d: UserDecl = decl!(UserDecl);
                    (
                        Spec::User { name: d.name, uid: d.uid, group: d.group, home: d.home, shell: d.shell },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::Group => {
                    let d: GroupDecl = decl!(GroupDecl);
                    (
                        Spec::Group { name: d.name, gid: d.gid },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
                Kind::Command => {
                    let d: CommandDecl = decl!(CommandDecl);
                    if let Some(c) = &d.creates {
                        absolute(c).map_err(|m| bad("creates", m))?;
                    }
                    (
                        Spec::Command {
                            name: d.name,
                            run: d.run,
                            creates: d.creates,
                            unless: d.unless,
                            onlyif: d.onlyif,
                            refresh_only: d.refresh_only,
                        },
                        Edges { require: d.require, before: d.before, notify: d.notify, subscribe: d.subscribe },
                    )
                }
            };
            for r in edges.require.iter().chain(&edges.before).chain(&edges.notify).chain(&edges.subscribe) {
                let ok = r.split_once(':').is_some_and(|(k, t)| Kind::parse(k).is_some() && !t.is_empty());
                if !ok {
                    return Err(bad("", format!("`{r}` is not a reference like service:www or file:/etc/app.conf")));
                }
            }
            resources.push(Resource { kind, spec, edges, file: file.into(), line });
        }
    }
    // Declaration order across types: by line in the file.
    resources.sort_by_key(|r| r.line);
    let mut seen = std::collections::HashMap::new();
    for r in &resources {
        if let Some(first) = seen.insert(r.id(), r.line) {
            return Err(InfraError::At {
                file: file.into(),
                line: r.line,
                key: r.id(),
                message: format!("declared twice (first at line {first})"),
            });
        }
    }
    Ok(Role { name, resources })
}

/// The line of every `[[type]]` header, numbered within its type: (type, index, line).
fn spans(text: &str) -> Vec<(String, usize, usize)> {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split_once("]]")).map(|(n, _)| n.trim().to_string()) {
            let i = counts.entry(name.clone()).or_default();
            out.push((name, *i, n + 1));
            *i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
[[directory]]
path = "/srv/www"

[[file]]
path = "/etc/www/app.conf"
template = "templates/app.conf"
mode = "0644"
notify = ["service:www"]

[[symlink]]
path = "/srv/www/current"
target = "/srv/www/releases/1"

[[service]]
name = "www"
provider = "command"
start = "start-www"
stop = "stop-www"
status = "www-running"

[[command]]
name = "seed"
run = "seed-db"
creates = "/srv/www/.seeded"
"#;

    #[test]
    fn a_role_reads_in_declaration_order() {
        let r = parse_role("roles/web.toml", WEB).unwrap();
        assert_eq!(r.name, "web");
        let ids: Vec<String> = r.resources.iter().map(Resource::id).collect();
        assert_eq!(
            ids,
            ["directory:/srv/www", "file:/etc/www/app.conf", "symlink:/srv/www/current", "service:www", "command:seed"]
        );
        assert_eq!(r.resources[1].line, 5);
        assert_eq!(r.resources[1].edges.notify, ["service:www"]);
        assert!(
            matches!(&r.resources[1].spec, Spec::File { mode: Some(0o644), content: Content::Template(t), .. } if t == "templates/app.conf")
        );
    }

    #[test]
    fn mistakes_name_the_file_line_and_key() {
        for (text, says) in [
            ("[[file]]\npath = \"/a\"\ncontent = \"x\"\nmdoe = \"0644\"\n", "roles/web.toml:1: file[0]"),
            ("[[file]]\npath = \"/a\"\ncontent = \"x\"\nmdoe = \"0644\"\n", "unknown field `mdoe`"),
            (
                "[[directory]]\npath = \"/a\"\n\n[[filez]]\npath = \"/b\"\n",
                "roles/web.toml:4: filez: unknown resource type",
            ),
            ("[[file]]\npath = \"/a\"\n", "give exactly one of content, template or source"),
            ("[[file]]\npath = \"a\"\ncontent = \"\"\n", "file[0].path: `a` must be an absolute path"),
            (
                "[[file]]\npath = \"/a\"\ncontent = \"\"\nmode = \"0999\"\n",
                "file[0].mode: mode `0999` is not an octal mode",
            ),
            (
                "[[service]]\nname = \"w\"\nprovider = \"command\"\nstart = \"s\"\n",
                "file[0]".replace("file", "service").as_str(),
            ),
            ("[[service]]\nname = \"w\"\nprovider = \"upstart\"\n", "unknown provider `upstart`"),
            ("[[command]]\nname = \"c\"\nrun = \"x\"\nrequire = [\"www\"]\n", "`www` is not a reference"),
            (
                "[[file]]\npath = \"/a\"\ncontent = \"\"\n[[file]]\npath = \"/a\"\ncontent = \"\"\n",
                "roles/web.toml:4: file:/a: declared twice (first at line 1)",
            ),
            ("[[file]\npath = 1", "roles/web.toml:1"),
            // Paths stay inside the host's root, sources inside the repository.
            (
                "[[command]]\nname = \"c\"\nrun = \"x\"\ncreates = \"/../../x\"\n",
                "roles/web.toml:1: command[0].creates: `/../../x` must be an absolute path without `..`",
            ),
            ("[[command]]\nname = \"c\"\nrun = \"x\"\ncreates = \"x\"\n", "command[0].creates: `x` must be"),
            ("[[file]]\npath = \"/a/../../b\"\ncontent = \"\"\n", "file[0].path: `/a/../../b` must be"),
            ("[[symlink]]\npath = \"/..\"\ntarget = \"/b\"\n", "symlink[0].path: `/..` must be"),
            (
                "[[file]]\npath = \"/a\"\nsource = \"/etc/hostname\"\n",
                "roles/web.toml:1: file[0].source: `/etc/hostname` must be a path inside the repository",
            ),
            (
                "[[file]]\npath = \"/a\"\ntemplate = \"templates/../../x\"\n",
                "file[0].template: `templates/../../x` must be",
            ),
            ("[[package]]\nname = \"p\"\ndeb = \"/tmp/p.deb\"\n", "package[0].deb: `/tmp/p.deb` must be a path inside"),
            ("[[file]]\npath = \"/a\"\nsource = \"\"\n", "file[0].source: `` must be a path inside"),
        ] {
            let e = parse_role("roles/web.toml", text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
