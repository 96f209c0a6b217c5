//! The audit log in the sled store: entries (kept in sled, or in segment
//! files as [`Run`]s), the subject index as runs, and the Merkle tree's
//! nodes, of which only those from [`STORED_FROM_LEVEL`] up are stored.
//! A child of the sled backend: the key layout stays in this module tree.

use std::cell::RefCell;
use std::collections::BTreeMap;

use medrelay_crypto::PrincipalId;
use medrelay_policy::{hash_children, LeafOpening, MerkleHash, MerkleTree, NodeId, NodeStore, TreeError};
use sled::transaction::TransactionalTree;

use super::segment::{self, Run, StoredEntry, ValueRef};
use super::{abort, backend, key, read_u64, Gate, SledStore, TxResult, LOG_SIZE};
use crate::store::{LogAppend, Store as _, StoreError};

/// Merkle nodes below this level are not stored: each is recomputed from
/// the (at most 8) leaf hashes under it, stored with the log entries. The
/// nodes sled keeps drop from two per entry to one per eight; an inclusion
/// proof reads the 16 entries around its leaf (one or two runs).
pub(super) const STORED_FROM_LEVEL: u8 = 4;

/// Where a stored Merkle node is kept.
pub(super) fn node_key(id: NodeId) -> Vec<u8> {
    key(b"n/", &[&id.to_key()])
}

/// The Merkle tree's nodes as committed in sled, plus the nodes of appends
/// planned but not yet committed. Planning happens under the store's append
/// lock and the plan is committed in the same transaction as the change the
/// events record, so entries, nodes and size move together or not at all.
/// Nodes below [`STORED_FROM_LEVEL`] are recomputed from leaf hashes.
pub(super) struct Overlay<'a> {
    store: &'a SledStore,
    /// Leaves are read from segments: the gate is held while this lives.
    _gate: &'a Gate<'a>,
    size: u64,
    /// Leaves committed in sled when the overlay was made.
    committed: u64,
    pending: BTreeMap<NodeId, MerkleHash>,
    /// Leaf hashes read so far (a run is read whole).
    leaves: RefCell<BTreeMap<u64, MerkleHash>>,
}

impl Overlay<'_> {
    /// The stored hash of committed leaf `i`.
    fn committed_leaf(&self, i: u64) -> Result<MerkleHash, StoreError> {
        if let Some(h) = self.leaves.borrow().get(&i) {
            return Ok(*h);
        }
        let mut leaves = self.leaves.borrow_mut();
        for (j, (_, leaf)) in self.store.raw_entries(self._gate, i, i + 1)? {
            leaves.insert(j, leaf_hash(&leaf)?);
        }
        leaves.get(&i).copied().ok_or(StoreError::Corrupt("log entry missing"))
    }
}

impl NodeStore for Overlay<'_> {
    type Error = StoreError;

    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn get(&self, id: NodeId) -> Result<Option<MerkleHash>, StoreError> {
        if let Some(h) = self.pending.get(&id) {
            return Ok(Some(*h));
        }
        if id.level >= STORED_FROM_LEVEL {
            return match self.store.db.get(node_key(id)).map_err(backend)? {
                Some(v) => {
                    MerkleHash::from_slice(&v).map(Some).map_err(|_| StoreError::Corrupt("merkle node"))
                }
                None => Ok(None),
            };
        }
        // The perfect subtree over leaves [first, end), if they all exist.
        let width = 1u64 << id.level;
        let Some(end) = id.index.checked_mul(width).and_then(|f| f.checked_add(width)) else {
            return Ok(None);
        };
        if end > self.size {
            return Ok(None);
        }
        let mut level = Vec::with_capacity(width as usize);
        for i in end - width..end {
            let h = match self.pending.get(&NodeId { level: 0, index: i }) {
                Some(h) => *h,
                None if i < self.committed => self.committed_leaf(i)?,
                None => return Err(StoreError::Corrupt("merkle leaf missing")),
            };
            level.push(h);
        }
        while level.len() > 1 {
            level = level.chunks(2).map(|p| hash_children(&p[0], &p[1])).collect();
        }
        Ok(level.pop())
    }

    fn put_nodes(&mut self, nodes: &[(NodeId, MerkleHash)], new_size: u64) -> Result<(), StoreError> {
        self.pending.extend(nodes.iter().copied());
        self.size = new_size;
        Ok(())
    }
}

pub(super) fn parse_opening(raw: &[u8]) -> Result<LeafOpening, StoreError> {
    LeafOpening::from_bytes(raw).map_err(|_| StoreError::Corrupt("log entry"))
}

pub(super) fn leaf_hash(raw: &[u8; 32]) -> Result<MerkleHash, StoreError> {
    MerkleHash::from_slice(raw).map_err(|_| StoreError::Corrupt("leaf hash"))
}

