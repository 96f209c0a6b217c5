//! Reclaiming segment space, and measuring where the store's bytes are.
//!
//! Segment bytes stop being referenced when a grant is revoked (its stored
//! re-encryptions are deleted), when a request fails or the server crashes
//! after its values were appended, and when a capsule is uploaded twice by
//! concurrent batches. Records, capsules, principals and log entries are
//! never deleted or replaced (a record id or principal id is stored once: a
//! second upload of it fails whole, and its appended bytes are of the
//! failed-request kind; a registration refused for a taken id or a bad
//! enrollment is found before anything is appended). [`SledStore::compact_segments`]
//! copies every referenced value into a new segment, repoints sled at the
//! copies and deletes the old segment files.

use std::collections::{BTreeMap, HashMap};

use super::segment::{refs_in, with_refs, ValueRef};
use super::{backend, SledStore, SEGMENTED};
use crate::store::StoreError;

/// What [`SledStore::compact_segments`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compacted {
    /// Referenced values copied.
    pub values: u64,
    /// Segment files deleted.
    pub segments_removed: u64,
    /// Bytes of segment files before.
    pub bytes_before: u64,
    /// Bytes of segment files after.
    pub bytes_after: u64,
}

/// Where the stored bytes of one key prefix are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefixUsage {
    /// Entries under the prefix.
    pub entries: u64,
    /// Their keys' bytes (in sled).
    pub key_bytes: u64,
    /// Their values' bytes in sled (a segment reference for segmented
    /// prefixes).
    pub value_bytes: u64,
    /// Bytes their values take in segment files.
    pub segment_bytes: u64,
}

/// The live data of a store by key prefix, and its segment files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageUsage {
    /// Live keys and values by prefix (`r/`, `l/`, `n/`, …).
    pub prefixes: BTreeMap<String, PrefixUsage>,
    /// Segment files.
    pub segment_files: u64,
    /// Their total size.
    pub segment_file_bytes: u64,
}

impl StorageUsage {
    /// Bytes of the segment files that no live key references (headers
    /// included): what [`SledStore::compact_segments`] would reclaim.
    pub fn segment_garbage(&self) -> u64 {
        let live: u64 = self.prefixes.values().map(|p| p.segment_bytes).sum();
        self.segment_file_bytes.saturating_sub(live)
    }
}

/// Largest run of values copied in one append during a compaction.
const CHUNK: usize = 8 << 20;

/// A key whose values a compaction moves: its old stored value, the
/// references in it, and the bytes of those in a file being compacted.
struct Pending {
    key: sled::IVec,
    old: sled::IVec,
    refs: Vec<ValueRef>,
    values: Vec<Option<Vec<u8>>>,
}

/// A key whose values were copied: the stored value to swap in, if the
/// key still holds `old`, and the copies.
struct Copied {
    key: sled::IVec,
    old: sled::IVec,
    new: Vec<u8>,
    copies: Vec<ValueRef>,
}

/// [`SledStore::compact_sparse_segments`] leaves a segment file alone until this
/// many of its bytes are unreferenced (and half of it).
pub const RECLAIM_MIN_BYTES: u64 = 4 << 20;

impl SledStore {
    /// The live keys and values by prefix (the text up to and including the
    /// first `/`), and the segment files' sizes.
    pub fn storage_usage(&self) -> Result<StorageUsage, StoreError> {
        let _gate = self.gate_write()?;
        let mut prefixes: BTreeMap<String, PrefixUsage> = BTreeMap::new();
        for item in self.db.iter() {
            let (k, v) = item.map_err(backend)?;
            let end = k.iter().position(|&b| b == b'/').map_or(k.len().min(4), |i| i + 1);
            let u = prefixes.entry(String::from_utf8_lossy(&k[..end]).into_owned()).or_default();
            u.entries += 1;
            u.key_bytes += k.len() as u64;
            u.value_bytes += v.len() as u64;
            if SEGMENTED.contains(&&k[..end]) {
                u.segment_bytes += refs_in(&v)?.iter().map(|r| u64::from(r.len)).sum::<u64>();
            }
        }
        let files = self.segs.files()?;
        Ok(StorageUsage {
            prefixes,
            segment_files: files.len() as u64,
            segment_file_bytes: files.iter().map(|(_, n)| n).sum(),
        })
    }

