//! On-disk state of the simulated bitcoind: `blocks.dat` (every block ever
//! mined, length-prefixed consensus bytes, append-only), `mempool.dat`
//! (accepted transactions, same framing, appended per transaction and
//! rewritten after each block) and `state.json` (wallet key, invalidated
//! blocks). Every write is fsynced before the caller answers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::{Block, BlockHash, Transaction};
use serde::{Deserialize, Serialize};

use super::SimError;

/// Small state kept as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedState {
    /// The wallet's BIP32 master key (tprv...). This is a test faucet on
    /// regtest; its key is stored in the clear.
    pub wallet_master: String,
    /// Receive addresses handed out.
    pub wallet_next_index: u32,
    /// Blocks marked invalid by `invalidateblock`.
    pub invalidated: Vec<BlockHash>,
}

/// Handles to the data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    blocks: File,
    mempool: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads length-prefixed records; truncates a torn tail left by a crash.
fn read_records(path: &Path) -> Result<(File, Vec<Vec<u8>>), SimError> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(io_err(path))?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos + 4 <= buf.len() {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if pos + 4 + len > buf.len() {
            break;
        }
        records.push(buf[pos + 4..pos + 4 + len].to_vec());
        pos += 4 + len;
    }
    if pos != buf.len() {
        tracing::warn!(path = %path.display(), kept = pos, len = buf.len(), "truncating torn record at end of file");
        file.set_len(pos as u64).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
    }
    file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
    Ok((file, records))
}

fn append_record(file: &mut File, path: &Path, bytes: &[u8], sync: bool) -> Result<(), SimError> {
    let len = u32::try_from(bytes.len()).map_err(|_| SimError::Corrupt {
        path: path.to_path_buf(),
        reason: "record larger than 4 GiB".into(),
    })?;
    let mut rec = Vec::with_capacity(bytes.len() + 4);
    rec.extend_from_slice(&len.to_le_bytes());
    rec.extend_from_slice(bytes);
    file.write_all(&rec).map_err(io_err(path))?;
    if sync {
        file.sync_data().map_err(io_err(path))?;
    }
    Ok(())
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SimError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Everything loaded from a data directory.
#[derive(Debug)]
pub struct Loaded {
    /// Blocks in the order they were mined.
    pub blocks: Vec<Block>,
    /// Mempool transactions in acceptance order (may include replaced ones).
    pub mempool: Vec<Transaction>,
    /// The JSON state, absent on first start.
    pub state: Option<PersistedState>,
}

impl Store {
    /// Opens (creating if needed) the data directory and reads it.
    pub fn open(dir: &Path) -> Result<(Store, Loaded), SimError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let blocks_path = dir.join("blocks.dat");
        let mempool_path = dir.join("mempool.dat");
        let (blocks_file, raw_blocks) = read_records(&blocks_path)?;
        let (mempool_file, raw_txs) = read_records(&mempool_path)?;
        let mut blocks = Vec::with_capacity(raw_blocks.len());
        for (i, raw) in raw_blocks.iter().enumerate() {
            let b: Block = deserialize(raw).map_err(|e| SimError::Corrupt {
                path: blocks_path.clone(),
                reason: format!("block record {i}: {e}"),
            })?;
            blocks.push(b);
        }
        let mempool = raw_txs
            .iter()
            .filter_map(|raw| deserialize::<Transaction>(raw).ok())
            .collect();
        let state_path = dir.join("state.json");
        let state = match fs::read(&state_path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes).map_err(|e| SimError::Corrupt {
                    path: state_path.clone(),
                    reason: e.to_string(),
                })?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(SimError::Io {
                    path: state_path,
                    source: e,
                })
            }
        };
        Ok((
            Store {
                dir: dir.to_path_buf(),
                blocks: blocks_file,
                mempool: mempool_file,
            },
            Loaded {
                blocks,
                mempool,
                state,
            },
        ))
    }

    /// Appends a block; with `sync`, fsyncs it (and any unsynced before it).
    pub fn append_block(&mut self, block: &Block, sync: bool) -> Result<(), SimError> {
        let path = self.dir.join("blocks.dat");
        append_record(&mut self.blocks, &path, &serialize(block), sync)
    }

    /// Fsyncs appended blocks.
    pub fn sync_blocks(&mut self) -> Result<(), SimError> {
        let path = self.dir.join("blocks.dat");
        self.blocks.sync_data().map_err(io_err(&path))
    }

    /// Appends an accepted mempool transaction and fsyncs.
    pub fn append_mempool_tx(&mut self, tx: &Transaction) -> Result<(), SimError> {
        let path = self.dir.join("mempool.dat");
        append_record(&mut self.mempool, &path, &serialize(tx), true)
    }

    /// Replaces the mempool file with exactly `txs`.
    pub fn rewrite_mempool<'a>(
        &mut self,
        txs: impl IntoIterator<Item = &'a Transaction>,
    ) -> Result<(), SimError> {
        let mut bytes = Vec::new();
        for tx in txs {
            let raw = serialize(tx);
            bytes.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&raw);
        }
        write_atomic(&self.dir, "mempool.dat", &bytes)?;
        let path = self.dir.join("mempool.dat");
        self.mempool = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(())
    }

    /// Writes the JSON state atomically.
    pub fn write_state(&self, state: &PersistedState) -> Result<(), SimError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| SimError::Corrupt {
            path: self.dir.join("state.json"),
            reason: e.to_string(),
        })?;
        write_atomic(&self.dir, "state.json", &bytes)
    }
}
