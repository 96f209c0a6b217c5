//! The sled backend's segment files: torn tails, corrupted values,
//! compaction, permissions. (The `Store` conformance suite runs on sled in
//! `store/tests.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use medrelay_crypto::{CapsuleId, PrincipalId, RecordId, Timestamp};

use super::segment::{Segments, ValueRef};
use super::{key, SledStore, SEGMENTS_DIR};
use crate::store::tests::{ev, grant, meta, opening, principal};
use crate::store::{Enrollment, EnrollmentUse};
use crate::store::{Store, StoreError};
use medrelay_wire::Role;

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

/// Record `id`'s references in sled: metadata, envelope.
fn record_refs(s: &SledStore, id: u8) -> Vec<ValueRef> {
    super::segment::refs_in(&s.raw_db().get(key(b"r/", &[&[id; 16]])).unwrap().unwrap()).unwrap()
}

/// Record `id`'s envelope reference.
fn value_ref(s: &SledStore, id: u8) -> ValueRef {
    record_refs(s, id)[1]
}

/// Points record `id`'s envelope reference at `v` (raw bytes in sled).
fn set_envelope_ref(s: &SledStore, id: u8, v: &[u8]) {
    let meta = record_refs(s, id)[0].encode();
    s.raw_db().insert(key(b"r/", &[&[id; 16]]), [meta.as_slice(), v].concat()).unwrap();
}

#[test]
fn values_live_in_segments_and_sled_holds_references() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    put(&s, &[1, 2], 7);
    let in_sled = s.raw_db().get(key(b"r/", &[&[1; 16]])).unwrap().unwrap();
    assert_eq!(in_sled.len(), 2 * super::segment::REF_LEN, "sled holds two references, not the record");
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)));
    assert_eq!(s.get_capsule(&CapsuleId::from_bytes([7; 32])).unwrap(), Some(vec![7; 500]));
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].1.windows(301).any(|w| w == envelope(1).as_slice()), "the envelope is in the segment");
    let usage = s.storage_usage().unwrap();
    assert_eq!(usage.prefixes["cp/"].segment_bytes, 500);
    // The batch's two log entries are one run: one key, one segment value.
    assert_eq!(usage.prefixes["l/"].entries, 1);
    assert_eq!(usage.prefixes["l/"].segment_bytes, 2 * (opening(1).to_bytes().len() + 32) as u64);
    assert!(super::segment::is_run(&s.raw_db().get(key(b"l/", &[&0u64.to_be_bytes()])).unwrap().unwrap()));
    // Their subject too: one key (owner, first index) for both.
    assert_eq!(usage.prefixes["ls/"].entries, 1);
    assert_eq!(s.log_indices_for(&owner(), 0, 10).unwrap(), vec![0, 1]);
    // The record metadata, with the log index the batch was given, and the
    // envelope: two references under the record's one key.
    let (m, _) = s.get_record(&RecordId::from_bytes([2; 16])).unwrap().unwrap();
    assert_eq!(m.log_index, 1);
    assert_eq!(usage.prefixes["r/"].entries, 2);
    assert_eq!(
        usage.prefixes["r/"].segment_bytes,
        (2 * m.encode().len() + envelope(1).len() + envelope(2).len()) as u64
    );
    assert!(!usage.prefixes.contains_key("b/"));
    assert_eq!(s.list_records(&owner(), None, 10).unwrap().len(), 2);
    assert_eq!(usage.segment_garbage(), super::segment::FILE_HEADER_LEN, "only the header");
}