    /// Copies every referenced segment value into new segments, repoints
    /// sled at the copies (durably), then deletes the old segment files.
    /// Does nothing if no segment byte is unreferenced. This is
    /// `medrelay-server compact` (server stopped); a running server
    /// reclaims sparse segments by itself
    /// ([`SledStore::compact_sparse_segments`]).
    ///
    /// Every value is checked against its hash on the way; a mismatch stops
    /// the compaction with [`StoreError::Corrupt`] before anything is
    /// deleted. A crash at any point leaves every reference valid (old
    /// segments go only after sled points at the copies); a compaction
    /// run again finishes the job. Stores and reads wait only while it
    /// starts and while it swaps.
    pub fn compact_segments(&self) -> Result<Compacted, StoreError> {
        let usage = self.storage_usage()?;
        let old: Vec<u32> = self.segs.files()?.into_iter().map(|(id, _)| id).collect();
        if usage.segment_garbage() <= old.len() as u64 * super::segment::FILE_HEADER_LEN {
            let bytes = usage.segment_file_bytes;
            return Ok(Compacted { bytes_before: bytes, bytes_after: bytes, ..Compacted::default() });
        }
        self.compact_only(&old)
    }

    /// What a running server calls from its periodic maintenance: compacts
    /// the segment files (the one being appended to included) whose
    /// unreferenced bytes are at least [`RECLAIM_MIN_BYTES`] and at least
    /// half the file, so segment space stays within about twice the live
    /// data plus a few MiB per file, with no operator action (a revoked
    /// whole-chart grant leaves ~8 MB of keys). The first call counts each
    /// file's unreferenced bytes with a scan of the index (readers and
    /// writers go on meanwhile); later ones use the counts kept as
    /// references are dropped. A compaction holds stores and reads only
    /// while it starts and while it swaps references and deletes files
    /// (see `compact_only`).
    pub fn compact_sparse_segments(&self) -> Result<Compacted, StoreError> {
        let files = self.segs.files()?;
        let garbage = self.garbage_counts(&files)?;
        let victims: Vec<u32> = files
            .iter()
            .filter(|(id, size)| {
                let g = garbage.get(id).copied().unwrap_or(0);
                g >= RECLAIM_MIN_BYTES && 2 * g >= *size
            })
            .map(|(id, _)| *id)
            .collect();
        if victims.is_empty() {
            let bytes = files.iter().map(|(_, n)| n).sum();
            return Ok(Compacted { bytes_before: bytes, bytes_after: bytes, ..Compacted::default() });
        }
        self.compact_only(&victims)
    }

    /// Counts `bytes` of segment values as unreferenced (their last
    /// reference was dropped, or the request that appended them failed).
    pub(super) fn note_garbage(&self, dropped: &[ValueRef]) {
        if let Ok(mut g) = self.garbage.lock() {
            if let Some(map) = g.as_mut() {
                for r in dropped {
                    *map.entry(r.segment).or_default() += u64::from(r.len);
                }
            }
        }
    }

    /// Unreferenced bytes per segment file (headers included); counted by
    /// a scan the first time.
    fn garbage_counts(&self, files: &[(u32, u64)]) -> Result<HashMap<u32, u64>, StoreError> {
        let lock = || self.garbage.lock().map_err(|_| StoreError::Backend("garbage counts poisoned".into()));
        if let Some(map) = lock()?.as_ref() {
            return Ok(map.clone());
        }
        let mut live: HashMap<u32, u64> = HashMap::new();
        {
            let _gate = self.gate_read()?;
            for prefix in SEGMENTED {
                for item in self.db.scan_prefix(prefix) {
                    let (_, v) = item.map_err(backend)?;
                    for r in refs_in(&v)? {
                        *live.entry(r.segment).or_default() += u64::from(r.len);
                    }
                }
            }
        }
        let counted: HashMap<u32, u64> = files
            .iter()
            .map(|(id, size)| (*id, size.saturating_sub(live.get(id).copied().unwrap_or(0))))
            .collect();
        let mut g = lock()?;
        Ok(g.get_or_insert(counted).clone())
    }

