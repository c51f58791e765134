//! Reload without a restart (docs/API.md, "Reload"): on SIGHUP the server
//! reads its settings again (flags, `--env-file`, environment), re-reads the
//! key file, and swaps in what can change live; every session stays. A bad
//! key file or a bad setting refuses the whole reload with a log line, and
//! what was in force stays.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use clap::Args;
use tokio::signal::unix::Signal;

use crate::config::ServeConfig;
use crate::crypto::seal::Keyring;
use crate::server::http::App;

/// What a reload needs besides the app: how the server was started.
pub struct Reloader {
    /// The flags after `ua serve`, as given.
    pub cmdline: Vec<String>,
    /// The address the server listens on (for the default public origins).
    pub listening: Option<SocketAddr>,
}

/// The flags after `serve` in this process's command line.
pub fn serve_cmdline() -> Vec<String> {
    std::env::args()
        .skip_while(|a| a != "serve")
        .skip(1)
        .collect()
}

/// The settings of `ua serve CMDLINE`, with `--env-file`'s values under the
/// flags and over the environment.
pub fn resolve(cmdline: &[String]) -> Result<ServeConfig, String> {
    let plain = parse(cmdline)?;
    let Some(file) = plain.env_file.clone() else {
        return Ok(plain);
    };
    let mut args = env_file_args(&file)?;
    args.extend(cmdline.iter().cloned());
    parse(&args).map_err(|e| format!("{} (or a flag): {e}", file.display()))
}

fn parse(args: &[String]) -> Result<ServeConfig, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServeConfig::from_args(&args).map_err(|e| {
        // clap's first line says what is wrong; the rest is usage.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid settings");
        first.trim_start_matches("error: ").to_string()
    })
}

/// The `UA_*=value` lines of an environment file (systemd's
/// `EnvironmentFile=` syntax) as `--flag=value` arguments. Other variables
/// (such as `DOCKER_HOST`) are left to the environment.
pub fn env_file_args(path: &Path) -> Result<Vec<String>, String> {
    // Missing counts as empty, as for systemd's `EnvironmentFile=-FILE`.
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        read => {
            read.map_err(|e| format!("cannot read the settings file {}: {e}", path.display()))?
        }
    };
    let command = ServeConfig::augment_args(clap::Command::new("serve"));
    let mut args = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "{} line {}: not a NAME=value line",
                path.display(),
                number + 1
            ));
        };
        let name = name.trim();
        if !name.starts_with("UA_") || name == "UA_ENV_FILE" {
            continue;
        }
        let value = unquote(value.trim());
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == name))
            .and_then(|arg| arg.get_long());
        match flag {
            Some(flag) => args.push(format!("--{flag}={value}")),
            None => {
                return Err(format!(
                    "{} line {}: {name} is not a setting of ua serve",
                    path.display(),
                    number + 1
                ))
            }
        }
    }
    Ok(args)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// Watches SIGHUP (registered before the server says it is ready, so an
/// early reload never kills it) and reloads on each.
pub async fn on_sighup(mut hangup: Signal, app: Arc<App>, reloader: Reloader) {
    while hangup.recv().await.is_some() {
        log::info!("reload asked (SIGHUP)");
        reload(&app, &reloader);
    }
}

/// Reads the settings and the key file again and puts them in force.
pub fn reload(app: &App, reloader: &Reloader) {
    let new = match resolve(&reloader.cmdline) {
        Ok(config) => config,
        Err(e) => {
            log::error!("reload refused: {e}; the settings in force stay");
            return;
        }
    };
    let keys = match Keyring::load(&new.key_file) {
        Ok(keys) => keys,
        Err(e) => {
            log::error!("reload refused: {e:#}; the keys and settings in force stay");
            return;
        }
    };
    let old = app.config.load();
    let (live, kept) = keep_restart_only(&old, new);
    for flag in kept {
        log::warn!("reload: {flag} changed; that takes effect at the next restart");
    }
    let changes = live_changes(&old, &live);
    for change in &changes {
        log::info!("reload: {change}");
    }
    log::info!(
        "reload: key file {} read ({} keys); {} settings changed",
        live.key_file.display(),
        keys.len(),
        changes.len()
    );
    app.keys.store(keys);
    app.origins.store(live.origin_allowlist());
    app.public_origins
        .store(live.public_origins(reloader.listening));
    app.hosts.store(live.allowed_hosts(reloader.listening));
    log::set_max_level(live.log_level);
    app.registry
        .reconfigure(crate::server::settings::instance_settings(&live));
    app.config.store(live);
}

fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

/// `new` with the settings that cannot change while the server runs put
/// back to `old`'s, and the flags of those that were asked to change.
fn keep_restart_only(old: &ServeConfig, mut new: ServeConfig) -> (ServeConfig, Vec<String>) {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident),*) => {$(
            if format!("{:?}", new.$field) != format!("{:?}", old.$field) {
                kept.push(flag(stringify!($field)));
                new.$field = old.$field.clone();
            }
        )*};
    }
    // The listener, the state directory and lock, the agent checked at
    // start, the pools sized at start,
    // and what the provisioner took at start (build limits, pulls).
    keep!(
        listen,
        state_dir,
        agent,
        node_id,
        max_builds,
        build_timeout,
        build_network,
        pull,
        max_connections,
        browser_terminal,
        web_dir,
        worker_threads,
        env_file
    );
    (new, kept)
}

/// `--flag: old → new` for every live setting that changed.
fn live_changes(old: &ServeConfig, new: &ServeConfig) -> Vec<String> {
    let mut changes = Vec::new();
    macro_rules! compare {
        ($($field:ident),*) => {$(
            let (before, after) = (format!("{:?}", old.$field), format!("{:?}", new.$field));
            if before != after {
                changes.push(format!("{}: {before} → {after}", flag(stringify!($field))));
            }
        )*};
    }
    compare!(
        key_file,
        assignments,
        instance_expiry,
        idle_timeout,
        reattach_grace,
        max_instances,
        max_running,
        max_keep,
        max_build_queue,
        max_upload_mb,
        warm,
        allowed_origins,
        allowed_hosts,
        public_origin,
        replay_bytes,
        memory_mb,
        pids_limit,
        cpus,
        disk_mb,
        max_disk_mb,
        max_terminals,
        max_memory_mb,
        max_pids_limit,
        max_cpus,
        log_level
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_become_flags_under_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("default");
        std::fs::write(
            &file,
            "# comment\n\nUA_MAX_INSTANCES=7\nUA_ALLOWED_ORIGINS=\"https://a.example\"\n\
             DOCKER_HOST=unix:///x\nUA_IDLE_TIMEOUT=5m\n",
        )
        .unwrap();
        let cmdline: Vec<String> = ["--env-file", file.to_str().unwrap(), "--idle-timeout", "9m"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let config = resolve(&cmdline).unwrap();
        assert_eq!(config.max_instances, 7);
        assert_eq!(config.allowed_origins, "https://a.example");
        assert_eq!(config.idle_timeout, std::time::Duration::from_secs(540));

        std::fs::write(&file, "UA_MAX_INSTANCE=7\n").unwrap();
        let e = resolve(&cmdline).unwrap_err();
        assert!(e.contains("UA_MAX_INSTANCE is not a setting"), "{e}");
        std::fs::write(&file, "UA_MAX_INSTANCES=many\n").unwrap();
        let e = resolve(&cmdline).unwrap_err();
        assert!(e.contains("many"), "{e}");
    }

    #[test]
    fn restart_only_settings_are_kept_and_named() {
        let old = ServeConfig::from_args(&["--max-builds", "2"]).unwrap();
        let new = ServeConfig::from_args(&["--max-builds", "3", "--max-instances", "9"]).unwrap();
        let (live, kept) = keep_restart_only(&old, new);
        assert_eq!(kept, vec!["--max-builds".to_string()]);
        assert_eq!(live.max_builds, 2);
        assert_eq!(
            live_changes(&old, &live),
            vec![format!("--max-instances: {} → 9", old.max_instances)]
        );
    }
}