#[test]
fn principals_live_in_segments_with_their_log_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    put(&s, &[1], 7);
    let mut p = principal(1, Role::Patient);
    p.pre_public_keys = vec![0x5a; 300_000];
    assert_eq!(s.register_principal(&p, None, &ev(2, &[p.id()])).unwrap(), 1);
    let in_sled = s.raw_db().get(key(b"p/", &[p.id().as_bytes()])).unwrap().unwrap();
    assert_eq!(in_sled.len(), super::segment::REF_LEN, "sled holds a reference, not the keys");
    let got = s.get_principal(&p.id()).unwrap().unwrap();
    assert_eq!(got.log_index, 1);
    assert_eq!(got.pre_public_keys, p.pre_public_keys);
    // A registration's log entry is written alone: it stays in sled.
    assert!(!super::segment::is_run(&s.raw_db().get(key(b"l/", &[&1u64.to_be_bytes()])).unwrap().unwrap()));
    let usage = s.storage_usage().unwrap();
    assert_eq!(usage.prefixes["p/"].segment_bytes, got.encode().len() as u64);
    assert_eq!(usage.segment_garbage(), super::segment::FILE_HEADER_LEN);
    // The keys are not rewritten when other principals register next to it.
    let r = ValueRef::decode(&in_sled).unwrap();
    for seed in 2..6 {
        let q = principal(seed, Role::Doctor);
        s.register_principal(&q, None, &ev(10 + seed as u8, &[q.id()])).unwrap();
    }
    let still = s.raw_db().get(key(b"p/", &[p.id().as_bytes()])).unwrap().unwrap();
    assert_eq!(ValueRef::decode(&still).unwrap(), r);
    drop(s);
    let s = reopen(dir.path());
    assert_eq!(s.get_principal(&p.id()).unwrap(), Some(got));
    // The suspension check finds it through its reference.
    s.suspend_principal(&p.id(), &ev(30, &[p.id()])).unwrap();
    assert!(s.is_suspended(&p.id()).unwrap());
}

#[test]
fn a_refused_registration_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let mut p = principal(1, Role::Patient);
    p.pre_public_keys = vec![0x5a; 100_000];
    s.register_principal(&p, None, &ev(1, &[p.id()])).unwrap();
    let files = segment_files(dir.path());
    let en = Enrollment { role: Role::Doctor, name: "Dr".into(), expires_at: Timestamp(100) };
    s.put_enrollment(&[5; 32], &en).unwrap();
    let mut d = principal(2, Role::Doctor);
    d.pre_public_keys = vec![0x6b; 100_000];
    let expired = EnrollmentUse { token_hash: [5; 32], role: Role::Doctor, now: Timestamp(100) };
    assert!(matches!(
        s.register_principal(&d, Some(expired), &ev(2, &[])),
        Err(StoreError::InvalidEnrollment)
    ));
    assert!(matches!(
        s.register_principal(&p, None, &ev(3, &[p.id()])),
        Err(StoreError::AlreadyExists("principal"))
    ));
    assert_eq!(segment_files(dir.path()), files, "no bytes appended for a refusal");
    assert_eq!(s.log_size().unwrap(), 1);
    assert!(s.get_principal(&d.id()).unwrap().is_none());
    // The token was not consumed.
    let valid = EnrollmentUse { token_hash: [5; 32], role: Role::Doctor, now: Timestamp(50) };
    s.register_principal(&d, Some(valid), &ev(4, &[])).unwrap();
    assert_eq!(s.get_principal(&d.id()).unwrap().unwrap().pre_public_keys, d.pre_public_keys);
    assert_eq!(s.storage_usage().unwrap().segment_garbage(), super::segment::FILE_HEADER_LEN);
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
    set_envelope_ref(&s, 2, &past.encode());
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt(_))));
    let missing = ValueRef { segment: 77, ..r };
    set_envelope_ref(&s, 2, &missing.encode());
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt("segment file missing"))));
    set_envelope_ref(&s, 2, &[]);
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt("record reference"))));
    s.raw_db().insert(key(b"r/", &[&[2; 16]]), &b"not a reference"[..]).unwrap();
    assert!(matches!(record(&s, 2), Err(StoreError::Corrupt("record reference"))));
}

#[test]
fn compaction_reclaims_revoked_reencryptions_and_failed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (p, d) = (owner(), PrincipalId::from_bytes([2; 32]));
    let mut doctor = principal(2, Role::Doctor);
    doctor.pre_public_keys = vec![0x6b; 20_000];
    s.register_principal(&doctor, None, &ev(19, &[doctor.id()])).unwrap();
    let doctor = s.get_principal(&doctor.id()).unwrap().unwrap();
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
    // A principal, two envelopes and their metadata, a capsule, the kept
    // grant's re-encryption keys (the revoked one's are garbage), the kept
    // re-encryption, and three log runs: the two records' (one batch) and
    // each fetch's (the registration's, the grants' and the revocation's
    // entries are kept in sled).
    assert_eq!(done.values, 11);
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
    assert_eq!(s.get_rekeys(&kept.grant_id).unwrap().as_deref(), Some(&b"rekeys"[..]));
    assert_eq!(s.get_rekeys(&g.grant_id).unwrap(), None);
    assert_eq!(s.get_principal(&doctor.id()).unwrap(), Some(doctor));
    let metas = s.list_records(&owner(), None, 10).unwrap();
    assert_eq!(metas.iter().map(|m| m.log_index).collect::<Vec<_>>(), vec![1, 2]);
    let log = s.log_entries(0, 100).unwrap();
    let tags: Vec<u8> = [19, 1, 2, 20, 21, 22, 23, 25].to_vec();
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

