//! The sled backend's segment files: torn tails, corrupted values,
//! compaction, permissions. (The `Store` conformance suite runs on sled in
//! `store/tests.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use medrelay_crypto::{CapsuleId, PrincipalId, RecordId};

use super::segment::{Segments, ValueRef};
use super::{key, SledStore, SEGMENTS_DIR};
use crate::store::tests::{ev, grant, meta, opening};
use crate::store::{Store, StoreError};

const OWNER: [u8; 32] = [9; 32];

fn owner() -> PrincipalId {
    PrincipalId::from_bytes(OWNER)
}

fn reopen(dir: &Path) -> SledStore {
    SledStore::open_waiting(dir, Duration::from_secs(30)).unwrap()
}

fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn envelope(id: u8) -> Vec<u8> {
    vec![id; 300 + usize::from(id)]
}

/// Stores records `ids` (one batch) with one capsule.
fn put(s: &SledStore, ids: &[u8], capsule: u8) {
    let records: Vec<_> = ids.iter().map(|&i| (meta(i, owner()), envelope(i))).collect();
    let events: Vec<_> = ids.iter().map(|&i| ev(i, &[owner()])).collect();
    s.put_batch(&[(CapsuleId::from_bytes([capsule; 32]), vec![capsule; 500])], &records, &events).unwrap();
}

fn record(s: &SledStore, id: u8) -> Result<Option<Vec<u8>>, StoreError> {
    s.get_record(&RecordId::from_bytes([id; 16])).map(|r| r.map(|(_, env)| env))
}

fn value_ref(s: &SledStore, id: u8) -> ValueRef {
    ValueRef::decode(&s.raw_db().get(key(b"b/", &[&[id; 16]])).unwrap().unwrap()).unwrap()
}

#[test]
fn values_live_in_segments_and_sled_holds_references() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    put(&s, &[1, 2], 7);
    let in_sled = s.raw_db().get(key(b"b/", &[&[1; 16]])).unwrap().unwrap();
    assert_eq!(in_sled.len(), super::segment::REF_LEN, "sled holds a reference, not the envelope");
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)));
    assert_eq!(s.get_capsule(&CapsuleId::from_bytes([7; 32])).unwrap(), Some(vec![7; 500]));
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].1.windows(301).any(|w| w == envelope(1).as_slice()), "the envelope is in the segment");
    let usage = s.storage_usage().unwrap();
    assert_eq!(usage.prefixes["b/"].segment_bytes, (envelope(1).len() + envelope(2).len()) as u64);
    assert_eq!(usage.prefixes["cp/"].segment_bytes, 500);
    assert_eq!(usage.prefixes["l/"].segment_bytes, 2 * opening(1).to_bytes().len() as u64);
    assert!(super::segment::is_ref(&s.raw_db().get(key(b"l/", &[&0u64.to_be_bytes()])).unwrap().unwrap()));
    assert_eq!(usage.segment_garbage(), super::segment::FILE_HEADER_LEN, "only the header");
}

#[cfg(unix)]
#[test]
fn segments_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    put(&s, &[1], 7);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join(SEGMENTS_DIR)), 0o700);
    assert_eq!(mode(&dir.path().join(SEGMENTS_DIR).join("000001.seg")), 0o600);
}

#[test]
fn a_torn_tail_is_never_read_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        put(&s, &[1, 2], 7);
    }
    // What a crash mid-append leaves: bytes no transaction references,
    // here shaped like a reference and like an envelope.
    let seg = dir.path().join(SEGMENTS_DIR).join("000001.seg");
    let before = std::fs::metadata(&seg).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&envelope(3)[..100]).unwrap();
    f.write_all(b"MSVR\x01garbage").unwrap();
    drop(f);
    let torn = std::fs::metadata(&seg).unwrap().len();
    let s = reopen(dir.path());
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)));
    assert_eq!(record(&s, 3).unwrap(), None, "the torn record was never stored");
    put(&s, &[3], 8);
    // The batch appends its capsule (500 bytes), then the envelope.
    assert_eq!(value_ref(&s, 3).offset, torn + 500, "the next append goes after the tail, not over it");
    assert!(value_ref(&s, 2).offset < before);
    for id in 1..=3 {
        assert_eq!(record(&s, id).unwrap(), Some(envelope(id)));
    }
    assert_eq!(s.storage_usage().unwrap().segment_garbage(), torn - before + super::segment::FILE_HEADER_LEN);
}

