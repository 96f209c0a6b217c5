//! The re-encryption key cache through the real HTTP stack, with real
//! hybrid PRE keys: a warm cache serves capsules the doctor can decrypt,
//! never outlives a revocation or an expiry, and stays within its bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_crypto::{GrantId, RecordId, SigningKey, Timestamp};
use medrelay_policy::Revocation;
use medrelay_server::{app, sweep_expired};
use medrelay_wire::{RevokeRequest, Role, B64};

const SCOPE: &str = "Observation?category=laboratory";

fn reenc(id: RecordId) -> String {
    format!("/v1/records/{id}/reencrypt")
}

/// Decrypts a single-record answer as `doctor`, the owner being `p`.
fn open(doctor: &SigningKey, p: &SigningKey, body: &[u8]) -> Vec<u8> {
    let (served, delivered) = served_one(body);
    open_as(doctor, p, &served, &delivered).unwrap().to_vec()
}

#[actix_web::test]
async fn a_warm_cache_serves_decryptable_capsules_and_never_outlives_revocation_or_expiry() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, d, s) = (key(1), key(2), key(3));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &s, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let (tp, td, ts) = (login(&svc, &p).await, login(&svc, &d).await, login(&svc, &s).await);
    let bodies: [&[u8]; 2] = [b"{\"value\":1}", b"{\"value\":2}"];
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let e = seal(&p, 40 + i as u64, lab(), body);
        let req = e.upload();
        assert_eq!(post(&svc, "/v1/records", &req, Some(&tp)).await.0, 201);
        ids.push(e.header().record_id());
    }
    let (g_long, g_short) = (GrantId::from_bytes([1; 16]), GrantId::from_bytes([2; 16]));
    assert_eq!(
        post(&svc, "/v1/grants", &grant_request(&p, &d, 1, SCOPE, T0 + 86_400), Some(&tp)).await.0,
        201
    );
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &s, 2, SCOPE, T0 + 60), Some(&tp)).await.0, 201);
    let cache = env.state.rekey_cache();
    assert!(cache.is_empty());

    // First use loads and caches the grant's keys; the second is a hit, and
    // its capsule decrypts to the right record.
    let (st, b) = post(&svc, &reenc(ids[0]), &(), Some(&td)).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(open(&d, &p, &b), bodies[0]);
    assert!(cache.contains(&g_long));
    let (st, b) = post(&svc, &reenc(ids[1]), &(), Some(&td)).await;
    assert_eq!(st, 200);
    assert_eq!(open(&d, &p, &b), bodies[1]);
    let m = metrics(&svc).await;
    assert_eq!(metric(&m, "medrelay_rekey_cache_misses_total"), 1);
    assert_eq!(metric(&m, "medrelay_rekey_cache_hits_total"), 1);
    assert_eq!(metric(&m, "medrelay_rekey_cache_keys"), 1);
    // Another doctor's grant is another entry; d's cached key is not used for s.
    let (st, b) = post(&svc, &reenc(ids[0]), &(), Some(&ts)).await;
    assert_eq!(st, 200);
    assert_eq!(open(&s, &p, &b), bodies[0]);
    assert!(cache.contains(&g_short));
    assert_eq!(cache.len(), 2);

    // Revocation: the keys leave memory as soon as the revocation answers,
    // and the doctor is denied although the cache was warm.
    let rev = Revocation::new(g_long, p.principal_id(), Timestamp(T0)).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    assert_eq!(post(&svc, &format!("/v1/grants/{g_long}/revoke"), &req, Some(&tp)).await.0, 200);
    assert!(!cache.contains(&g_long));
    expect_err(post(&svc, &reenc(ids[0]), &(), Some(&td)).await, 403, "revoked");
    expect_err(post(&svc, &reenc(ids[1]), &(), Some(&td)).await, 403, "revoked");
    assert!(!cache.contains(&g_long));

    // Expiry: denied at not_after though warm, and the entry is dropped.
    env.clock.advance(59);
    assert_eq!(post(&svc, &reenc(ids[1]), &(), Some(&ts)).await.0, 200);
    assert!(cache.contains(&g_short));
    env.clock.advance(1);
    expect_err(post(&svc, &reenc(ids[1]), &(), Some(&ts)).await, 403, "expired");
    assert!(!cache.contains(&g_short));
    assert!(cache.is_empty());
    assert_eq!(metric(&metrics(&svc).await, "medrelay_rekey_cache_keys"), 0);
}

#[actix_web::test]
async fn the_sweep_drops_expired_grants_nobody_asked_for_again() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, d) = (key(11), key(12));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let (tp, td) = (login(&svc, &p).await, login(&svc, &d).await);
    let e = seal(&p, 50, lab(), b"x");
    assert_eq!(post(&svc, "/v1/records", &e.upload(), Some(&tp)).await.0, 201);
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 7, SCOPE, T0 + 600), Some(&tp)).await.0, 201);
    assert_eq!(post(&svc, &reenc(e.header().record_id()), &(), Some(&td)).await.0, 200);
    let gid = GrantId::from_bytes([7; 16]);
    assert!(env.state.rekey_cache().contains(&gid));
    sweep_expired(&env.state).await.unwrap();
    assert!(env.state.rekey_cache().contains(&gid), "not expired yet");
    env.clock.advance(600);
    sweep_expired(&env.state).await.unwrap();
    assert!(!env.state.rekey_cache().contains(&gid));
}

