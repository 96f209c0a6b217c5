//! Segment files: where the sled store keeps its large immutable values
//! (record envelopes and metadata, batch capsules, stored re-encryptions,
//! principals, bulk log entries), so that the
//! bytes on disk track the live data instead of sled's log-structured
//! pages, which keep superseded versions of every node a large value sits in.
//!
//! A segment is an append-only file `NNNNNN.seg` in the store's
//! `segments/` directory (0700; files 0600). A value is appended as it is,
//! with nothing around it; sled keeps, under the value's own key, a small
//! [`ValueRef`]: segment, offset, length and the value's SHA-256 (a record
//! keeps two under its one key, metadata and envelope; consecutive log
//! entries are one value, a [`Run`], under the first one's key). A read
//! checks the hash and fails with [`StoreError::Corrupt`] on a mismatch.
//!
//! Crash safety rests on an order: a request's values are written and
//! `fdatasync`ed before the sled transaction that references them commits
//! (and sled is flushed before the request returns). Bytes a failed or
//! crashed request wrote are never referenced, so never read; on open,
//! appends continue after the end of the last segment, whatever its tail
//! holds (a torn write is never interpreted). Unreferenced bytes (those
//! requests, a capsule uploaded twice, a revoked grant's re-encryptions)
//! are reclaimed by [`super::SledStore::compact_segments`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use medrelay_crypto::encoding::{Decoder, Encoder};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::store::StoreError;

const REF_MAGIC: &[u8; 4] = b"MSVR";
const REF_V1: u8 = 1;
/// An encoded [`ValueRef`]: magic, version, segment, offset, length, hash.
pub(super) const REF_LEN: usize = 5 + 4 + 8 + 4 + 32;
/// Every segment file starts with this (magic, version, padding).
const FILE_HEADER: &[u8; 8] = b"MRSG\x01\0\0\0";
/// Its length.
pub(super) const FILE_HEADER_LEN: u64 = FILE_HEADER.len() as u64;
/// A segment is closed and a new one started once it passes this size.
const ROLL_AT: u64 = 256 << 20;
/// Largest value kept in a segment (a grant's key material, the largest
/// value the server stores, is a few MiB).
const MAX_VALUE: u64 = 64 << 20;

fn io(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Backend(format!("segment {what}: {e}"))
}

const RUN_MAGIC: &[u8; 4] = b"MSVN";
const RUN_V1: u8 = 1;
/// Most entries in one [`Run`] (a reader of one entry reads its whole run:
/// 64 log entries are ~15 KB).
pub(super) const MAX_RUN: usize = 64;

/// Whether a value stored in sled is a [`Run`].
pub(super) fn is_run(stored: &[u8]) -> bool {
    stored.starts_with(RUN_MAGIC)
}

/// A log entry's opening and its leaf hash, as stored.
pub(super) type StoredEntry = (Vec<u8>, [u8; 32]);

/// Consecutive log entries appended together, stored under the first
/// one's key: one segment value (their openings back to back, then their
/// leaf hashes, 32 bytes each; one SHA-256 for the value) and each
/// opening's length. The leaf hashes are kept, not recomputed: the Merkle
/// nodes below level 4 are computed from them, so an opening altered on
/// disk fails its own inclusion check only, as when every leaf was stored.
/// One sled key for up to [`MAX_RUN`] entries instead of one each: sled's
/// file grows with the number of keys a request writes, not only with
/// their bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) lens: Vec<u32>,
    pub(super) value: ValueRef,
}

impl Run {
    /// The segment value of `entries` (at most [`MAX_RUN`]).
    pub(super) fn value_of(entries: &[StoredEntry]) -> Vec<u8> {
        let mut v: Vec<u8> = entries.iter().flat_map(|(o, _)| o.iter().copied()).collect();
        v.extend(entries.iter().flat_map(|(_, h)| h.iter().copied()));
        v
    }

