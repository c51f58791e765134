//! Settings that a reload (SIGHUP) may swap while the server runs: readers
//! take a cheap snapshot (`load`), a reload replaces the whole value.

use std::sync::{Arc, RwLock};

/// A value that readers snapshot and a reload replaces.
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    /// Holds `value`.
    pub fn new(value: T) -> Swap<T> {
        Swap(RwLock::new(Arc::new(value)))
    }

    /// The current value; later swaps do not change this snapshot.
    pub fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the value for every later `load`.
    pub fn store(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}
