//! The `Store` conformance suite. Every function takes a fresh store; a new
//! backend adds one `#[test]` per function calling it with its own store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use medrelay_crypto::{
    CapsuleId, GrantId, KeyClass, PrincipalId, RecordCategory, RecordHeader, RecordId, SigningKey, Timestamp,
};
use medrelay_policy::{EventSalt, LeafOpening};
use medrelay_wire::Role;
use rand_chacha::rand_core::SeedableRng;

use super::*;

pub(crate) fn principal(seed: u64, role: Role) -> StoredPrincipal {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let sk = SigningKey::generate(&mut rng);
    StoredPrincipal {
        role,
        name: format!("p{seed}"),
        signing_key: sk.verifying_key(),
        pre_public_keys: vec![1, 2, 3],
        signature: sk.sign(b"ctx", b"msg"),
        registered_at: Timestamp(10),
        log_index: 0,
    }
}

/// An entry whose event bytes are `[tag; 3]` under salt `[tag; 32]` (the
/// store neither decodes events nor draws salts).
pub(crate) fn opening(tag: u8) -> LeafOpening {
    LeafOpening::from_parts(EventSalt::from_bytes([tag; 32]), vec![tag; 3]).unwrap()
}

pub(crate) fn ev(tag: u8, subjects: &[PrincipalId]) -> LogAppend {
    LogAppend { opening: opening(tag), subjects: subjects.to_vec() }
}

pub(crate) fn meta(id: u8, owner: PrincipalId) -> RecordMeta {
    let lab = RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap();
    let header =
        RecordHeader::new(RecordId::from_bytes([id; 16]), owner, lab, "application/fhir+json", Timestamp(5))
            .unwrap();
    assert_eq!(header.key_class(), KeyClass::Laboratory);
    RecordMeta { header, size: 4, log_index: 0 }
}

pub(crate) fn grant(id: u8, patient: PrincipalId, doctor: PrincipalId) -> StoredGrant {
    StoredGrant {
        grant_id: GrantId::from_bytes([id; 16]),
        patient,
        doctor,
        grant: vec![id; 8],
        revocation: None,
    }
}

pub(crate) fn challenges_are_single_use<S: Store>(s: S) {
    let c = Challenge { principal: PrincipalId::from_bytes([1; 32]), expires_at: Timestamp(100) };
    s.put_challenge(&[7; 32], &c).unwrap();
    assert_eq!(s.take_challenge(&[7; 32]).unwrap(), Some(c));
    assert_eq!(s.take_challenge(&[7; 32]).unwrap(), None);
    assert_eq!(s.take_challenge(&[8; 32]).unwrap(), None);
}

pub(crate) fn sessions_round_trip<S: Store>(s: S) {
    let sess =
        Session { principal: PrincipalId::from_bytes([1; 32]), role: Role::Doctor, expires_at: Timestamp(9) };
    assert_eq!(s.get_session(&[1; 32]).unwrap(), None);
    s.put_session(&[1; 32], &sess).unwrap();
    assert_eq!(s.get_session(&[1; 32]).unwrap(), Some(sess));
}

pub(crate) fn registration_is_atomic_with_its_log_entry<S: Store>(s: S) {
    let p = principal(1, Role::Patient);
    let idx = s.register_principal(&p, None, &ev(1, &[p.id()])).unwrap();
    assert_eq!(idx, 0);
    assert_eq!(s.log_size().unwrap(), 1);
    let got = s.get_principal(&p.id()).unwrap().unwrap();
    assert_eq!(got.log_index, 0);
    assert_eq!(got.name, p.name);
    // A duplicate changes nothing: no second principal, no log entry.
    let err = s.register_principal(&p, None, &ev(2, &[p.id()])).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists("principal")));
    assert_eq!(s.log_size().unwrap(), 1);
    assert_eq!(s.log_indices_for(&p.id(), 0, 10).unwrap(), vec![0]);
}