#[actix_web::test]
async fn the_cache_is_bounded_and_can_be_turned_off() {
    for capacity in [1, 0] {
        let env = env();
        let state = env.state.clone().with_rekey_cache(capacity);
        let svc = test::init_service(app(state.clone())).await;
        let (p, d1, d2) = (key(21), key(22), key(23));
        register(&svc, &p, Role::Patient, None).await;
        register(&svc, &d1, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
        register(&svc, &d2, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
        let tp = login(&svc, &p).await;
        let e = seal(&p, 60, lab(), b"bounded");
        let req = e.upload();
        assert_eq!(post(&svc, "/v1/records", &req, Some(&tp)).await.0, 201);
        for (i, d) in [(1u8, &d1), (2, &d2)] {
            assert_eq!(
                post(&svc, "/v1/grants", &grant_request(&p, d, i, SCOPE, T0 + 600), Some(&tp)).await.0,
                201
            );
        }
        // Both doctors are served (twice each) whatever the capacity.
        for d in [&d1, &d2, &d1, &d2] {
            let t = login(&svc, d).await;
            let (st, b) = post(&svc, &reenc(e.header().record_id()), &(), Some(&t)).await;
            assert_eq!(st, 200);
            assert_eq!(open(d, &p, &b), b"bounded");
        }
        let cache = state.rekey_cache();
        assert_eq!(cache.capacity(), capacity);
        assert_eq!(cache.len(), capacity, "capacity {capacity}");
        // With room for one key, the most recently used grant is the one kept.
        assert_eq!(cache.contains(&GrantId::from_bytes([2; 16])), capacity == 1);
        assert!(!cache.contains(&GrantId::from_bytes([1; 16])));
        let m = metrics(&svc).await;
        assert_eq!(
            metric(&m, "medrelay_rekey_cache_hits_total"),
            0,
            "alternating grants never hit at capacity {capacity}"
        );
        assert_eq!(metric(&m, "medrelay_rekey_cache_misses_total"), 4);
    }
}

/// Two replicas (two app states, each with its own store handle and key
/// cache) over one PostgreSQL database: with replica B's cache warm, a
/// revocation through replica A is refused at B at once, and B's next
/// request drops the cached keys.
#[actix_web::test]
async fn a_revocation_through_another_replica_is_refused_and_drops_its_cached_keys() {
    let Some(url) = medrelay_server::store::postgres::testing::fresh_database() else { return };
    let clock = medrelay_server::Clock::manual(T0);
    let replica = || {
        let store = medrelay_server::store::PgStore::open_with(&url, 2).unwrap();
        let signer = medrelay_policy::LogSigner::new("test.medrelay/log", &log_key()).unwrap();
        medrelay_server::AppState::new(store, clock.clone(), signer)
    };
    let (a, b) = (replica(), replica());
    let sa = test::init_service(app(a.clone())).await;
    let sb = test::init_service(app(b.clone())).await;
    let (p, d) = (key(1), key(2));
    register(&sa, &p, Role::Patient, None).await;
    let token = medrelay_server::enroll_in(a.store().as_ref(), Role::Doctor, "Dr", &clock).unwrap();
    register(&sb, &d, Role::Doctor, Some(token.to_string())).await;
    // Sessions are rows: each token works at either replica.
    let (tp, td) = (login(&sa, &p).await, login(&sb, &d).await);
    let e = seal(&p, 40, lab(), b"{\"value\":1}");
    assert_eq!(post(&sa, "/v1/records", &e.upload(), Some(&tp)).await.0, 201);
    let id = e.header().record_id();
    let g = GrantId::from_bytes([1; 16]);
    assert_eq!(
        post(&sa, "/v1/grants", &grant_request(&p, &d, 1, SCOPE, T0 + 86_400), Some(&tp)).await.0,
        201
    );
    for _ in 0..2 {
        let (st, body) = post(&sb, &reenc(id), &(), Some(&td)).await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(open(&d, &p, &body), b"{\"value\":1}");
    }
    assert!(b.rekey_cache().contains(&g) && !a.rekey_cache().contains(&g));

    let rev = Revocation::new(g, p.principal_id(), Timestamp(T0)).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    assert_eq!(post(&sa, &format!("/v1/grants/{g}/revoke"), &req, Some(&tp)).await.0, 200);
    expect_err(post(&sb, &reenc(id), &(), Some(&td)).await, 403, "revoked");
    assert!(!b.rekey_cache().contains(&g), "B dropped the revoked grant's keys");
    // One log: both replicas see every entry (register ×2, upload, grant,
    // two accesses, revocation, the denial).
    assert_eq!(a.store().log_size().unwrap(), b.store().log_size().unwrap());
}
