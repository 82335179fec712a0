//! Raft's durable state in the data directory: term, vote, commit, configuration and log, written
//! with fsync before any message that depends on them leaves (so a restarted node never votes
//! twice in a term, Raft §5.2 and Figure 2 "persistent state on all servers").
//!
//! [`DiskStorage`] implements raft's `Storage` over a `MemStorage` (the in-memory copy raft reads)
//! and writes the whole state to `DIR/raft-state` at every change: a new file, fsync, rename over
//! the old one, fsync of the directory. The file ends with a SHA-256 of its contents, so a
//! corrupted file is refused at start instead of read. The log of this group holds one empty entry
//! per term (nothing is proposed), so writing it whole stays small; compaction is not done yet.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

const MAGIC: &[u8; 8] = b"FLBRAFT1";
const FILE: &str = "raft-state";

/// Raft's storage, kept on disk.
pub struct DiskStorage {
    mem: MemStorage,
    path: PathBuf,
}

impl std::fmt::Debug for DiskStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DiskStorage {
    /// Opens the state in `dir`, or starts a new one whose configuration is `voters` (every
    /// member starts from the same configuration, as raft-rs requires without a snapshot).
    pub fn open(dir: &Path, voters: &[u64]) -> anyhow::Result<DiskStorage> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let path = dir.join(FILE);
        let mem = MemStorage::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (hs, cs, entries) = decode(&bytes).with_context(|| {
                    format!(
                        "reading {}: the Raft state is damaged; if this node's data is lost, \
                         remove the file and let it rejoin as a new member",
                        path.display()
                    )
                })?;
                let mut core = mem.wl();
                core.set_conf_state(cs);
                core.append(&entries)
                    .with_context(|| format!("loading the log of {}", path.display()))?;
                core.set_hardstate(hs);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                mem.initialize_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let s = DiskStorage { mem, path };
        s.persist()?;
        Ok(s)
    }

    /// The in-memory copy, to apply a `Ready` to before [`DiskStorage::persist`].
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// Writes the whole state durably.
    pub fn persist(&self) -> anyhow::Result<()> {
        let state = self.mem.initial_state()?;
        let first = self.mem.first_index()?;
        let last = self.mem.last_index()?;
        let entries = if last >= first {
            self.mem
                .entries(first, last + 1, None, GetEntriesContext::empty(false))?
        } else {
            Vec::new()
        };
        let bytes = encode(&state.hard_state, &state.conf_state, &entries)?;
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {} (disk full?)", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing the directory {}", dir.display()))?;
        }
        Ok(())
    }
}

impl Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.mem.snapshot(request_index, to)
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) -> anyhow::Result<()> {
    out.extend_from_slice(&u32::try_from(bytes.len())?.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode(hs: &HardState, cs: &ConfState, entries: &[Entry]) -> anyhow::Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    put(&mut out, &hs.write_to_bytes()?)?;
    put(&mut out, &cs.write_to_bytes()?)?;
    out.extend_from_slice(&u32::try_from(entries.len())?.to_be_bytes());
    for e in entries {
        put(&mut out, &e.write_to_bytes()?)?;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &out);
    out.extend_from_slice(digest.as_ref());
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        if self.0.len() < n {
            bail!("the file ends early");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> anyhow::Result<usize> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(w) as usize)
    }
    fn chunk(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.u32()?;
        self.take(n)
    }
}

/// Decodes a state file. The file was written by this node (checked by its digest) before any
/// byte of it is handed to protobuf.
fn decode(bytes: &[u8]) -> anyhow::Result<(HardState, ConfState, Vec<Entry>)> {
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        bail!("not a ferrolb Raft state file");
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if ring::digest::digest(&ring::digest::SHA256, body).as_ref() != digest {
        bail!("the checksum does not match");
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let hs = HardState::parse_from_bytes(r.chunk()?)?;
    let cs = ConfState::parse_from_bytes(r.chunk()?)?;
    let n = r.u32()?;
    let mut entries = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        entries.push(Entry::parse_from_bytes(r.chunk()?)?);
    }
    Ok((hs, cs, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferrolb-raft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_restart_reloads_term_vote_commit_and_log() {
        let dir = tempdir("reload");
        {
            let s = DiskStorage::open(&dir, &[1, 2, 3]).unwrap();
            let e = Entry {
                index: 1,
                term: 5,
                ..Default::default()
            };
            s.mem().wl().append(&[e]).unwrap();
            let hs = HardState {
                term: 5,
                vote: 2,
                commit: 1,
                ..Default::default()
            };
            s.mem().wl().set_hardstate(hs);
            s.persist().unwrap();
        }
        let s = DiskStorage::open(&dir, &[9]).unwrap();
        let st = s.initial_state().unwrap();
        assert_eq!(
            (st.hard_state.term, st.hard_state.vote, st.hard_state.commit),
            (5, 2, 1)
        );
        // The stored configuration wins over the command line's on restart.
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(s.last_index().unwrap(), 1);
        assert_eq!(s.term(1).unwrap(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A vote request of candidate `from` to `to` in `term` (Raft §5.2).
    fn vote_request(from: u64, to: u64, term: u64) -> raft::prelude::Message {
        let mut m = raft::prelude::Message::default();
        m.set_msg_type(raft::prelude::MessageType::MsgRequestVote);
        m.from = from;
        m.to = to;
        m.term = term;
        m
    }

    #[test]
    fn a_raft_node_restarted_on_its_storage_keeps_its_vote() {
        let dir = tempdir("vote");
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = raft::Config {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 2,
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        {
            let s = DiskStorage::open(&dir, &[1, 2, 3]).unwrap();
            let mut node = raft::RawNode::new(&config, s, &logger).unwrap();
            // A vote request of candidate 2 in term 7 (Raft §5.2): granted and persisted.
            node.step(vote_request(2, 1, 7)).unwrap();
            let rd = node.ready();
            let hs = rd.hs().unwrap().clone();
            assert_eq!((hs.term, hs.vote), (7, 2));
            node.store().mem().wl().set_hardstate(hs);
            node.store().persist().unwrap();
        }
        let s = DiskStorage::open(&dir, &[1, 2, 3]).unwrap();
        let mut node = raft::RawNode::new(&config, s, &logger).unwrap();
        assert_eq!((node.raft.term, node.raft.vote), (7, 2));
        // Candidate 3 asks for a vote in the same term: refused, the vote was cast.
        node.step(vote_request(3, 1, 7)).unwrap();
        let rd = node.ready();
        let reply = rd
            .messages()
            .iter()
            .chain(rd.persisted_messages())
            .find(|m| m.get_msg_type() == raft::prelude::MessageType::MsgRequestVoteResponse)
            .unwrap();
        assert!(reply.reject);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempdir("damaged");
        DiskStorage::open(&dir, &[1]).unwrap();
        let path = dir.join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", DiskStorage::open(&dir, &[1]).unwrap_err());
        assert!(err.contains("damaged"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
