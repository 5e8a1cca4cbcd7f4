//! The order a host's resources converge in. Edges: `require` (after), `before` (before), `notify` (before, and
//! refresh it on change), `subscribe` (after, and refresh on its change), plus automatic ones: a file,
//! directory or symlink after its nearest declared parent directory, after its owner user and group; a user
//! after its group. Topological order with ties broken by declaration order; a cycle is an error that names it.

use crate::model::{InfraError, Resource, Spec};
use std::collections::{BTreeSet, HashMap};

/// An edge of the order: `from` converges before `to`; `refresh` when a change of `from` refreshes `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub refresh: bool,
}

/// The resources' indices in converge order, and the edges (for refreshes and for skipping the dependents of
/// a failure). `resources` are in declaration order (roles in the host's order, each in its file's order).
pub fn order(resources: &[Resource]) -> Result<(Vec<usize>, Vec<Edge>), InfraError> {
    let ids: HashMap<String, usize> = resources.iter().enumerate().map(|(i, r)| (r.id(), i)).collect();
    let find = |i: usize, reference: &str| {
        ids.get(reference).copied().ok_or_else(|| InfraError::At {
            file: resources[i].file.clone(),
            line: resources[i].line,
            key: resources[i].id(),
            message: format!("refers to `{reference}`, which no role of this host declares"),
        })
    };
    let mut edges = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        for d in &r.edges.require {
            edges.push(Edge { from: find(i, d)?, to: i, refresh: false });
        }
        for d in &r.edges.before {
            edges.push(Edge { from: i, to: find(i, d)?, refresh: false });
        }
        for d in &r.edges.notify {
            edges.push(Edge { from: i, to: find(i, d)?, refresh: true });
        }
        for d in &r.edges.subscribe {
            edges.push(Edge { from: find(i, d)?, to: i, refresh: true });
        }
        // Automatic edges, only to what is declared.
        let (path, owner, group) = match &r.spec {
            Spec::File { path, owner, group, .. } | Spec::Directory { path, owner, group, .. } => {
                (Some(path.as_str()), owner.as_deref(), group.as_deref())
            }
            Spec::Symlink { path, .. } => (Some(path.as_str()), None, None),
            Spec::User { group, .. } => (None, None, group.as_deref()),
            _ => (None, None, None),
        };
        if let Some(path) = path {
            let mut p = std::path::Path::new(path).parent();
            while let Some(dir) = p {
                if let Some(&d) = ids.get(&format!("directory:{}", dir.display())) {
                    edges.push(Edge { from: d, to: i, refresh: false });
                    break;
                }
                p = dir.parent();
            }
        }
        if let Some(&u) = owner.and_then(|o| ids.get(&format!("user:{o}"))) {
            edges.push(Edge { from: u, to: i, refresh: false });
        }
        if let Some(&g) = group.and_then(|g| ids.get(&format!("group:{g}"))) {
            edges.push(Edge { from: g, to: i, refresh: false });
        }
    }
    // Kahn's algorithm; of the ready resources, the first declared goes first.
    let n = resources.len();
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &edges {
        indegree[e.to] += 1;
        out[e.from].push(e.to);
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut sorted = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        sorted.push(i);
        for &j in &out[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if sorted.len() < n {
        return Err(InfraError::Cycle(cycle(resources, &out, &indegree)));
    }
    Ok((sorted, edges))
}

/// Names one cycle among the resources left with incoming edges: `service:a → file:/b → service:a`.
fn cycle(resources: &[Resource], out: &[Vec<usize>], indegree: &[usize]) -> String {
    let start = (0..resources.len()).find(|&i| indegree[i] > 0).expect("a resource in the cycle");
    // Walk edges that stay among the unsorted until a resource repeats.
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next =
            out[at].iter().copied().find(|&j| indegree[j] > 0).expect("every resource left has a successor left");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut names: Vec<String> = path[pos..].iter().map(|&i| resources[i].id()).collect();
            names.push(resources[next].id());
            return names.join(" → ");
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_role;

    fn ids(text: &str) -> Result<Vec<String>, String> {
        let role = parse_role("roles/t.toml", text).map_err(|e| e.to_string())?;
        let (sorted, _) = order(&role.resources).map_err(|e| e.to_string())?;
        Ok(sorted.iter().map(|&i| role.resources[i].id()).collect())
    }

    #[test]
    fn declaration_order_unless_an_edge_says_otherwise() {
        // The file is declared before its directory and its owner: automatic edges put them first.
        let got = ids(r#"
[[file]]
path = "/srv/www/app.conf"
content = "x"
owner = "www"
notify = ["service:www"]

[[service]]
name = "www"

[[directory]]
path = "/srv"

[[user]]
name = "www"
group = "www"

[[group]]
name = "www"

[[command]]
name = "first"
run = "true"
before = ["directory:/srv"]
"#)
        .unwrap();
        assert_eq!(
            got,
            ["group:www", "user:www", "command:first", "directory:/srv", "file:/srv/www/app.conf", "service:www"]
        );
    }

    #[test]
    fn subscribe_and_require_order_too() {
        let got = ids("[[service]]\nname = \"a\"\nsubscribe = [\"file:/etc/a\"]\n[[command]]\nname = \"c\"\nrun = \"x\"\nrequire = [\"service:a\"]\n[[file]]\npath = \"/etc/a\"\ncontent = \"\"\n").unwrap();
        assert_eq!(got, ["file:/etc/a", "service:a", "command:c"]);
    }

    #[test]
    fn a_cycle_is_named_and_an_unknown_reference_is_refused() {
        let e = ids("[[service]]\nname = \"a\"\nrequire = [\"service:b\"]\n[[service]]\nname = \"b\"\nrequire = [\"service:a\"]\n").unwrap_err();
        assert_eq!(e, "a cycle: service:a → service:b → service:a");
        let e = ids("[[service]]\nname = \"a\"\nrequire = [\"service:a\"]\n").unwrap_err();
        assert_eq!(e, "a cycle: service:a → service:a");
        let e = ids("[[service]]\nname = \"a\"\nnotify = [\"service:zz\"]\n").unwrap_err();
        assert_eq!(e, "roles/t.toml:1: service:a: refers to `service:zz`, which no role of this host declares");
    }
}
