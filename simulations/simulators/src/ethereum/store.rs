//! The Ethereum sim's event log: `chain.jsonl`, one [`Event`] per line,
//! appended and fsynced before the node answers; rewritten atomically by
//! `evm_revert`. A torn last line (crash mid-write) is dropped on open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::chain::Event;
use super::SimError;

/// The open log.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl EventLog {
    /// Opens (creating) `dir/chain.jsonl` and reads its events.
    pub fn open(dir: &Path) -> Result<(EventLog, Vec<Event>), SimError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("chain.jsonl");
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err(&path))?;
        let mut events = Vec::new();
        let mut good_len = 0usize;
        let mut offset = 0usize;
        for line in text.split_inclusive('\n') {
            offset += line.len();
            if !line.ends_with('\n') {
                break; // torn write
            }
            let ev: Event =
                serde_json::from_str(line.trim_end()).map_err(|e| SimError::Corrupt {
                    path: path.clone(),
                    reason: format!("line {}: {e}", events.len() + 1),
                })?;
            events.push(ev);
            good_len = offset;
        }
        if good_len != text.len() {
            tracing::warn!(path = %path.display(), "dropping torn last line of event log");
            file.set_len(good_len as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        Ok((EventLog { path, file }, events))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and fsyncs.
    pub fn append(&mut self, ev: &Event) -> Result<(), SimError> {
        self.append_unsynced(ev)?;
        self.sync()
    }

    /// Fsyncs what was appended.
    pub fn sync(&mut self) -> Result<(), SimError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Appends one event without fsync (call [`EventLog::sync`] before answering).
    pub fn append_unsynced(&mut self, ev: &Event) -> Result<(), SimError> {
        let mut line = serde_json::to_string(ev).map_err(|e| SimError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err(&self.path))
    }

    /// Replaces the log with `events`.
    pub fn rewrite(&mut self, events: &[Event]) -> Result<(), SimError> {
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            for ev in events {
                let line = serde_json::to_string(ev).map_err(|e| SimError::Corrupt {
                    path: tmp.clone(),
                    reason: e.to_string(),
                })?;
                f.write_all(line.as_bytes()).map_err(io_err(&tmp))?;
                f.write_all(b"\n").map_err(io_err(&tmp))?;
            }
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        Ok(())
    }
}
