//! Instance records on disk: one JSON file per instance, written atomically
//! (temporary file, fsync, rename, fsync of the directory), and the lock that
//! keeps a second server off the same state directory.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::ids::is_instance_id;

/// What the server must remember of an instance across restarts. It holds no
/// spec data in plaintext: the spec is its identity and, sealed, its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// The instance ID.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
    /// The spec it was made for.
    #[serde(rename = "specID")]
    pub spec_id: String,
    /// The assignment's name.
    pub assignment: String,
    /// The image its container was made from.
    pub image: String,
    /// Docker's ID of its container.
    pub container_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds when the last session ended (or creation): expiry counts from here.
    pub last_active_at: i64,
    /// The image is an assignment image shared with other instances: removing
    /// the instance leaves it (absent in records of older versions: false).
    #[serde(default)]
    pub shared_image: bool,
    /// Unix seconds: not expired before then (the spec's `keepUntil`, capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<i64>,
    /// How its container starts the terminal (absent in records of older
    /// versions: an exec beside an idle main process).
    #[serde(default)]
    pub gate: crate::engine::gate::Gate,
    /// The socket directory of its agent (gate `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_key: Option<String>,
    /// Terminals it may run at once, fixed when it was made (agent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_terminals: Option<u32>,
    /// The sealed spec it was made from, as sent (never opened here): a
    /// check renders its template with it. Absent in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_spec: Option<String>,
}

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another server holds the lock.
    #[error("state directory {dir} is locked by another ua server (pid {pid}); stop it or pick another --state-dir")]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The other server's pid, as the lock file says.
        pid: String,
    },
    /// The directory or its lock cannot be made or written.
    #[error("cannot use state directory {dir}: {cause}")]
    Io {
        /// The state directory.
        dir: PathBuf,
        /// What the file system said.
        cause: io::Error,
    },
}

/// The state directory, locked for this process for as long as it lives.
pub struct Store {
    records: PathBuf,
    _lock: File,
}

const LOCK_FILE: &str = "ua.lock";
const RECORDS_DIR: &str = "instances";

impl Store {
    /// Creates the directory if needed and takes its lock.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io_error = |cause| StoreError::Io {
            dir: dir.to_owned(),
            cause,
        };
        let records = dir.join(RECORDS_DIR);
        fs::create_dir_all(&records).map_err(io_error)?;
        fs::set_permissions(&records, fs::Permissions::from_mode(0o700)).map_err(io_error)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(dir.join(LOCK_FILE))
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        lock.set_len(0).map_err(io_error)?;
        lock.rewind().map_err(io_error)?;
        writeln!(lock, "{}", std::process::id()).map_err(io_error)?;
        let store = Store {
            records,
            _lock: lock,
        };
        store.remove_leftover_temporaries();
        Ok(store)
    }

    fn path_of(&self, instance_id: &str) -> PathBuf {
        debug_assert!(is_instance_id(instance_id));
        self.records.join(format!("{instance_id}.json"))
    }

    /// Writes a record so that a crash leaves either the old or the new file.
    pub fn save(&self, record: &InstanceRecord) -> io::Result<()> {
        let target = self.path_of(&record.instance_id);
        let temporary = target.with_extension("json.tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(record)?)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, &target)?;
        self.sync_dir()
    }

    /// Deletes a record; a missing one is fine.
    pub fn delete(&self, instance_id: &str) -> io::Result<()> {
        match fs::remove_file(self.path_of(instance_id)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every readable record. An unreadable one is renamed `*.bad` and
    /// reported, never deleted: it may hold what an operator needs.
    pub fn load_all(&self) -> io::Result<Vec<InstanceRecord>> {
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.records)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<InstanceRecord>(&b).map_err(|e| e.to_string())
            }) {
                Ok(record) if is_instance_id(&record.instance_id) => records.push(record),
                Ok(_) => set_aside(&path, "its instance ID is malformed"),
                Err(e) => set_aside(&path, &e),
            }
        }
        Ok(records)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.records)?.sync_all()
    }

    fn remove_leftover_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.records) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(path);
            }
        }
    }
}

fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension("json.bad");
    // The file is named after the instance's ID: the log names its handle.
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = path.parent().unwrap_or(Path::new("")).display();
    if is_instance_id(stem) {
        let h = crate::crypto::handle::of(stem);
        log::error!(
            ua_instance = h;
            "the record of instance {h} in {dir} is unreadable ({why}); moved aside to a .json.bad file"
        );
    } else {
        log::error!(
            "instance record {} is unreadable ({why}); moved to {}",
            path.display(),
            aside.display()
        );
    }
    let _ = fs::rename(path, aside);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ids::random_id;

    fn record(id: &str) -> InstanceRecord {
        InstanceRecord {
            instance_id: id.into(),
            spec_id: "s".into(),
            assignment: "a/b".into(),
            image: format!("ua/{id}"),
            container_id: "c".into(),
            created_at: 1,
            keep_until: None,
            last_active_at: 2,
            shared_image: false,
            gate: crate::engine::gate::Gate::Open,
            agent_key: None,
            max_terminals: None,
            sealed_spec: None,
        }
    }

    #[test]
    fn saves_loads_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = random_id();
        store.save(&record(&id)).unwrap();
        let mut updated = record(&id);
        updated.last_active_at = 3;
        store.save(&updated).unwrap();
        assert_eq!(store.load_all().unwrap(), vec![updated]);
        store.delete(&id).unwrap();
        store.delete(&id).unwrap();
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn records_of_older_versions_load_as_per_instance_images() {
        let old = r#"{"instanceID":"0123456789abcdef0123456789abcdef","specID":"s","assignment":"a/b","image":"ua/x","containerId":"c","createdAt":1,"lastActiveAt":2}"#;
        let record: InstanceRecord = serde_json::from_str(old).unwrap();
        assert!(!record.shared_image);
        // Their containers idle beside an exec terminal.
        assert_eq!(record.gate, crate::engine::gate::Gate::Legacy);
    }

    #[test]
    fn a_second_store_on_the_directory_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn corrupt_records_are_set_aside_and_temporaries_removed() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join(RECORDS_DIR);
        fs::create_dir_all(&records).unwrap();
        fs::write(records.join("x.json"), b"{trunc").unwrap();
        fs::write(records.join("y.json.tmp"), b"{}").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.load_all().unwrap().is_empty());
        assert!(records.join("x.json.bad").exists());
        assert!(!records.join("y.json.tmp").exists());
    }
}