    /// The run for `entries`, once [`Run::value_of`] them is appended at `value`.
    pub(super) fn new(entries: &[StoredEntry], value: ValueRef) -> Result<Self, StoreError> {
        let lens = entries
            .iter()
            .map(|(e, _)| {
                u32::try_from(e.len()).map_err(|_| StoreError::Backend("log entry too large".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { lens, value })
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(RUN_MAGIC, RUN_V1);
        e.u32(self.lens.len() as u32);
        for l in &self.lens {
            e.u32(*l);
        }
        e.fixed(&self.value.encode());
        e.finish()
    }

    pub(super) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let parsed = (|| -> Result<Option<Self>, medrelay_crypto::DecodeError> {
            let mut d = Decoder::open(b, RUN_MAGIC, &[RUN_V1], 5 + 4 + 4 * MAX_RUN + REF_LEN)?;
            let n = d.u32()? as usize;
            if n == 0 || n > MAX_RUN {
                return Ok(None);
            }
            let lens = (0..n).map(|_| d.u32()).collect::<Result<Vec<_>, _>>()?;
            let value: [u8; REF_LEN] = d.array()?;
            d.finish()?;
            Ok(ValueRef::decode(&value).ok().map(|value| Self { lens, value }))
        })();
        parsed.ok().flatten().ok_or(StoreError::Corrupt("log run"))
    }

    /// Number of entries.
    pub(super) fn len(&self) -> u64 {
        self.lens.len() as u64
    }

    /// Splits the run's value (read and checked) into its entries.
    pub(super) fn split(&self, value: &[u8]) -> Result<Vec<StoredEntry>, StoreError> {
        let openings: u64 = self.lens.iter().map(|l| u64::from(*l)).sum();
        if openings + 32 * self.len() != value.len() as u64 {
            return Err(StoreError::Corrupt("log run lengths"));
        }
        let (mut at, mut leaf) = (0, openings as usize);
        let mut out = Vec::with_capacity(self.lens.len());
        for l in &self.lens {
            let hash: [u8; 32] =
                value[leaf..leaf + 32].try_into().map_err(|_| StoreError::Corrupt("log run"))?;
            out.push((value[at..at + *l as usize].to_vec(), hash));
            at += *l as usize;
            leaf += 32;
        }
        Ok(out)
    }
}

/// Every segment reference a value stored in sled holds, in order: one
/// for a plain reference, several for a list of them (a record's metadata
/// and envelope), the run's one for a [`Run`], none for a value kept in
/// sled itself.
pub(super) fn refs_in(stored: &[u8]) -> Result<Vec<ValueRef>, StoreError> {
    if is_run(stored) {
        return Ok(vec![Run::decode(stored)?.value]);
    }
    if stored.is_empty() || !stored.len().is_multiple_of(REF_LEN) || !stored.starts_with(REF_MAGIC) {
        return Ok(Vec::new());
    }
    stored.chunks(REF_LEN).map(ValueRef::decode).collect()
}

/// `stored` with its references (as [`refs_in`] lists them) replaced by
/// `new`, one for one.
pub(super) fn with_refs(stored: &[u8], new: &[ValueRef]) -> Result<Vec<u8>, StoreError> {
    if refs_in(stored)?.len() != new.len() {
        return Err(StoreError::Backend("reference count changed".into()));
    }
    if is_run(stored) {
        let mut run = Run::decode(stored)?;
        run.value = new[0];
        return Ok(run.encode());
    }
    Ok(encode_refs(new))
}

/// A list of references, as sled stores it.
pub(super) fn encode_refs(refs: &[ValueRef]) -> Vec<u8> {
    refs.iter().flat_map(ValueRef::encode).collect()
}

/// Where a value lives in the segment files, and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ValueRef {
    pub(super) segment: u32,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) hash: [u8; 32],
}

impl ValueRef {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(REF_MAGIC, REF_V1);
        e.u32(self.segment).u64(self.offset).u32(self.len).fixed(&self.hash);
        e.finish()
    }

    pub(super) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        (|| -> Result<Self, medrelay_crypto::DecodeError> {
            let mut d = Decoder::open(b, REF_MAGIC, &[REF_V1], REF_LEN)?;
            let r = Self { segment: d.u32()?, offset: d.u64()?, len: d.u32()?, hash: d.array()? };
            d.finish()?;
            Ok(r)
        })()
        .map_err(|_| StoreError::Corrupt("segment reference"))
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    id: u32,
    file: File,
    len: u64,
    /// A write or sync failed: what the file holds past `len` is unknown,
    /// so the next append starts a new segment.
    broken: bool,
}

/// The segment files of one store.
#[derive(Debug)]
pub(super) struct Segments {
    dir: PathBuf,
    active: Mutex<Active>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
}

fn file_name(id: u32) -> String {
    format!("{id:06}.seg")
}

fn parse_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(unix)]
fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

#[cfg(not(unix))]
fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

fn open_options() -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("directory sync"))
}

#[cfg(unix)]
fn write_at(f: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, at)
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

#[cfg(not(unix))]
fn write_at(f: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
    let mut w = 0;
    while w < buf.len() {
        w += std::os::windows::fs::FileExt::seek_write(f, &buf[w..], at + w as u64)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn read_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    let mut r = 0;
    while r < buf.len() {
        match std::os::windows::fs::FileExt::seek_read(f, &mut buf[r..], at + r as u64)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => r += n,
        }
    }
    Ok(())
}

impl Segments {
    /// Opens the segments in `dir` (made 0700 if missing). Appends go to
    /// the newest segment, after its last byte.
    pub(super) fn open(dir: &Path) -> Result<Self, StoreError> {
        create_dir_private(dir).map_err(io("directory"))?;
        let newest = Self::list(dir)?.last().copied();
        let active = match newest {
            Some(id) => {
                let file = open_options().open(dir.join(file_name(id))).map_err(io("open"))?;
                let len = file.metadata().map_err(io("open"))?.len();
                Active { id, file, len, broken: len < FILE_HEADER.len() as u64 }
            }
            None => Self::create(dir, 1)?,
        };
        Ok(Self { dir: dir.to_owned(), active: Mutex::new(active), readers: Mutex::new(HashMap::new()) })
    }