/// The index keeps few keys: log entries in runs, subjects in runs, Merkle
/// nodes from level 4 up. Whatever the layout, every read must match a
/// plain in-memory tree over the same leaves: entries, ranges that start
/// and end inside runs, subject histories from inside a run, roots,
/// inclusion and consistency proofs at every size, before and after a
/// reopen.
#[test]
fn runs_and_recomputed_nodes_read_like_a_plain_log() {
    use medrelay_policy::{MemoryNodeStore, MerkleTree};

    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (o, d) = (owner(), PrincipalId::from_bytes([2; 32]));
    let doctor = principal(2, Role::Doctor);
    let mut tags: Vec<(u8, Vec<PrincipalId>)> = Vec::new();
    // An entry written alone (kept in sled), a batch of 70 records (runs
    // of 64 and 6), an entry about two subjects, a batch of 5, a fetch of 3.
    s.register_principal(&doctor, None, &ev(200, &[doctor.id()])).unwrap();
    tags.push((200, vec![doctor.id()]));
    let records: Vec<_> = (1..=70).map(|i| (meta(i, o), envelope(i))).collect();
    let events: Vec<_> = (1..=70).map(|i| ev(i, &[o])).collect();
    s.put_batch(&[(CapsuleId::from_bytes([7; 32]), vec![7; 500])], &records, &events).unwrap();
    tags.extend((1..=70).map(|i| (i, vec![o])));
    s.append_log(&ev(100, &[o, d])).unwrap();
    tags.push((100, vec![o, d]));
    let records: Vec<_> = (71..=75).map(|i| (meta(i, o), envelope(i))).collect();
    let events: Vec<_> = (71..=75).map(|i| ev(i, &[o])).collect();
    s.put_batch(&[(CapsuleId::from_bytes([7; 32]), vec![7; 500])], &records, &events).unwrap();
    tags.extend((71..=75).map(|i| (i, vec![o])));
    let g = grant(4, o, d);
    s.put_grant(&g, b"rekeys", &ev(101, &[o, d])).unwrap();
    tags.push((101, vec![o, d]));
    let fetch: Vec<_> = (110..113).map(|t| ev(t, &[d])).collect();
    s.put_served(&[g.grant_id], &[], &fetch).unwrap();
    tags.extend((110..113).map(|t| (t, vec![d])));

    let mut mem = MerkleTree::new(MemoryNodeStore::new());
    for (t, _) in &tags {
        mem.append_leaf_hash(opening(*t).leaf_hash()).unwrap();
    }
    let n = tags.len() as u64;
    let check = |s: &SledStore| {
        assert_eq!(s.log_size().unwrap(), n);
        let all = s.log_entries(0, n + 10).unwrap();
        assert_eq!(all.len() as u64, n);
        for (i, ((idx, got), (t, _))) in all.iter().zip(&tags).enumerate() {
            assert_eq!((*idx, got), (i as u64, &opening(*t)));
        }
        for (a, b) in [(1, 2), (60, 70), (63, 66), (64, 65), (70, 74), (72, 80), (0, n)] {
            let got = s.log_entries(a, b).unwrap();
            assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (a..b).collect::<Vec<_>>());
            let hashes = s.log_leaf_hashes(a, b).unwrap();
            let want: Vec<_> = (a..b).map(|i| (i, mem.leaf_hash(i).unwrap())).collect();
            assert_eq!(hashes, want);
        }
        for who in [o, d, doctor.id()] {
            let want: Vec<u64> = tags
                .iter()
                .enumerate()
                .filter(|(_, (_, subj))| subj.contains(&who))
                .map(|(i, _)| i as u64)
                .collect();
            for from in [0, 1, 30, 64, 65, 71, 72, 77, 80, n] {
                for limit in [1, 5, 100] {
                    let got = s.log_indices_for(&who, from, limit).unwrap();
                    let exp: Vec<u64> = want.iter().copied().filter(|i| *i >= from).take(limit).collect();
                    assert_eq!(got, exp, "subject history from {from}, limit {limit}");
                }
            }
        }
        for size in 1..=n {
            assert_eq!(s.log_root(size).unwrap(), mem.root_at(size).unwrap(), "root at {size}");
            for i in [0, size / 2, size - 1] {
                assert_eq!(s.inclusion_proof(i, size).unwrap(), mem.inclusion_proof(i, size).unwrap());
            }
            for old in [1, size / 3, size - 1] {
                if old >= 1 && old <= size {
                    assert_eq!(
                        s.consistency_proof(old, size).unwrap(),
                        mem.consistency_proof(old, size).unwrap()
                    );
                }
            }
        }
    };
    check(&s);

    // What sled holds: six log keys (one entry alone, runs of 64 and 6, one
    // entry alone, a run of 5, the grant's entry alone, a run of 3), subject
    // runs, no Merkle node below level 4.
    let usage = s.storage_usage().unwrap();
    assert_eq!(usage.prefixes["l/"].entries, 7);
    // doctor (1); owner: 1..=70, 71 (with d), 72..=76, 77 (with d): 4 runs,
    // as each request writes its own; d: 71, 77, 78..=80.
    assert_eq!(usage.prefixes["ls/"].entries, 1 + 4 + 3);
    for item in s.raw_db().scan_prefix(b"n/") {
        let (k, _) = item.unwrap();
        assert!(k[2] >= super::log::STORED_FROM_LEVEL, "node at level {} is stored", k[2]);
    }
    assert_eq!(usage.prefixes["n/"].entries, n / 16 + n / 32 + n / 64);

    drop(s);
    let s = reopen(dir.path());
    check(&s);
    // And after a compaction moved the runs.
    s.put_batch(&[], &[(meta(1, o), vec![1; 10])], &[ev(1, &[o])]).unwrap_err();
    assert!(s.compact_segments().unwrap().segments_removed > 0);
    check(&s);
}