    /// Moves every value referenced from the segment files `victims` into
    /// the segment being appended to (a new one, if it is a victim),
    /// repoints sled at the copies (durably), then deletes the victims.
    ///
    /// Stores and reads wait only at the two ends: while the gate is taken
    /// exclusively to start (no request is then between its append and its
    /// commit, and appends move past a victim), and to swap the references
    /// and delete the files. The scan and the copies run beside them:
    /// nothing new can reference a victim (appends go to the active file,
    /// and a stored value is referenced by its one key only), and a key
    /// changed meanwhile (a revocation removing it) keeps its change, its
    /// copy counted as garbage.
    fn compact_only(&self, victims: &[u32]) -> Result<Compacted, StoreError> {
        let _one =
            self.compacting.lock().map_err(|_| StoreError::Backend("compaction lock poisoned".into()))?;
        let bytes_before = {
            let _gate = self.gate_write()?;
            let before = self.segs.files()?.iter().map(|(_, n)| n).sum();
            if victims.contains(&self.segs.active_id()?) {
                self.segs.roll()?;
            }
            before
        };
        let mut out = Compacted { bytes_before, ..Compacted::default() };
        let mut copied: Vec<Copied> = Vec::new();
        {
            let _gate = self.gate_read()?;
            let mut pending: Vec<Pending> = Vec::new();
            let mut pending_bytes = 0;
            for prefix in SEGMENTED {
                for item in self.db.scan_prefix(prefix) {
                    let (key, old) = item.map_err(backend)?;
                    // None for a log entry written alone, kept in sled.
                    let refs = refs_in(&old)?;
                    if !refs.iter().any(|r| victims.contains(&r.segment)) {
                        continue;
                    }
                    // Only the values in a victim move (a record's metadata
                    // and envelope may be in two files).
                    let values = refs
                        .iter()
                        .map(|r| victims.contains(&r.segment).then(|| self.segs.read(r)).transpose())
                        .collect::<Result<Vec<_>, _>>()?;
                    pending_bytes += values.iter().flatten().map(Vec::len).sum::<usize>();
                    pending.push(Pending { key, old, refs, values });
                    if pending_bytes >= CHUNK {
                        copied.extend(self.copy_values(&mut pending)?);
                        pending_bytes = 0;
                    }
                }
            }
            copied.extend(self.copy_values(&mut pending)?);
        }
        let _gate = self.gate_write()?;
        for c in &copied {
            let swapped =
                self.db.compare_and_swap(&c.key, Some(&c.old), Some(c.new.as_slice())).map_err(backend)?;
            match swapped {
                Ok(()) => out.values += c.copies.len() as u64,
                Err(_) => self.note_garbage(&c.copies),
            }
        }
        self.db.flush().map_err(backend)?;
        for id in victims {
            self.segs.remove(*id)?;
            out.segments_removed += 1;
        }
        self.segs.sync()?;
        if let Ok(mut g) = self.garbage.lock() {
            if let Some(map) = g.as_mut() {
                for id in victims {
                    map.remove(id);
                }
            }
        }
        out.bytes_after = self.segs.files()?.iter().map(|(_, n)| n).sum();
        tracing::info!(
            values = out.values,
            segments_removed = out.segments_removed,
            bytes_before = out.bytes_before,
            bytes_after = out.bytes_after,
            "segments compacted"
        );
        Ok(out)
    }

    /// Appends the values of `pending` (synced) and returns, for each key,
    /// the stored value that points at the copies.
    fn copy_values(&self, pending: &mut Vec<Pending>) -> Result<Vec<Copied>, StoreError> {
        let values: Vec<&[u8]> =
            pending.iter().flat_map(|p| p.values.iter().flatten().map(Vec::as_slice)).collect();
        let mut fresh = self.segs.append(&values)?.into_iter();
        let mut out = Vec::with_capacity(pending.len());
        for p in pending.drain(..) {
            let mut refs = p.refs.clone();
            let mut copies = Vec::new();
            for (r, v) in refs.iter_mut().zip(&p.values) {
                if v.is_some() {
                    *r = fresh.next().ok_or(StoreError::Backend("compaction lost a copy".into()))?;
                    copies.push(*r);
                }
            }
            out.push(Copied { new: with_refs(&p.old, &refs)?, key: p.key, old: p.old, copies });
        }
        Ok(out)
    }
}
