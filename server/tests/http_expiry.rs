//! Expired bearer tokens, challenges and enrollment tokens are removed from
//! the store: by one sweep, and by the periodic sweeper task, while live
//! ones keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use actix_web::test;
use common::*;
use medrelay_server::store::Swept;
use medrelay_server::{app, spawn_sweeper, sweep_expired};
use medrelay_wire::{limits, Role};
use sha2::{Digest, Sha256};

/// The store key of a bearer token or nonce: its SHA-256.
fn hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

#[actix_web::test]
async fn an_expired_token_is_refused_then_removed_from_the_store() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (old, fresh) = (key(1), key(2));
    register(&svc, &old, Role::Patient, None).await;
    register(&svc, &fresh, Role::Patient, None).await;
    let store = env.state.store();

    let stale_token = login(&svc, &old).await;
    let unanswered = challenge_for(&svc, old.principal_id()).await;
    let stale_enrollment = enroll(&env, Role::Doctor);
    assert!(store.get_session(&hash(stale_token.as_bytes())).unwrap().is_some());
    // Nothing has expired yet: a sweep removes nothing.
    assert_eq!(sweep_expired(&env.state).await.unwrap(), Swept::default());

    env.clock.advance(limits::TOKEN_TTL_SECS);
    let live_token = login(&svc, &fresh).await;
    expect_err(get(&svc, "/v1/log/mine", Some(&stale_token)).await, 401, "unauthorized");
    // Refused, but still stored until the sweep.
    assert!(store.get_session(&hash(stale_token.as_bytes())).unwrap().is_some());
    let swept = sweep_expired(&env.state).await.unwrap();
    assert_eq!(swept, Swept { sessions: 1, challenges: 1, enrollments: 0 });
    assert!(store.get_session(&hash(stale_token.as_bytes())).unwrap().is_none());
    assert!(store.take_challenge(&hash(unanswered.nonce.as_bytes())).unwrap().is_none());
    // The live token is untouched and works.
    assert!(store.get_session(&hash(live_token.as_bytes())).unwrap().is_some());
    assert_eq!(get(&svc, "/v1/log/mine", Some(&live_token)).await.0, 200);

    // Enrollment tokens live a week; after that the sweep removes them and
    // the token no longer registers anyone.
    env.clock.advance(limits::ENROLLMENT_TTL_SECS);
    let swept = sweep_expired(&env.state).await.unwrap();
    assert_eq!(swept, Swept { sessions: 1, challenges: 0, enrollments: 1 });
    let late = register_request(&key(3), Role::Doctor, "Dr Late", Some(stale_enrollment));
    expect_err(post(&svc, "/v1/principals", &late, None).await, 401, "invalid_enrollment");
    let m = metrics(&svc).await;
    assert_eq!(metric(&m, "medrelay_expired_removed_total"), 4);
    // Sweeping never touches the audit log.
    assert_eq!(log_size(&svc).await, 2);
}

#[actix_web::test]
async fn the_periodic_sweeper_removes_expired_tokens_by_itself() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let sk = key(10);
    register(&svc, &sk, Role::Patient, None).await;
    let token = login(&svc, &sk).await;
    let store = env.state.store();
    let task = spawn_sweeper(env.state.clone(), Duration::from_millis(20));
    // Not expired: several sweeps pass and the session stays.
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    assert!(store.get_session(&hash(token.as_bytes())).unwrap().is_some());
    env.clock.advance(limits::TOKEN_TTL_SECS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get_session(&hash(token.as_bytes())).unwrap().is_some() {
        assert!(Instant::now() < deadline, "the sweeper did not remove the expired session");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

/// The sweep also gives back the segment space of a revoked grant's keys
/// (a whole-chart grant's are ~8 MB), with no operator action, and what is
/// still referenced reads the same after.
#[actix_web::test]
async fn the_sweep_reclaims_a_revoked_grants_keys() {
    use medrelay_crypto::{GrantId, PrincipalId};
    use medrelay_policy::{EventSalt, LeafOpening};
    use medrelay_server::store::{LogAppend, StoredGrant, RECLAIM_MIN_BYTES};

    let env = env();
    let store = env.state.store();
    let event = |tag: u8| LogAppend {
        opening: LeafOpening::from_parts(EventSalt::from_bytes([tag; 32]), vec![tag; 3]).unwrap(),
        subjects: vec![],
    };
    let grant = |id: u8| StoredGrant {
        grant_id: GrantId::from_bytes([id; 16]),
        patient: PrincipalId::from_bytes([1; 32]),
        doctor: PrincipalId::from_bytes([2; 32]),
        grant: vec![id; 8],
        revocation: None,
    };
    let segments = || -> u64 {
        std::fs::read_dir(env.dir.path().join("db/segments"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let min = usize::try_from(RECLAIM_MIN_BYTES).unwrap();
    let (kept, revoked) = (grant(1), grant(2));
    store.put_grant(&kept, &vec![0x11; min / 2], &event(1)).unwrap();
    store.put_grant(&revoked, &vec![0x22; 3 * min], &event(2)).unwrap();
    // Nothing to give back yet: the sweep leaves the files alone.
    sweep_expired(&env.state).await.unwrap();
    let full = segments();
    assert!(full >= (3 * min + min / 2) as u64);
    store.revoke_grant(&revoked.grant_id, b"revocation", &event(3)).unwrap();
    assert_eq!(segments(), full, "a revocation alone frees nothing on disk");
    sweep_expired(&env.state).await.unwrap();
    let after = segments();
    assert!(full - after >= (3 * min) as u64, "{full} -> {after}");
    assert_eq!(store.get_rekeys(&kept.grant_id).unwrap(), Some(vec![0x11; min / 2]));
    assert_eq!(store.get_rekeys(&revoked.grant_id).unwrap(), None);
    assert_eq!(store.log_size().unwrap(), 3);
}