pub(crate) fn enrollment_tokens_are_one_time_role_bound_and_expire<S: Store>(s: S) {
    let en = Enrollment { role: Role::Doctor, name: "Dr".into(), expires_at: Timestamp(100) };
    s.put_enrollment(&[5; 32], &en).unwrap();
    let d1 = principal(2, Role::Doctor);
    let d2 = principal(3, Role::Doctor);
    let use_at = |now| EnrollmentUse { token_hash: [5; 32], role: Role::Doctor, now: Timestamp(now) };
    // Wrong role and expired both fail and do not consume the token
    // (the transaction aborts as a whole).
    let wrong_role = EnrollmentUse { role: Role::Auditor, ..use_at(50) };
    assert!(matches!(
        s.register_principal(&d1, Some(wrong_role), &ev(1, &[])),
        Err(StoreError::InvalidEnrollment)
    ));
    assert!(matches!(
        s.register_principal(&d1, Some(use_at(100)), &ev(1, &[])),
        Err(StoreError::InvalidEnrollment)
    ));
    assert_eq!(s.log_size().unwrap(), 0);
    assert!(s.get_principal(&d1.id()).unwrap().is_none());
    s.register_principal(&d1, Some(use_at(50)), &ev(1, &[])).unwrap();
    // Used once: the second doctor cannot reuse it.
    assert!(matches!(
        s.register_principal(&d2, Some(use_at(50)), &ev(1, &[])),
        Err(StoreError::InvalidEnrollment)
    ));
    assert!(s.get_principal(&d2.id()).unwrap().is_none());
    assert_eq!(s.log_size().unwrap(), 1);
}

pub(crate) fn record_batches_are_all_or_nothing<S: Store>(s: S) {
    let owner = PrincipalId::from_bytes([9; 32]);
    let idx = s.put_records(&[(meta(1, owner), vec![1; 4])], &[ev(1, &[owner])]).unwrap();
    assert_eq!(idx, vec![0]);
    // Batch with a duplicate (record 1): nothing of it is stored.
    let batch = vec![(meta(2, owner), vec![2; 4]), (meta(1, owner), vec![3; 4])];
    let err = s.put_records(&batch, &[ev(2, &[owner]), ev(3, &[owner])]).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists("record")));
    assert!(s.get_record(&RecordId::from_bytes([2; 16])).unwrap().is_none());
    assert_eq!(s.log_size().unwrap(), 1);
    let (m, env) = s.get_record(&RecordId::from_bytes([1; 16])).unwrap().unwrap();
    assert_eq!((m.log_index, env), (0, vec![1; 4]));
    let ok = vec![(meta(3, owner), vec![3; 4]), (meta(2, owner), vec![2; 4])];
    assert_eq!(s.put_records(&ok, &[ev(2, &[owner]), ev(3, &[owner])]).unwrap(), vec![1, 2]);
    let listed: Vec<_> =
        s.list_records(&owner, None, 10).unwrap().into_iter().map(|m| m.record_id()).collect();
    assert_eq!(listed, [[1; 16], [2; 16], [3; 16]].map(RecordId::from_bytes).to_vec());
    assert_eq!(s.list_records(&owner, None, 2).unwrap().len(), 2);
    assert!(s.list_records(&PrincipalId::from_bytes([8; 32]), None, 10).unwrap().is_empty());
    // Pages: after a cursor, never another owner's records.
    let other = PrincipalId::from_bytes([10; 32]);
    s.put_records(&[(meta(4, other), vec![4; 4])], &[ev(4, &[other])]).unwrap();
    let page = |after: u8, n| -> Vec<RecordId> {
        let a = RecordId::from_bytes([after; 16]);
        s.list_records(&owner, Some(&a), n).unwrap().into_iter().map(|m| m.record_id()).collect()
    };
    assert_eq!(page(1, 1), [RecordId::from_bytes([2; 16])]);
    assert_eq!(page(1, 10), [[2; 16], [3; 16]].map(RecordId::from_bytes).to_vec());
    assert!(page(3, 10).is_empty(), "the last page ends at the owner's records");
    assert_eq!(page(0, 10).len(), 3, "a cursor need not be a stored id");
}

pub(crate) fn revocation_deletes_rekeys_atomically<S: Store>(s: S) {
    let p = PrincipalId::from_bytes([1; 32]);
    let d = PrincipalId::from_bytes([2; 32]);
    let g = grant(4, p, d);
    assert_eq!(s.put_grant(&g, b"rekeys", &ev(1, &[p, d])).unwrap(), 0);
    assert!(matches!(s.put_grant(&g, b"x", &ev(1, &[])), Err(StoreError::AlreadyExists("grant"))));
    assert_eq!(s.get_rekeys(&g.grant_id).unwrap().as_deref(), Some(&b"rekeys"[..]));
    assert_eq!(s.list_grants_by_patient(&p, 10).unwrap(), vec![g.clone()]);
    assert_eq!(s.list_grants_by_doctor(&d, 10).unwrap(), vec![g.clone()]);
    assert!(s.list_grants_by_doctor(&p, 10).unwrap().is_empty());
    assert_eq!(s.revoke_grant(&g.grant_id, b"rev", &ev(2, &[p])).unwrap(), 1);
    assert_eq!(s.get_rekeys(&g.grant_id).unwrap(), None);
    assert_eq!(s.get_grant(&g.grant_id).unwrap().unwrap().revocation.as_deref(), Some(&b"rev"[..]));
    assert!(matches!(s.revoke_grant(&g.grant_id, b"rev", &ev(3, &[])), Err(StoreError::AlreadyRevoked)));
    assert!(matches!(
        s.revoke_grant(&GrantId::from_bytes([0; 16]), b"rev", &ev(3, &[])),
        Err(StoreError::NotFound("grant"))
    ));
    assert_eq!(s.log_size().unwrap(), 2);
}

