//! Instance: the live registry of instances and everything that makes,
//! keeps and removes them — get-or-create, the tables, one create with its
//! rollback, provisioning shared-image instances, the warm pool, records
//! on disk, housekeeping, graded files, checks, trouble inside containers. Uses
//! every layer below (`support` … `terminal`); knows no HTTP, no websocket
//! and no flags: the server hands it `Settings`, made of them.

pub(crate) mod attach;
pub(crate) mod check;
pub(crate) mod check_script;
pub(crate) mod create;
pub(crate) mod entry;
pub(crate) mod errors;
pub(crate) mod files;
pub(crate) mod housekeeping;
pub(crate) mod limits;
pub(crate) mod named;
pub(crate) mod pool;
pub(crate) mod provision;
pub(crate) mod reconcile;
pub(crate) mod registry;
pub(crate) mod settings;
pub(crate) mod settled;
pub(crate) mod shared_image;
pub mod store;
pub(crate) mod tables;
pub(crate) mod terminals;
pub(crate) mod trouble;
pub(crate) mod upload;
pub(crate) mod usage;
pub(crate) mod warm;