    /// The segment ids present, ascending.
    fn list(dir: &Path) -> Result<Vec<u32>, StoreError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(io("directory"))? {
            let entry = entry.map_err(io("directory"))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn create(dir: &Path, id: u32) -> Result<Active, StoreError> {
        let file = open_options().create_new(true).open(dir.join(file_name(id))).map_err(io("create"))?;
        write_at(&file, FILE_HEADER, 0).and_then(|()| file.sync_all()).map_err(io("create"))?;
        sync_dir(dir)?;
        Ok(Active { id, file, len: FILE_HEADER.len() as u64, broken: false })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Active>, StoreError> {
        self.active.lock().map_err(|_| StoreError::Backend("segment lock poisoned".into()))
    }

    /// The segment being appended to.
    pub(super) fn active_id(&self) -> Result<u32, StoreError> {
        Ok(self.lock()?.id)
    }

    /// Starts a new segment for the next appends; returns its id.
    pub(super) fn roll(&self) -> Result<u32, StoreError> {
        let mut active = self.lock()?;
        *active = Self::create(&self.dir, active.id + 1)?;
        Ok(active.id)
    }

    /// Appends `values` and syncs them to disk; returns where each went.
    /// Appends are serialized; a value is referenced only once this returns.
    pub(super) fn append(&self, values: &[&[u8]]) -> Result<Vec<ValueRef>, StoreError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let total: u64 = values.iter().map(|v| v.len() as u64).sum();
        if values.iter().any(|v| v.len() as u64 > MAX_VALUE) {
            return Err(StoreError::Backend("value too large for a segment".into()));
        }
        let mut active = self.lock()?;
        if active.broken || (active.len > FILE_HEADER.len() as u64 && active.len + total > ROLL_AT) {
            *active = Self::create(&self.dir, active.id + 1)?;
        }
        let mut buf = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut refs = Vec::with_capacity(values.len());
        let mut offset = active.len;
        for v in values {
            buf.extend_from_slice(v);
            let len = u32::try_from(v.len()).map_err(|_| StoreError::Backend("value too large".into()))?;
            refs.push(ValueRef { segment: active.id, offset, len, hash: Sha256::digest(v).into() });
            offset += u64::from(len);
        }
        let written = write_at(&active.file, &buf, active.len).and_then(|()| active.file.sync_data());
        if let Err(e) = written {
            active.broken = true;
            return Err(io("append")(e));
        }
        active.len = offset;
        Ok(refs)
    }

    fn reader(&self, id: u32) -> Result<Arc<File>, StoreError> {
        let mut readers =
            self.readers.lock().map_err(|_| StoreError::Backend("segment lock poisoned".into()))?;
        if let Some(f) = readers.get(&id) {
            return Ok(Arc::clone(f));
        }
        let f = match File::open(self.dir.join(file_name(id))) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Corrupt("segment file missing"))
            }
            Err(e) => return Err(io("open")(e)),
        };
        readers.insert(id, Arc::clone(&f));
        Ok(f)
    }

    /// The value `r` points at, checked against its hash.
    pub(super) fn read(&self, r: &ValueRef) -> Result<Vec<u8>, StoreError> {
        const PAST_END: StoreError = StoreError::Corrupt("segment reference past the end of its segment");
        if r.offset < FILE_HEADER.len() as u64 || r.offset.checked_add(u64::from(r.len)).is_none() {
            return Err(PAST_END);
        }
        let f = self.reader(r.segment)?;
        let mut buf = vec![0; r.len as usize];
        // A short read is a reference past the end (no `stat` per read).
        read_at(&f, &mut buf, r.offset).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => PAST_END,
            _ => io("read")(e),
        })?;
        let hash: [u8; 32] = Sha256::digest(&buf).into();
        if !bool::from(hash[..].ct_eq(&r.hash[..])) {
            return Err(StoreError::Corrupt("segment value does not match its hash"));
        }
        Ok(buf)
    }

    /// Resolves a reference as sled stores it.
    pub(super) fn resolve(&self, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.read(&ValueRef::decode(stored)?)
    }

    /// Every segment file's id and size, ascending by id.
    pub(super) fn files(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let mut out = Vec::new();
        for id in Self::list(&self.dir)? {
            out.push((id, fs::metadata(self.dir.join(file_name(id))).map_err(io("stat"))?.len()));
        }
        Ok(out)
    }

    /// Deletes segment `id` (after a compaction moved every value it held
    /// that was still referenced). Never the active one.
    pub(super) fn remove(&self, id: u32) -> Result<(), StoreError> {
        if self.lock()?.id == id {
            return Err(StoreError::Backend("refusing to delete the active segment".into()));
        }
        self.readers.lock().map_err(|_| StoreError::Backend("segment lock poisoned".into()))?.remove(&id);
        fs::remove_file(self.dir.join(file_name(id))).map_err(io("remove"))
    }

    /// Syncs the directory (after removals).
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        sync_dir(&self.dir)
    }

    #[cfg(test)]
    pub(super) fn path_of(&self, id: u32) -> PathBuf {
        self.dir.join(file_name(id))
    }
}
