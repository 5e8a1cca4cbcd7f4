//! crew.toml (`crew_server::config::FileConfig::parse` and the sections' own checks) and role files
//! (`crew_infra::parse_role`) on arbitrary text.
//! Oracle: no panic; a role's error names its file and a line of the text.
#![no_main]

use crew_infra::{parse_role, InfraError};
use crew_server::config::FileConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(file) = FileConfig::parse(text, Path::new("crew.toml")) {
        if let Some(chat) = &file.chat {
            let _ = chat.check();
        }
        if let Some(metrics) = &file.metrics {
            let _ = metrics.check();
        }
        let _ = crew_server::infra::check(&file.hosts, file.infra.as_ref());
        let _ = crew_server::alerts::check(&file.alerts);
        let _ = crew_server::metrics::dashboards::check(&file.dashboards);
    }
    match parse_role("roles/fuzz.toml", text) {
        Ok(role) => assert_eq!(role.name, "fuzz"),
        Err(InfraError::At { file, line, .. }) => {
            assert_eq!(file, "roles/fuzz.toml");
            assert!(line >= 1 && line <= text.split('\n').count(), "line {line} of {}", text.split('\n').count());
        }
        Err(_) => {}
    }
});
