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

use std::collections::BTreeMap;

use super::segment::{refs_in, with_refs};
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
    /// Does nothing if no segment byte is unreferenced.
    ///
    /// Every value is checked against its hash on the way; a mismatch stops
    /// the compaction with [`StoreError::Corrupt`] before anything is
    /// deleted. A crash at any point leaves every reference valid (old
    /// segments go only after sled points at the copies); a compaction
    /// run again finishes the job. Stores and reads wait while it runs.
    pub fn compact_segments(&self) -> Result<Compacted, StoreError> {
        let usage = self.storage_usage()?;
        let _gate = self.gate_write()?;
        let old = self.segs.files()?;
        let mut out = Compacted { bytes_before: usage.segment_file_bytes, ..Compacted::default() };
        if usage.segment_garbage() <= old.len() as u64 * super::segment::FILE_HEADER_LEN {
            out.bytes_after = out.bytes_before;
            return Ok(out);
        }
        self.segs.roll()?;
        let mut pending: Vec<(sled::IVec, sled::IVec, Vec<Vec<u8>>)> = Vec::new();
        let mut pending_bytes = 0;
        for prefix in SEGMENTED {
            for item in self.db.scan_prefix(prefix) {
                let (k, v) = item.map_err(backend)?;
                // None for a log entry written alone, kept in sled.
                let values = refs_in(&v)?.iter().map(|r| self.segs.read(r)).collect::<Result<Vec<_>, _>>()?;
                if values.is_empty() {
                    continue;
                }
                pending_bytes += values.iter().map(Vec::len).sum::<usize>();
                pending.push((k, v, values));
                if pending_bytes >= CHUNK {
                    out.values += self.move_values(&mut pending)?;
                    pending_bytes = 0;
                }
            }
        }
        out.values += self.move_values(&mut pending)?;
        self.db.flush().map_err(backend)?;
        for (id, _) in &old {
            self.segs.remove(*id)?;
            out.segments_removed += 1;
        }
        self.segs.sync()?;
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

    /// Appends the values of `pending` (synced) and swaps each key from its
    /// old references to the new ones, unless the key changed meanwhile (a
    /// revocation removing a stored re-encryption). Returns the values moved.
    #[allow(clippy::type_complexity)]
    fn move_values(
        &self,
        pending: &mut Vec<(sled::IVec, sled::IVec, Vec<Vec<u8>>)>,
    ) -> Result<u64, StoreError> {
        let values: Vec<&[u8]> = pending.iter().flat_map(|(_, _, v)| v.iter().map(Vec::as_slice)).collect();
        let mut refs = self.segs.append(&values)?.into_iter();
        let mut moved = 0;
        for (k, old, vs) in pending.iter() {
            let new: Vec<_> = refs.by_ref().take(vs.len()).collect();
            let swapped =
                self.db.compare_and_swap(k, Some(old), Some(with_refs(old, &new)?)).map_err(backend)?;
            if swapped.is_ok() {
                moved += vs.len() as u64;
            }
        }
        pending.clear();
        Ok(moved)
    }
}
