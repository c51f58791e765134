//! Instance: the live registry of instances and everything that makes,
//! keeps and removes them — get-or-create, the tables, one create with its
//! rollback, provisioning shared-image instances, the warm pool, records
//! on disk, housekeeping, graded files, trouble inside containers. Uses
//! every layer below (`support` … `terminal`, `config`); knows no HTTP and
//! no websocket.

pub mod create;
pub mod entry;
pub mod errors;
pub mod files;
pub mod housekeeping;
pub mod limits;
pub mod pool;
pub mod provision;
pub mod registry;
pub mod shared_image;
pub mod store;
pub mod tables;
pub mod trouble;
pub mod usage;
pub mod warm;
