//! ua's agent: the program inside every container that holds its
//! terminals, runs the setup script and reads and writes files as the
//! image's user. The library is the wire protocol, shared with ua.
#![warn(missing_docs)]

pub mod proto;