#[test]
fn a_corrupt_log_run_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    put(&s, &[1, 2, 3], 7);
    let k = key(b"l/", &[&0u64.to_be_bytes()]);
    let good = s.raw_db().get(&k).unwrap().unwrap();
    let mut run = super::segment::Run::decode(&good).unwrap();
    // Lengths that do not add up to the value.
    run.lens[0] += 1;
    s.raw_db().insert(&k, run.encode()).unwrap();
    assert!(matches!(s.log_entries(0, 3), Err(StoreError::Corrupt("log run lengths"))));
    // Not a run at all, and a run that stops short of the log's size.
    s.raw_db().insert(&k, &b"MSVN\x01junk"[..]).unwrap();
    assert!(matches!(s.log_entries(1, 2), Err(StoreError::Corrupt("log run"))));
    let mut short = super::segment::Run::decode(&good).unwrap();
    short.lens.pop();
    s.raw_db().insert(&k, short.encode()).unwrap();
    assert!(matches!(s.log_entries(2, 3), Err(StoreError::Corrupt(_))));
    assert!(matches!(s.inclusion_proof(2, 3), Err(StoreError::Corrupt(_))));
    s.raw_db().insert(&k, good).unwrap();
    assert_eq!(s.log_entries(0, 3).unwrap().len(), 3);
}

#[test]
fn a_grants_keys_live_in_a_segment_and_a_refused_grant_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (p, d) = (owner(), PrincipalId::from_bytes([2; 32]));
    let g = grant(4, p, d);
    let keys = vec![0x3c; 200_000];
    s.put_grant(&g, &keys, &ev(20, &[p, d])).unwrap();
    let in_sled = s.raw_db().get(key(b"k/", &[g.grant_id.as_bytes()])).unwrap().unwrap();
    assert_eq!(in_sled.len(), super::segment::REF_LEN, "sled holds a reference, not the keys");
    assert_eq!(s.get_rekeys(&g.grant_id).unwrap(), Some(keys.clone()));
    let files = segment_files(dir.path());
    let again = s.put_grant(&g, &[0x11; 1000], &ev(21, &[p, d]));
    assert!(matches!(again, Err(StoreError::AlreadyExists("grant"))), "{again:?}");
    assert_eq!(segment_files(dir.path()), files, "no bytes appended for a refusal");
    assert_eq!(s.log_size().unwrap(), 1);
    // Revoked: the keys are gone, and a compaction reclaims their bytes.
    s.revoke_grant(&g.grant_id, b"rev", &ev(22, &[p])).unwrap();
    assert_eq!(s.get_rekeys(&g.grant_id).unwrap(), None);
    assert!(s.storage_usage().unwrap().segment_garbage() >= keys.len() as u64);
    s.compact_segments().unwrap();
    assert_eq!(s.storage_usage().unwrap().segment_garbage(), super::segment::FILE_HEADER_LEN);
    assert_eq!(s.get_grant(&g.grant_id).unwrap().unwrap().revocation.as_deref(), Some(&b"rev"[..]));
}

