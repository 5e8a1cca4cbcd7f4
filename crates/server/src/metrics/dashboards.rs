//! `[[dashboards]]` of crew.toml: named sets of panels the Metrics page draws, checked when the config loads.

use serde::Deserialize;

/// `[[dashboards]]` of crew.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    pub name: String,
    #[serde(default)]
    pub panels: Vec<PanelSection>,
}

/// One graph: a series name (every label set of it, or those matching `labels = "k=v,..."`) and a stat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSection {
    pub title: Option<String>,
    pub series: String,
    pub stat: Option<String>,
    pub labels: Option<String>,
}

const STATS: [&str; 12] = ["count", "rate", "sum", "mean", "min", "max", "p50", "p90", "p99", "value", "distinct", ""];

/// Checks the dashboards: names unique, each panel's stat one of crew's.
pub fn check(dashboards: &[DashboardSection]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, d) in dashboards.iter().enumerate() {
        if !seen.insert(d.name.as_str()) {
            return Err(format!("dashboards[{i}]: `{}` is named twice", d.name));
        }
        for (j, p) in d.panels.iter().enumerate() {
            if let Some(s) = &p.stat {
                if !STATS.contains(&s.as_str()) || s.is_empty() {
                    return Err(format!(
                        "dashboards[{i}].panels[{j}].stat = \"{s}\": one of count, rate, sum, mean, min, max, p50, p90, p99, value, distinct"
                    ));
                }
            }
            if p.series.is_empty() {
                return Err(format!("dashboards[{i}].panels[{j}].series: a series name"));
            }
        }
    }
    Ok(())
}