/// Log entries as stored: opening and leaf hash.
pub(super) fn stored_entries(events: &[&LogAppend]) -> Vec<StoredEntry> {
    events.iter().map(|e| (e.opening.to_bytes(), *e.opening.leaf_hash().as_bytes())).collect()
}

/// An entry kept in sled itself: its opening, then its leaf hash.
pub(super) fn inline_entry(e: &LogAppend) -> Vec<u8> {
    [e.opening.to_bytes().as_slice(), e.opening.leaf_hash().as_bytes()].concat()
}

/// The segment values of log entries, `MAX_RUN` to a value.
pub(super) fn run_values(entries: &[StoredEntry]) -> Vec<Vec<u8>> {
    entries.chunks(segment::MAX_RUN).map(Run::value_of).collect()
}

/// The [`Run`]s of `entries`, once [`run_values`] of them were appended at `refs`.
pub(super) fn runs_of(entries: &[StoredEntry], refs: &[ValueRef]) -> Result<Vec<Run>, StoreError> {
    entries.chunks(segment::MAX_RUN).zip(refs).map(|(c, r)| Run::new(c, *r)).collect()
}

pub(super) fn tree_err(e: TreeError<StoreError>) -> StoreError {
    match e {
        TreeError::Store(e) => e,
        TreeError::MissingNode(_) => StoreError::Corrupt("merkle node missing"),
        TreeError::OutOfRange { what, value, size } => {
            StoreError::OutOfRange(format!("{what} {value} is out of range for tree size {size}"))
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// Log appends planned outside a transaction.
pub(super) struct LogPlan {
    pub(super) start: u64,
    new_size: u64,
    nodes: Vec<(NodeId, MerkleHash)>,
}

/// Writes planned log appends inside a transaction; returns their indices.
pub(super) fn tx_apply_log(
    tx: &TransactionalTree,
    plan: &LogPlan,
    events: &[&LogAppend],
) -> TxResult<Vec<u64>> {
    tx_apply_log_placed(tx, plan, events, &[])
}

/// [`tx_apply_log`] for entries whose openings were appended to segments
/// as `runs` (covering `events` in order; none: the openings are stored in
/// sled, one key each). A run is stored under its first entry's index, and
/// each subject's consecutive entries as one `ls/` key (subject, first
/// index) whose value is their count (empty for one).
pub(super) fn tx_apply_log_placed(
    tx: &TransactionalTree,
    plan: &LogPlan,
    events: &[&LogAppend],
    runs: &[Run],
) -> TxResult<Vec<u64>> {
    let size = match tx.get(LOG_SIZE)? {
        Some(v) => match read_u64(&v) {
            Ok(n) => n,
            Err(e) => return abort(e),
        },
        None => 0,
    };
    if size != plan.start {
        return abort(StoreError::Backend("log size changed under the append lock".into()));
    }
    let idxs: Vec<u64> = (plan.start..).take(events.len()).collect();
    if runs.is_empty() {
        for (event, idx) in events.iter().zip(&idxs) {
            tx.insert(key(b"l/", &[&idx.to_be_bytes()]), inline_entry(event))?;
        }
    } else {
        if runs.iter().map(Run::len).sum::<u64>() != events.len() as u64 {
            return abort(StoreError::Backend("log runs do not cover the events".into()));
        }
        let mut at = plan.start;
        for run in runs {
            tx.insert(key(b"l/", &[&at.to_be_bytes()]), run.encode())?;
            at += run.len();
        }
    }
    // Subject runs: (subject, first index, count), open while consecutive.
    let mut open: Vec<(PrincipalId, u64, u64)> = Vec::new();
    let mut closed = Vec::new();
    for (event, &idx) in events.iter().zip(&idxs) {
        let (keep, done): (Vec<_>, Vec<_>) = open.into_iter().partition(|r| event.subjects.contains(&r.0));
        open = keep;
        closed.extend(done);
        for s in &event.subjects {
            match open.iter_mut().find(|r| r.0 == *s) {
                Some(r) if r.1 + r.2 == idx => r.2 += 1,
                Some(_) => {} // listed twice in one event
                None => open.push((*s, idx, 1)),
            }
        }
    }
    closed.extend(open);
    for (subject, first, count) in closed {
        let value = if count == 1 { Vec::new() } else { count.to_be_bytes().to_vec() };
        tx.insert(key(b"ls/", &[subject.as_bytes(), &first.to_be_bytes()]), value)?;
    }
    for (id, h) in &plan.nodes {
        if id.level >= STORED_FROM_LEVEL {
            tx.insert(node_key(*id), &h.as_bytes()[..])?;
        }
    }
    tx.insert(LOG_SIZE, &plan.new_size.to_be_bytes()[..])?;
    Ok(idxs)
}

/// The number of entries an `ls/` value stands for.
pub(super) fn subject_run_len(v: &[u8]) -> Result<u64, StoreError> {
    if v.is_empty() {
        Ok(1)
    } else {
        read_u64(v).map_err(|_| StoreError::Corrupt("log subject run"))
    }
}

impl SledStore {
    /// The log's Merkle tree as committed (the caller holds the gate).
    pub(super) fn tree<'a>(&'a self, gate: &'a Gate<'a>) -> Result<MerkleTree<Overlay<'a>>, StoreError> {
        let size = self.log_size()?;
        Ok(MerkleTree::new(Overlay {
            store: self,
            _gate: gate,
            size,
            committed: size,
            pending: BTreeMap::new(),
            leaves: RefCell::new(BTreeMap::new()),
        }))
    }

    /// Plans appending `events` to the committed log (call under the lock).
    pub(super) fn plan(&self, gate: &Gate<'_>, events: &[&LogAppend]) -> Result<LogPlan, StoreError> {
        let mut tree = self.tree(gate)?;
        let start = tree.size().map_err(tree_err)?;
        for e in events {
            tree.append_leaf_hash(e.opening.leaf_hash()).map_err(tree_err)?;
        }
        let o = tree.into_store();
        Ok(LogPlan { start, new_size: o.size, nodes: o.pending.into_iter().collect() })
    }

    /// The raw openings of every stored item (an entry kept in sled, or a
    /// [`Run`]) that holds one of the log entries `[start, end)`, in index
    /// order: a run's entries outside the range come too. Fails if an
    /// entry of the range is missing.
    pub(super) fn raw_entries(
        &self,
        _gate: &Gate<'_>,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, StoredEntry)>, StoreError> {
        const MISSING: StoreError = StoreError::Corrupt("log entry missing");
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        // The item holding `start` is the last one stored at or before it.
        let from = match self.db.range(key(b"l/", &[])..=key(b"l/", &[&start.to_be_bytes()])).next_back() {
            Some(item) => item.map_err(backend)?.0,
            None => return Err(MISSING),
        };
        let mut need = start;
        for item in self.db.range(from..) {
            if need >= end {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            let Some(ib) = k.strip_prefix(b"l/") else { break };
            let first = read_u64(ib)?;
            if first > need {
                return Err(MISSING);
            }
            if segment::is_run(&v) {
                let run = Run::decode(&v)?;
                let parts = run.split(&self.segs.read(&run.value)?)?;
                out.extend((first..).zip(parts));
                need = need.max(first + run.len());
            } else {
                let at = v.len().checked_sub(32).ok_or(StoreError::Corrupt("log entry"))?;
                let leaf: [u8; 32] = v[at..].try_into().map_err(|_| StoreError::Corrupt("log entry"))?;
                out.push((first, (v[..at].to_vec(), leaf)));
                need = need.max(first + 1);
            }
        }
        if need < end {
            return Err(MISSING);
        }
        Ok(out)
    }

    /// `read` of each of the log entries `[start, end)` (all present).
    pub(super) fn entries_in<T>(
        &self,
        start: u64,
        end: u64,
        read: impl Fn(&StoredEntry) -> Result<T, StoreError>,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let gate = self.gate_read()?;
        self.raw_entries(&gate, start, end)?
            .into_iter()
            .filter(|(i, _)| (start..end).contains(i))
            .map(|(i, e)| Ok((i, read(&e)?)))
            .collect()
    }

    /// Log entries `[start, end)` (all present).
    pub(super) fn openings(&self, start: u64, end: u64) -> Result<Vec<(u64, LeafOpening)>, StoreError> {
        self.entries_in(start, end, |(raw, _)| parse_opening(raw))
    }

    /// Up to `limit` indices of entries about `subject`, from `from`.
    pub(super) fn subject_indices(
        &self,
        subject: &PrincipalId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        // Keys are (subject, first index) runs; the one covering `from`
        // may start before it.
        let prefix = key(b"ls/", &[subject.as_bytes()]);
        let start = key(&prefix, &[&from.to_be_bytes()]);
        let before = match self.db.range(prefix.clone()..start.clone()).next_back() {
            Some(item) => Some(item.map_err(backend)?),
            None => None,
        };
        let mut out = Vec::new();
        for item in before.into_iter().map(Ok).chain(self.db.range(start..)) {
            let (k, v) = item.map_err(backend)?;
            let Some(first) = k.strip_prefix(prefix.as_slice()) else { break };
            let first = read_u64(first)?;
            let end = first.saturating_add(subject_run_len(&v)?);
            out.extend((first.max(from)..end).take(limit - out.len()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