/// A running server gives back a revoked grant's keys by itself: a file is
/// compacted once its unreferenced bytes reach the minimum and half of it,
/// not before; the counts survive nothing (a reopened store counts them
/// with a scan); what is live reads the same after.
#[test]
fn sparse_segments_are_compacted_online_once_enough_is_unreferenced() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (p, d) = (owner(), PrincipalId::from_bytes([2; 32]));
    put(&s, &[1, 2], 7);
    let min = usize::try_from(super::RECLAIM_MIN_BYTES).unwrap();
    // Small garbage: a revoked grant with 100 KB of keys is left alone.
    let small = grant(4, p, d);
    s.put_grant(&small, &vec![0x44; 100_000], &ev(20, &[p, d])).unwrap();
    s.revoke_grant(&small.grant_id, b"rev", &ev(21, &[p])).unwrap();
    let nothing = s.compact_sparse_segments().unwrap();
    assert_eq!((nothing.values, nothing.segments_removed), (0, 0));
    assert_eq!(nothing.bytes_before, nothing.bytes_after);
    // A kept grant with big keys, then a revoked one with bigger keys:
    // more than half of the file is unreferenced.
    let kept = grant(5, p, d);
    let kept_keys = vec![0x55; min];
    s.put_grant(&kept, &kept_keys, &ev(22, &[p, d])).unwrap();
    let big = grant(6, p, d);
    s.put_grant(&big, &vec![0x66; 2 * min], &ev(23, &[p, d])).unwrap();
    let c = CapsuleId::from_bytes([7; 32]);
    s.put_served(&[big.grant_id], &[(big.grant_id, c, vec![9; 5000])], &[ev(24, &[d])]).unwrap();
    let before = s.storage_usage().unwrap();
    s.revoke_grant(&big.grant_id, b"rev", &ev(25, &[p])).unwrap();
    let garbage = s.storage_usage().unwrap().segment_garbage();
    assert!(garbage >= 2 * super::RECLAIM_MIN_BYTES, "{garbage}");
    let done = s.compact_sparse_segments().unwrap();
    assert_eq!(done.segments_removed, 1);
    assert_eq!(done.bytes_before - done.bytes_after, garbage - super::segment::FILE_HEADER_LEN);
    let after = s.storage_usage().unwrap();
    assert_eq!(after.segment_garbage(), super::segment::FILE_HEADER_LEN);
    assert!(after.segment_file_bytes < before.segment_file_bytes);
    assert_eq!(s.get_rekeys(&kept.grant_id).unwrap(), Some(kept_keys.clone()));
    assert_eq!(s.get_rekeys(&big.grant_id).unwrap(), None);
    assert_eq!(record(&s, 1).unwrap(), Some(envelope(1)));
    assert_eq!(s.log_entries(0, 100).unwrap().len(), 8);
    // Nothing more to do.
    let again = s.compact_sparse_segments().unwrap();
    assert_eq!((again.values, again.segments_removed), (0, 0));

    // Garbage made before a restart is found by the first call after it.
    s.revoke_grant(&kept.grant_id, b"rev", &ev(26, &[p])).unwrap();
    drop(s);
    let s = reopen(dir.path());
    let after_restart = s.compact_sparse_segments().unwrap();
    assert_eq!(after_restart.segments_removed, 1, "{after_restart:?}");
    assert_eq!(s.storage_usage().unwrap().segment_garbage(), super::segment::FILE_HEADER_LEN);
    assert_eq!(record(&s, 2).unwrap(), Some(envelope(2)));
    assert_eq!(s.get_rekeys(&kept.grant_id).unwrap(), None);
    // Through the trait, as the sweep calls it: nothing left.
    assert_eq!(s.reclaim_space().unwrap(), 0);
}