pub(crate) fn capsules_and_stored_reencryptions<S: Store>(s: S) {
    let p = PrincipalId::from_bytes([1; 32]);
    let d = PrincipalId::from_bytes([2; 32]);
    let (c1, c2) = (CapsuleId::from_bytes([1; 32]), CapsuleId::from_bytes([2; 32]));
    // A batch whose record is taken stores none of its capsules either.
    s.put_records(&[(meta(1, p), vec![1; 4])], &[ev(1, &[p])]).unwrap();
    let err = s.put_batch(&[(c1, vec![11; 40])], &[(meta(1, p), vec![1; 4])], &[ev(2, &[p])]).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists("record")));
    assert_eq!(s.get_capsule(&c1).unwrap(), None);
    assert_eq!(s.log_size().unwrap(), 1);
    // Capsules and records in one call; a capsule stored before is kept.
    let idx = s
        .put_batch(
            &[(c1, vec![11; 40]), (c2, vec![12; 40])],
            &[(meta(2, p), vec![2; 4]), (meta(3, p), vec![3; 4])],
            &[ev(2, &[p]), ev(3, &[p])],
        )
        .unwrap();
    assert_eq!(idx, vec![1, 2]);
    s.put_batch(&[(c1, vec![99; 40])], &[(meta(4, p), vec![4; 4])], &[ev(4, &[p])]).unwrap();
    assert_eq!(s.get_capsule(&c1).unwrap(), Some(vec![11; 40]));
    assert_eq!(s.get_capsule(&c2).unwrap(), Some(vec![12; 40]));
    assert_eq!(s.get_capsule(&CapsuleId::from_bytes([3; 32])).unwrap(), None);

    // Re-encryptions are stored with the served events; the first is kept.
    let (g, other) = (grant(4, p, d), grant(5, p, d));
    s.put_grant(&g, b"rekeys", &ev(5, &[p, d])).unwrap();
    s.put_grant(&other, b"rekeys2", &ev(6, &[p, d])).unwrap();
    let gid = g.grant_id;
    let (idxs, stored) = s
        .put_served(&[gid], &[(gid, c1, vec![21; 8]), (gid, c2, vec![22; 8])], &[ev(7, &[d]), ev(8, &[d])])
        .unwrap();
    assert_eq!((idxs, stored), (vec![6, 7], vec![vec![21; 8], vec![22; 8]]));
    let (idxs, stored) = s
        .put_served(
            &[gid, other.grant_id],
            &[(gid, c1, vec![31; 8]), (other.grant_id, c1, vec![41; 8])],
            &[ev(9, &[d])],
        )
        .unwrap();
    assert_eq!((idxs, stored), (vec![8], vec![vec![21; 8], vec![41; 8]]), "the stored bytes are returned");
    assert_eq!(s.get_delivered(&gid, &c1).unwrap(), Some(vec![21; 8]));
    assert_eq!(s.get_delivered(&gid, &c2).unwrap(), Some(vec![22; 8]));
    assert_eq!(s.get_delivered(&other.grant_id, &c2).unwrap(), None);
    // Events only (every re-encryption stored before).
    assert_eq!(s.put_served(&[gid], &[], &[ev(10, &[d])]).unwrap(), (vec![9], vec![]));

    // Revocation deletes the grant's re-encryptions, not another grant's.
    s.revoke_grant(&gid, b"rev", &ev(11, &[p])).unwrap();
    assert_eq!(s.get_delivered(&gid, &c1).unwrap(), None);
    assert_eq!(s.get_delivered(&gid, &c2).unwrap(), None);
    assert_eq!(s.get_delivered(&other.grant_id, &c1).unwrap(), Some(vec![41; 8]));
    // A fetch authorized before the revocation and committing after it
    // writes nothing: no access logged after the revocation, nothing kept.
    let raced = s.put_served(
        &[other.grant_id, gid],
        &[(gid, c1, vec![51; 8]), (other.grant_id, c2, vec![52; 8])],
        &[ev(12, &[d]), ev(13, &[d])],
    );
    assert!(matches!(raced, Err(StoreError::AlreadyRevoked)), "{raced:?}");
    assert!(matches!(s.put_served(&[gid], &[], &[ev(12, &[d])]), Err(StoreError::AlreadyRevoked)));
    assert_eq!(s.log_size().unwrap(), 11, "no served entry after the revocation");
    assert_eq!(s.get_delivered(&gid, &c1).unwrap(), None);
    assert_eq!(s.get_delivered(&other.grant_id, &c2).unwrap(), None);
    // And a re-encryption under a revoked grant is never kept.
    let (_, stored) = s.put_served(&[], &[(gid, c1, vec![53; 8])], &[ev(14, &[d])]).unwrap();
    assert_eq!(stored, vec![vec![53; 8]]);
    assert_eq!(s.get_delivered(&gid, &c1).unwrap(), None);
    assert_eq!(s.get_capsule(&c1).unwrap(), Some(vec![11; 40]), "capsules stay");
    assert_eq!(s.log_size().unwrap(), 12);
}