#[test]
fn a_corrupted_value_is_a_clear_error_and_nothing_else_changes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        put(&s, &[1, 2], 7);
        // A failed batch: unreferenced bytes, so a compaction has work.
        let dup = s.put_batch(&[], &[(meta(1, owner()), vec![0xee; 4000])], &[ev(3, &[owner()])]);
        assert!(matches!(dup, Err(StoreError::AlreadyExists("record"))));
    }
    let seg = dir.path().join(SEGMENTS_DIR).join("000001.seg");
    let s = reopen(dir.path());
    let r = value_ref(&s, 2);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[usize::try_from(r.offset).unwrap() + 10] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let files = segment_files(dir.path());

    let err = record(&s, 2).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt("segment value does not match its hash")), "{err:?}");
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)), "the neighbour still reads");
    // A compaction meets it and stops before deleting or repointing anything.
    let before_ref = value_ref(&s, 1);
    let err = s.compact_segments().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(segment_files(dir.path()).iter().any(|f| f == &files[0]), "the old segment is kept as it was");
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)));
    assert_eq!(value_ref(&s, 1), before_ref, "no reference was repointed");

    // A reference pointing past its segment, or at a missing one.
    let past = ValueRef { offset: r.offset + 1_000_000, ..r };
    s.raw_db().insert(key(b"b/", &[&[2; 16]]), past.encode()).unwrap();
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt(_))));
    let missing = ValueRef { segment: 77, ..r };
    s.raw_db().insert(key(b"b/", &[&[2; 16]]), missing.encode()).unwrap();
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt("segment file missing"))));
    s.raw_db().insert(key(b"b/", &[&[2; 16]]), &b"not a reference"[..]).unwrap();
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt("segment reference"))));
}

#[test]
fn compaction_reclaims_revoked_reencryptions_and_failed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (p, d) = (owner(), PrincipalId::from_bytes([2; 32]));
    put(&s, &[1, 2], 7);
    let (g, kept) = (grant(4, p, d), grant(5, p, d));
    s.put_grant(&g, b"rekeys", &ev(20, &[p, d])).unwrap();
    s.put_grant(&kept, b"rekeys", &ev(21, &[p, d])).unwrap();
    let c = CapsuleId::from_bytes([7; 32]);
    s.put_served(&[g.grant_id], &[(g.grant_id, c, vec![21; 5000])], &[ev(22, &[d])]).unwrap();
    s.put_served(&[kept.grant_id], &[(kept.grant_id, c, vec![41; 5000])], &[ev(23, &[d])]).unwrap();
    // A failed batch (its record id is taken) leaves its appended bytes.
    let dup = s.put_batch(&[], &[(meta(1, owner()), vec![0xee; 4000])], &[ev(24, &[owner()])]);
    assert!(matches!(dup, Err(StoreError::AlreadyExists("record"))));
    s.revoke_grant(&g.grant_id, b"rev", &ev(25, &[p])).unwrap();
    assert_eq!(s.get_delivered(&g.grant_id, &c).unwrap(), None);

    let usage = s.storage_usage().unwrap();
    assert!(usage.segment_garbage() >= 9000, "{usage:?}");
    let done = s.compact_segments().unwrap();
    // Two envelopes, a capsule, the kept re-encryption, and the log entries
    // of the two records and the two fetches (the grants' and the
    // revocation's entries are kept in sled).
    assert_eq!(done.values, 8);
    assert_eq!(done.segments_removed, 1);
    assert_eq!(
        done.bytes_before - done.bytes_after,
        usage.segment_garbage() - super::segment::FILE_HEADER_LEN
    );
    let after = s.storage_usage().unwrap();
    assert_eq!(after.segment_garbage(), super::segment::FILE_HEADER_LEN);
    assert_eq!(after.segment_files, 1);
    assert!(!dir.path().join(SEGMENTS_DIR).join("000001.seg").exists());
    // Everything still reads, through a reopen too; the revoked one stays gone.
    drop(s);
    let s = reopen(dir.path());
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)));
    assert_eq!(record(&s, 2).unwrap(), Some(envelope(2)));
    assert_eq!(s.get_capsule(&c).unwrap(), Some(vec![7; 500]));
    assert_eq!(s.get_delivered(&kept.grant_id, &c).unwrap(), Some(vec![41; 5000]));
    assert_eq!(s.get_delivered(&g.grant_id, &c).unwrap(), None);
    let log = s.log_entries(0, 100).unwrap();
    let tags: Vec<u8> = [1, 2, 20, 21, 22, 23, 25].to_vec();
    assert_eq!(
        log.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
        tags.iter().map(|&t| opening(t)).collect::<Vec<_>>()
    );
    put(&s, &[3], 8);
    assert_eq!(record(&s, 3).unwrap(), Some(envelope(3)));
    // Nothing left to reclaim: a second compaction copies nothing.
    let again = s.compact_segments().unwrap();
    assert_eq!((again.values, again.segments_removed), (0, 0));
}

#[test]
fn segments_reopen_after_an_empty_or_headerless_file() {
    let dir = tempfile::tempdir().unwrap();
    let segs_dir = dir.path().join("segs");
    let r1 = {
        let segs = Segments::open(&segs_dir).unwrap();
        segs.append(&[b"one", b"two"]).unwrap()
    };
    // A newest segment cut short inside its header (a crash while creating
    // it): appends go to a new segment.
    std::fs::write(segs_dir.join("000002.seg"), b"MRS").unwrap();
    let segs = Segments::open(&segs_dir).unwrap();
    let r2 = segs.append(&[b"three"]).unwrap();
    assert_eq!(r2[0].segment, 3);
    assert_eq!(segs.read(&r1[1]).unwrap(), b"two");
    assert_eq!(segs.read(&r2[0]).unwrap(), b"three");
    assert!(segs.path_of(3).exists());
}
