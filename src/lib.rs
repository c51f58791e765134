//! ua (uAssign): a sealed spec becomes a Docker container and a terminal in
//! the browser. The module map:
//!
//! - `config`: flags and `UA_*` variables of `ua serve`
//! - `seal`: the key file, sealing and opening specs
//! - `spec`: the plaintext spec and assignment names
//! - `assignment`: finding and rendering an assignment, the build context
//! - `assignment_image`: shared-image mode: content hash, tag, old versions
//! - `base_images`: `FROM` lines and the `--pull` policy
//! - `instance_files`: `instance/` and `setup.sh.tmpl`, the upload tar, image users
//! - `provision`: making a shared-image instance: image once, files, setup
//! - `redact`: keeping spec data out of messages
//! - `docker`: every call to the Docker daemon
//! - `raw_attach`: the terminal's attach, with a detach key nobody can type
//! - `gate`: the container's main process, the gate before the terminal
//! - `health`: the `/health` probe, cached so that it cannot load Docker
//! - `host_check`: which `Host` names ua answers (DNS rebinding)
//! - `store`: instance records on disk and the state-directory lock
//! - `instances`: the live registry: get-or-create, lookup, attach, observe
//! - `tables`: the registry's tables and capacity decisions (pure)
//! - `create`: making one instance, with one rollback
//! - `create_timings`: the phases of one create for its log line
//! - `housekeeping`: clean, expire, tidy, reconcile, shutdown
//! - `instance_errors`: why an instance was not made or attached
//! - `terminal`: one running terminal, its flow control and replay buffer
//! - `terminado`: the websocket codec (client and server messages) and the UTF-8 decoder
//! - `close`: websocket close codes, their reasons and what they mean to clients
//! - `session`: one websocket attached to a terminal
//! - `observe`: a read-only websocket on a terminal (staff views)
//! - `files`: graded files read out of a container as the image's USER, streamed
//! - `write_deadline`: the write deadline of every HTTP connection
//! - `metrics`: counters for `/metrics`
//! - `trouble`: OOM kills and fork refusals inside instances, logged and counted
//! - `panics`: panics logged once per kind and counted, never a raw backtrace
//! - `web`: the browser terminal's files
//! - `http`: routes, CORS, limits, the connection loop
//! - `server`: `ua serve` put together; `serve`, the server in-process
//! - `admin`: the admin socket and its answers
//! - `admin_cli`: `ua status`, `ua list`, `ua clean` over the admin socket
//! - `stdout`: the tools' output; a closed pipe ends them quietly
//! - `handle`: short non-secret instance handles for logs and listings
//! - `reload`: SIGHUP: settings and keys read again, swapped in live
//! - `live`: `Swap`, a value a reload replaces
//! - `background`: the watchdog and status task, and the sweep
//! - `client`: the API from the client side
//! - `client_tls`: https/wss for the clients: rustls, system roots, `--ca-file`
//! - `connect`: `ua connect`, a terminal client
//! - `bench`: `ua bench`, the benchmark tool
//! - `bench_startup`: `ua bench --startup`, instance start-up and class starts
//! - `systemd`: socket activation, notifications
//! - `listen`: `--listen`: a TCP address or a unix socket path
//! - `logging`: journald's native protocol, `<N>` stderr lines, fatal errors
//! - `node`: `--node-id` and the node prefix of instance IDs
//! - `route`: the route token a load balancer hashes to pick a spec's node
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod admin_cli;
pub mod assignment;
pub mod assignment_image;
pub mod background;
pub mod base_images;
pub mod bench;
pub mod bench_startup;
pub mod client;
pub mod client_tls;
pub mod close;
pub mod config;
pub mod connect;
pub mod create;
mod create_timings;
pub mod docker;
pub mod files;
pub mod gate;
pub mod handle;
pub mod health;
pub mod host_check;
pub mod housekeeping;
pub mod http;
pub mod instance_errors;
pub mod instance_files;
pub mod instances;
pub mod listen;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod oom;
pub mod panics;
pub mod pool;
pub mod progress;
pub mod provision;
pub mod raw_attach;
pub mod redact;
pub mod reload;
pub mod route;
pub mod seal;
pub mod server;
pub mod session;
pub mod spec;
pub mod stdout;
pub mod store;
pub mod systemd;
pub mod tables;
pub mod terminado;
pub mod terminal;
pub mod trouble;
pub mod web;
pub mod write_deadline;