pub(crate) fn log_ranges_and_subject_index<S: Store>(s: S) {
    let a = PrincipalId::from_bytes([1; 32]);
    let b = PrincipalId::from_bytes([2; 32]);
    for i in 0..5u8 {
        let subj = if i % 2 == 0 { vec![a] } else { vec![a, b] };
        assert_eq!(s.append_log(&ev(i, &subj)).unwrap(), u64::from(i));
    }
    assert_eq!(s.log_size().unwrap(), 5);
    let e = s.log_entries(1, 3).unwrap();
    assert_eq!(e, vec![(1, opening(1)), (2, opening(2))]);
    assert_eq!(s.log_entries(3, 100).unwrap().len(), 2);
    assert!(s.log_entries(7, 9).unwrap().is_empty());
    // The public face: leaf hashes of the salted commitments, never the events.
    let leaves = s.log_leaf_hashes(1, 3).unwrap();
    assert_eq!(leaves, vec![(1, opening(1).leaf_hash()), (2, opening(2).leaf_hash())]);
    assert_eq!(s.log_leaf_hashes(3, 100).unwrap().len(), 2);
    assert!(s.log_leaf_hashes(7, 9).unwrap().is_empty());
    assert_eq!(s.log_indices_for(&b, 0, 10).unwrap(), vec![1, 3]);
    assert_eq!(s.log_indices_for(&a, 2, 2).unwrap(), vec![2, 3]);
    assert!(s.log_indices_for(&PrincipalId::from_bytes([3; 32]), 0, 10).unwrap().is_empty());
}

pub(crate) fn merkle_tree_tracks_the_log_atomically<S: Store>(s: S) {
    use medrelay_policy::{root_from_leaves, verify_consistency, verify_inclusion};
    assert_eq!(s.log_root(0).unwrap(), medrelay_policy::empty_root());
    let p = principal(1, Role::Patient);
    s.register_principal(&p, None, &ev(1, &[p.id()])).unwrap();
    let owner = p.id();
    let recs: Vec<_> = (2..6u8).map(|i| (meta(i, owner), vec![i; 4])).collect();
    let evs: Vec<_> = (2..6u8).map(|i| ev(i, &[owner])).collect();
    s.put_records(&recs, &evs).unwrap();
    let g = grant(9, owner, PrincipalId::from_bytes([2; 32]));
    s.put_grant(&g, b"rk", &ev(6, &[owner])).unwrap();
    s.append_log(&ev(7, &[owner])).unwrap();
    let old_root = s.log_root(3).unwrap();
    // Failed changes add no leaf and leave the root as it was.
    let root_before = s.log_root(7).unwrap();
    assert!(s.register_principal(&p, None, &ev(8, &[])).is_err());
    assert!(s.put_records(&recs[..1], &evs[..1]).is_err());
    assert!(s.put_grant(&g, b"rk", &ev(8, &[])).is_err());
    assert_eq!(s.log_size().unwrap(), 7);
    assert!(s.log_root(8).is_err());
    assert_eq!(s.log_root(7).unwrap(), root_before);

    let leaves: Vec<_> = s.log_entries(0, 7).unwrap().iter().map(|(_, o)| o.leaf_hash()).collect();
    assert_eq!(s.log_root(7).unwrap(), root_from_leaves(&leaves));
    assert_eq!(s.log_root(3).unwrap(), root_from_leaves(&leaves[..3]));
    for (i, leaf) in leaves.iter().enumerate() {
        let proof = s.inclusion_proof(i as u64, 7).unwrap();
        verify_inclusion(leaf, &proof, &root_before).unwrap();
    }
    let proof = s.consistency_proof(3, 7).unwrap();
    verify_consistency(&proof, &old_root, &root_before).unwrap();
    assert!(matches!(s.inclusion_proof(7, 7), Err(StoreError::OutOfRange(_))));
    assert!(matches!(s.consistency_proof(5, 3), Err(StoreError::OutOfRange(_))));
}