#[test]
fn a_store_of_another_key_layout_is_refused_at_open_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        put(&s, &[1], 7);
        // What a store written before this layout looks like: no marker.
        s.raw_db().remove(super::LAYOUT_KEY).unwrap();
        s.raw_db().flush().unwrap();
    }
    let files = segment_files(dir.path());
    let err = SledStore::open_waiting(dir.path(), Duration::from_secs(30)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("another version of medrelay (store layout 1"), "{msg}");
    assert!(msg.contains("start from a new data directory"), "{msg}");
    assert_eq!(segment_files(dir.path()), files);
    // Still refused, and still not marked, on a second try.
    assert!(SledStore::open_waiting(dir.path(), Duration::from_secs(30)).is_err());
    // A new store is marked, and opens again.
    let fresh = tempfile::tempdir().unwrap();
    drop(SledStore::open(fresh.path()).unwrap());
    let s = reopen(fresh.path());
    assert_eq!(s.raw_db().get(super::LAYOUT_KEY).unwrap().unwrap().as_ref(), super::LAYOUT);
}

/// Compactions run while records are stored and read, grants made and
/// revoked: nothing acknowledged is lost or misread, and what a
/// revocation dropped during a compaction is reclaimed by the next.
#[test]
fn compaction_beside_writers_and_readers_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    let (p, d) = (owner(), PrincipalId::from_bytes([2; 32]));
    put(&s, &[1, 2, 3], 7);
    let stop = Arc::new(AtomicBool::new(false));
    let min = usize::try_from(super::RECLAIM_MIN_BYTES).unwrap();
    let writer = {
        let (s, stop) = (s.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut stored = Vec::new();
            for round in 0u8..40 {
                if stop.load(Ordering::Relaxed) && round > 10 {
                    break;
                }
                let id = 10 + round;
                put(&s, &[id], 7);
                stored.push(id);
                // Garbage to reclaim: a grant with big keys, revoked.
                let g = grant(100 + round, p, d);
                s.put_grant(&g, &vec![round; min], &ev(200, &[p, d])).unwrap();
                s.revoke_grant(&g.grant_id, b"rev", &ev(201, &[p])).unwrap();
            }
            stored
        })
    };
    let reader = {
        let (s, stop) = (s.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                for id in 1..=3 {
                    assert_eq!(record(&s, id).unwrap(), Some(envelope(id)));
                }
                let n = s.log_size().unwrap();
                assert_eq!(s.log_entries(0, n).unwrap().len() as u64, n);
                s.inclusion_proof(n / 2, n).unwrap();
                reads += 1;
            }
            reads
        })
    };
    let mut compactions = 0;
    for _ in 0..30 {
        compactions += s.compact_sparse_segments().unwrap().segments_removed;
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let stored = writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    assert!(compactions > 0, "some compaction ran beside the writers");
    // Whatever a revocation dropped meanwhile is reclaimed now.
    s.compact_sparse_segments().unwrap();
    s.compact_segments().unwrap();
    assert_eq!(
        s.storage_usage().unwrap().segment_garbage(),
        s.segs.files().unwrap().len() as u64 * super::segment::FILE_HEADER_LEN
    );
    drop(s);
    let s = reopen(dir.path());
    for id in [1, 2, 3].into_iter().chain(stored) {
        assert_eq!(record(&s, id).unwrap(), Some(envelope(id)), "record {id}");
    }
    let n = s.log_size().unwrap();
    let entries = s.log_entries(0, n).unwrap();
    assert_eq!(entries.len() as u64, n);
    let mut mem = medrelay_policy::MerkleTree::new(medrelay_policy::MemoryNodeStore::new());
    for (_, o) in &entries {
        mem.append_leaf_hash(o.leaf_hash()).unwrap();
    }
    assert_eq!(s.log_root(n).unwrap(), mem.root_at(n).unwrap());
}

#[test]
fn a_store_held_by_another_handle_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let held = SledStore::open(dir.path()).unwrap();
    // sled's lock is per process and file; a second open in this process
    // meets it as another process would.
    let err = SledStore::open_waiting(dir.path(), Duration::from_millis(50)).unwrap_err().to_string();
    assert!(
        err.contains("is in use by another process (a running medrelay-server?): stop it first"),
        "{err}"
    );
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    drop(held);
}
