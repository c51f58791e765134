//! The flags stay at the edge: `ua serve`'s `ServeConfig` becomes the
//! instance layer's `Settings` here, at start and at each reload.

use crate::config::ServeConfig;
use crate::instance::settings::{LimitSettings, Settings};
use crate::instance::tables::Caps;

/// What the registry and everything under it go by, of `config`.
pub fn instance_settings(config: &ServeConfig) -> Settings {
    Settings {
        assignments: config.assignments.clone(),
        agent: config.agent.clone(),
        node_id: config.node_id.clone(),
        instance_expiry: config.instance_expiry,
        reattach_grace: config.reattach_grace,
        replay_bytes: config.replay_bytes,
        max_keep: config.max_keep,
        warm: config.warm,
        caps: Caps {
            max_instances: config.max_instances,
            max_running: config.max_running,
            max_builds: config.max_builds,
            max_build_queue: config.max_build_queue,
        },
        limits: LimitSettings {
            memory_mb: config.memory_mb,
            pids_limit: config.pids_limit,
            cpus: config.cpus,
            disk_mb: config.disk_mb,
            runtime: config.runtime.clone(),
            max_memory_mb: config.max_memory_mb,
            max_pids_limit: config.max_pids_limit,
            max_cpus: config.max_cpus,
            max_disk_mb: config.max_disk_mb,
            max_terminals: config.max_terminals,
        },
        build_timeout: config.build_timeout,
        build_network: config.build_network,
        pull: config.pull,
    }
}