pub(crate) fn expired_secrets_are_swept_and_live_ones_kept<S: Store>(s: S) {
    let who = PrincipalId::from_bytes([1; 32]);
    let session = |t| Session { principal: who, role: Role::Patient, expires_at: Timestamp(t) };
    let challenge = |t| Challenge { principal: who, expires_at: Timestamp(t) };
    let enrollment = |t| Enrollment { role: Role::Doctor, name: "Dr".into(), expires_at: Timestamp(t) };
    s.put_session(&[1; 32], &session(100)).unwrap();
    s.put_session(&[2; 32], &session(200)).unwrap();
    s.put_challenge(&[3; 32], &challenge(100)).unwrap();
    s.put_challenge(&[4; 32], &challenge(101)).unwrap();
    s.put_enrollment(&[5; 32], &enrollment(99)).unwrap();
    s.put_enrollment(&[6; 32], &enrollment(300)).unwrap();
    let p = principal(7, Role::Patient);
    s.register_principal(&p, None, &ev(1, &[p.id()])).unwrap();

    assert_eq!(
        s.remove_expired(Timestamp(99)).unwrap(),
        Swept { sessions: 0, challenges: 0, enrollments: 1 }
    );
    // Expiry is inclusive: a secret is refused from its expiry second on.
    assert_eq!(
        s.remove_expired(Timestamp(100)).unwrap(),
        Swept { sessions: 1, challenges: 1, enrollments: 0 }
    );
    assert_eq!(s.get_session(&[1; 32]).unwrap(), None);
    assert_eq!(s.get_session(&[2; 32]).unwrap(), Some(session(200)));
    assert_eq!(s.take_challenge(&[3; 32]).unwrap(), None);
    assert_eq!(s.take_challenge(&[4; 32]).unwrap(), Some(challenge(101)));
    // The live enrollment token still registers; the swept one does not.
    let use_of = |h| EnrollmentUse { token_hash: h, role: Role::Doctor, now: Timestamp(100) };
    let d = principal(8, Role::Doctor);
    let err = s.register_principal(&d, Some(use_of([5; 32])), &ev(2, &[d.id()])).unwrap_err();
    assert!(matches!(err, StoreError::InvalidEnrollment));
    s.register_principal(&d, Some(use_of([6; 32])), &ev(2, &[d.id()])).unwrap();
    // Nothing else is touched: principals and the log stay.
    assert_eq!(
        s.remove_expired(Timestamp(u64::MAX)).unwrap(),
        Swept { sessions: 1, challenges: 0, enrollments: 0 }
    );
    assert_eq!(s.remove_expired(Timestamp(u64::MAX)).unwrap(), Swept::default());
    assert!(s.get_principal(&p.id()).unwrap().is_some());
    assert_eq!(s.log_size().unwrap(), 2);
}

