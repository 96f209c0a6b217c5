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
