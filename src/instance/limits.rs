//! An instance's limits: the assignment's settings capped by the operator's
//! ceilings (`--max-memory-mb` and the like), and the capped ones named once.

use crate::assignment::Settings;
use crate::engine::docker::Limits;
use crate::instance::settings::LimitSettings;

/// What `POST /spec` tells of an assignment beside the instance ID.
#[derive(Debug, Default)]
pub struct Notes {
    /// Its settings the operator's maxima cap, as sentences.
    pub capped: Vec<String>,
    /// It has a check (`check.sh.tmpl`).
    pub check: bool,
}

/// Capped settings already logged: one line per assignment and value.
pub(super) static CAPPED_LOGGED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The assignment's settings that the operator's maxima cap, each as a
/// sentence for the log: what it asks, the flag, what it gets.
pub fn capped_settings(settings: &Settings, config: &LimitSettings) -> Vec<String> {
    let mut capped = Vec::new();
    let mut check = |name: &str, asked: Option<f64>, flag: &str, max: f64| {
        if let Some(asked) = asked.filter(|&asked| asked > max) {
            capped.push(format!(
                "{name} {asked} is above the server's {flag} {max}: {max} is used"
            ));
        }
    };
    let float = |v: Option<i64>| v.map(|v| v as f64);
    check(
        "memoryMB",
        float(settings.memory_mb),
        "--max-memory-mb",
        config.max_memory_mb as f64,
    );
    check(
        "pidsLimit",
        float(settings.pids_limit),
        "--max-pids-limit",
        config.max_pids_limit as f64,
    );
    check("cpus", settings.cpus, "--max-cpus", config.max_cpus);
    check(
        "diskMB",
        float(settings.disk_mb),
        "--max-disk-mb",
        config.max_disk_mb as f64,
    );
    check(
        "maxTerminals",
        settings.max_terminals.map(f64::from),
        "--max-terminals",
        config.max_terminals as f64,
    );
    capped
}

/// Terminals an instance of the assignment may run at once: its
/// `maxTerminals` (default [`DEFAULT_TERMINALS`]), capped by the server's.
pub fn max_terminals(settings: &Settings, config: &LimitSettings) -> u32 {
    settings
        .max_terminals
        .unwrap_or(DEFAULT_TERMINALS)
        .clamp(1, config.max_terminals.max(1))
}

/// `maxTerminals` when an assignment.json does not say.
pub const DEFAULT_TERMINALS: u32 = 4;

/// `checkTimeout` above the server's `--build-timeout`, which caps it
/// (docs/API.md, "Assignment settings"), as `capped_settings` words it.
pub fn capped_timeouts(settings: &Settings, build_timeout: std::time::Duration) -> Vec<String> {
    let max = humantime::format_duration(build_timeout);
    settings
        .check_timeout
        .filter(|&asked| asked > build_timeout)
        .map(|asked| {
            let asked = humantime::format_duration(asked);
            format!(
                "checkTimeout {asked} is above the server's --build-timeout {max}: {max} is used"
            )
        })
        .into_iter()
        .collect()
}

/// The container limits: the assignment's, capped at the operator's maxima.
pub fn container_limits(settings: &Settings, config: &LimitSettings) -> Limits {
    let memory_mb = settings
        .memory_mb
        .unwrap_or(config.memory_mb)
        .clamp(16, config.max_memory_mb);
    let pids = settings
        .pids_limit
        .unwrap_or(config.pids_limit)
        .clamp(16, config.max_pids_limit);
    let cpus = settings
        .cpus
        .unwrap_or(config.cpus)
        .clamp(0.01, config.max_cpus);
    let disk_mb = settings
        .disk_mb
        .unwrap_or(config.disk_mb)
        .clamp(0, config.max_disk_mb);
    Limits {
        memory_bytes: memory_mb * 1024 * 1024,
        pids,
        nano_cpus: (cpus * 1e9) as i64,
        disk_bytes: disk_mb * 1024 * 1024,
        runtime: settings
            .runtime
            .clone()
            .unwrap_or_else(|| config.runtime.clone()),
    }
}

impl crate::instance::registry::Registry {
    /// What `POST /spec` says of `assignment`: its capped settings
    /// (`"capped"`) and whether it has a check; none when it cannot be
    /// read (the create says why).
    pub async fn notes_of(&self, assignment: &crate::protocol::spec::AssignmentName) -> Notes {
        let config = self.settings.load();
        let name = assignment.clone();
        tokio::task::spawn_blocking(move || {
            crate::assignment::Assignment::find(&config.assignments, &name)
                .map(|found| {
                    let mut capped = capped_settings(&found.settings, &config.limits);
                    capped.extend(capped_timeouts(&found.settings, config.build_timeout));
                    Notes {
                        capped,
                        check: found.has_check(),
                    }
                })
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limits of `ua serve` without limit flags (config.rs's defaults).
    fn flag_defaults() -> LimitSettings {
        LimitSettings {
            memory_mb: 512,
            pids_limit: 256,
            cpus: 1.0,
            disk_mb: 0,
            runtime: String::new(),
            max_memory_mb: 2048,
            max_pids_limit: 1024,
            max_cpus: 2.0,
            max_disk_mb: 10240,
            max_terminals: 8,
        }
    }

    #[test]
    fn a_check_timeout_above_the_build_timeout_is_named() {
        let asked = Settings {
            check_timeout: Some(std::time::Duration::from_secs(120)),
            ..Settings::default()
        };
        assert_eq!(
            capped_timeouts(&asked, std::time::Duration::from_secs(60)),
            ["checkTimeout 2m is above the server's --build-timeout 1m: 1m is used"]
        );
        assert!(capped_timeouts(&asked, std::time::Duration::from_secs(600)).is_empty());
    }

    #[test]
    fn capped_settings_are_named_with_their_flag() {
        let config = LimitSettings {
            max_memory_mb: 1024,
            ..flag_defaults()
        };
        let asked = Settings {
            memory_mb: Some(4096),
            cpus: Some(0.5),
            ..Settings::default()
        };
        assert_eq!(
            capped_settings(&asked, &config),
            ["memoryMB 4096 is above the server's --max-memory-mb 1024: 1024 is used"]
        );
        assert!(capped_settings(&Settings::default(), &config).is_empty());
    }

    #[test]
    fn assignment_limits_are_capped_by_the_operator() {
        let config = LimitSettings {
            disk_mb: 512,
            max_disk_mb: 1024,
            max_terminals: 8,
            ..flag_defaults()
        };
        let asked = |disk_mb| Settings {
            disk_mb,
            ..Settings::default()
        };
        let mib = 1024 * 1024;
        assert_eq!(
            container_limits(&asked(None), &config).disk_bytes,
            512 * mib
        );
        assert_eq!(
            container_limits(&asked(Some(64)), &config).disk_bytes,
            64 * mib
        );
        assert_eq!(
            container_limits(&asked(Some(1 << 20)), &config).disk_bytes,
            1024 * mib
        );
        assert_eq!(container_limits(&asked(Some(-5)), &config).disk_bytes, 0);
        let unlimited = flag_defaults();
        assert_eq!(container_limits(&asked(None), &unlimited).disk_bytes, 0);
    }
}