/// One `#[test]` per named conformance check, each on a fresh sled store
/// in a temporary directory (used here and by `tests_dp`).
pub(crate) fn suspension_is_logged_and_reinstatement_ends_old_sessions<S: Store>(s: S) {
    let d = principal(1, Role::Doctor);
    let other = principal(2, Role::Doctor);
    s.register_principal(&d, None, &ev(1, &[d.id()])).unwrap();
    s.register_principal(&other, None, &ev(2, &[other.id()])).unwrap();
    let sess =
        |p: &StoredPrincipal| Session { principal: p.id(), role: Role::Doctor, expires_at: Timestamp(99) };
    s.put_session(&[1; 32], &sess(&d)).unwrap();
    s.put_session(&[2; 32], &sess(&d)).unwrap();
    s.put_session(&[3; 32], &sess(&other)).unwrap();
    assert!(!s.is_suspended(&d.id()).unwrap());

    assert_eq!(s.suspend_principal(&d.id(), &ev(3, &[d.id()])).unwrap(), (2, 2));
    assert!(s.is_suspended(&d.id()).unwrap());
    // Sessions stay (so their use is recognised and refused) until reinstated.
    assert_eq!(s.get_session(&[1; 32]).unwrap(), Some(sess(&d)));
    assert!(!s.is_suspended(&other.id()).unwrap());
    // Twice, or an unknown principal: refused, nothing logged.
    assert!(matches!(s.suspend_principal(&d.id(), &ev(4, &[d.id()])), Err(StoreError::AlreadyExists(_))));
    let nobody = PrincipalId::from_bytes([9; 32]);
    assert!(matches!(s.suspend_principal(&nobody, &ev(4, &[nobody])), Err(StoreError::NotFound(_))));
    assert_eq!(s.log_size().unwrap(), 3);

    assert_eq!(s.reinstate_principal(&d.id(), &ev(5, &[d.id()])).unwrap(), 3);
    assert!(!s.is_suspended(&d.id()).unwrap());
    assert_eq!(s.get_session(&[1; 32]).unwrap(), None, "old sessions never work again");
    assert_eq!(s.get_session(&[2; 32]).unwrap(), None);
    assert_eq!(s.get_session(&[3; 32]).unwrap(), Some(sess(&other)), "other principals keep theirs");
    assert!(matches!(s.reinstate_principal(&d.id(), &ev(6, &[d.id()])), Err(StoreError::NotFound(_))));
    assert_eq!(s.log_size().unwrap(), 4);
    assert_eq!(s.log_indices_for(&d.id(), 0, 10).unwrap(), vec![0, 2, 3]);
}

/// For each named conformance check, a module of two `#[test]`s: `sled`
/// on a fresh sled database, and `postgres` on a fresh database of the test
/// binary's throwaway PostgreSQL cluster (skipped, loudly, if it cannot
/// start, except under `CI=true`, where that fails). One list, so no check
/// runs on one backend only.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sled() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(crate::store::SledStore::open(dir.path()).unwrap());
            }

            #[test]
            fn postgres() {
                let Some(url) = crate::store::postgres::testing::fresh_database() else { return };
                super::$name(crate::store::PgStore::open_with(&url, 4).unwrap());
            }
        }
    )*};
}

on_both_backends!(
    challenges_are_single_use,
    sessions_round_trip,
    registration_is_atomic_with_its_log_entry,
    enrollment_tokens_are_one_time_role_bound_and_expire,
    record_batches_are_all_or_nothing,
    revocation_deletes_rekeys_atomically,
    capsules_and_stored_reencryptions,
    log_ranges_and_subject_index,
    merkle_tree_tracks_the_log_atomically,
    expired_secrets_are_swept_and_live_ones_kept,
    suspension_is_logged_and_reinstatement_ends_old_sessions,
);

mod sled_backend {
    use super::*;

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = principal(1, Role::Patient);
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.register_principal(&p, None, &ev(1, &[p.id()])).unwrap();
        }
        // sled's I/O threads may hold the file lock for a moment after the
        // last handle is dropped (seen under load).
        let s = SledStore::open_waiting(dir.path(), std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(s.get_principal(&p.id()).unwrap().unwrap().name, p.name);
        assert_eq!(s.log_size().unwrap(), 1);
        // What is stored per entry is the opening (salt + event); the tree
        // holds only its commitment.
        assert_eq!(s.log_entries(0, 1).unwrap()[0].1, opening(1));
        assert_eq!(s.log_leaf_hashes(0, 1).unwrap()[0].1, opening(1).leaf_hash());
    }

    #[test]
    fn a_log_from_before_leaf_commitments_is_refused_not_served() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            // An entry as the old format stored it: the bare event bytes.
            let old = medrelay_policy::LogEvent::SchemaAdded {
                at: Timestamp(1),
                schema: "s".into(),
                schema_sha256: [0; 32],
            };
            s.raw_db().insert(b"l/\0\0\0\0\0\0\0\0", old.to_bytes().unwrap()).unwrap();
            s.raw_db().flush().unwrap();
        }
        let err = SledStore::open_waiting(dir.path(), std::time::Duration::from_secs(30)).unwrap_err();
        assert!(err.to_string().contains("old format"), "{err}");
    }
}
