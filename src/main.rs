mod assignment;
mod config;
mod redact;
mod seal;
mod spec;
mod store;
mod terminado;
fn main() {}
