//! Issue 12 (operations) through the real HTTP stack: quotas answer `429`
//! with `Retry-After` and change nothing; every route's body limit is
//! derived from its largest real request and answers `413` before the body
//! is read; a path served with other methods answers a JSON `405` with
//! `Allow`; and the operator's suspension ends a principal's sessions at
//! once, refuses (and logs) every later request and login, and can be
//! lifted.
//! The body-read deadline and the CLI are tested in `binary_hardening.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use common::*;
use medrelay_crypto::Timestamp;
use medrelay_policy::LogEvent;
use medrelay_server::admin::{admin_app, AdminSuspendRequest, SUSPENSIONS_PATH};
use medrelay_server::suspend::SuspensionReceipt;
use medrelay_server::{app, Quotas, Rate};
use medrelay_wire::{limits, ErrorBody, Role, TokenRequest};
use serde_json::json;

/// (status, Retry-After, Allow, body) of a request from `peer`.
async fn send<S, B>(
    svc: &S,
    req: test::TestRequest,
    peer: Option<&str>,
) -> (u16, Option<String>, Option<String>, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let req = match peer {
        Some(p) => req.peer_addr(p.parse::<SocketAddr>().unwrap()),
        None => req,
    };
    let res = test::call_service(svc, req.to_request()).await;
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (retry, allow) = (header("retry-after"), header("allow"));
    let status = res.status().as_u16();
    (status, retry, allow, test::read_body(res).await.to_vec())
}

fn register_req(seed: u64, role: Role, token: Option<String>) -> test::TestRequest {
    test::TestRequest::post().uri("/v1/principals").set_json(register_request(
        &key(seed),
        role,
        "Someone",
        token,
    ))
}

fn limited(status: u16, retry: Option<String>, body: &[u8], quota: &str) -> u64 {
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(body));
    let e: ErrorBody = json(body);
    assert_eq!(e.error, "rate_limited");
    assert!(e.message.contains(quota), "{}", e.message);
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!(secs >= 1);
    secs
}

#[actix_web::test]
async fn registrations_are_limited_per_source_and_overall() {
    let env = env();
    let quotas = Quotas {
        register_per_source: Rate::per(2, 3600).unwrap(),
        register_total: Rate::per(4, 3600).unwrap(),
        ..Quotas::default()
    };
    let svc = test::init_service(app(env.state.clone().with_quotas(quotas))).await;
    let a = Some("192.0.2.1:40000");
    for seed in 1..=2 {
        assert_eq!(send(&svc, register_req(seed, Role::Patient, None), a).await.0, 201);
    }
    // The third from the same address (another port, same host) is refused
    // before anything is stored; one registration comes back every 30 min.
    let (s, retry, _, b) = send(&svc, register_req(3, Role::Patient, None), Some("192.0.2.1:40001")).await;
    let secs = limited(s, retry, &b, "registrations per source address");
    assert!((1700..=1800).contains(&secs), "{secs}");
    assert_eq!(log_size(&svc).await, 2);
    assert!(env.state.store().get_principal(&key(3).principal_id()).unwrap().is_none());
    // Other addresses register, until the overall quota is spent too.
    assert_eq!(send(&svc, register_req(4, Role::Patient, None), Some("192.0.2.2:1")).await.0, 201);
    assert_eq!(send(&svc, register_req(5, Role::Patient, None), Some("[2001:db8::1]:1")).await.0, 201);
    let (s, retry, _, b) = send(&svc, register_req(6, Role::Patient, None), Some("192.0.2.3:1")).await;
    limited(s, retry, &b, "registrations overall");
    // The same /64 is one source.
    let (s, retry, _, b) = send(&svc, register_req(7, Role::Patient, None), Some("[2001:db8::2]:1")).await;
    assert_eq!(s, 429, "{}", String::from_utf8_lossy(&b));
    assert!(retry.is_some());
    assert_eq!(log_size(&svc).await, 4);
    assert!(metric(&metrics(&svc).await, "medrelay_rate_limited_total") >= 3);
}

#[actix_web::test]
async fn logins_are_limited_per_source() {
    let env = env();
    let quotas = Quotas { login_per_source: Rate::per(3, 60).unwrap(), ..Quotas::default() };
    let svc = test::init_service(app(env.state.clone().with_quotas(quotas))).await;
    let p = key(1);
    register(&svc, &p, Role::Patient, None).await;
    let challenge = || {
        test::TestRequest::post().uri("/v1/auth/challenge").set_json(json!({ "principal": p.principal_id() }))
    };
    let a = Some("198.51.100.7:1");
    for _ in 0..2 {
        assert_eq!(send(&svc, challenge(), a).await.0, 200);
    }
    // The token step counts too: a third request (any login step) passes,
    // the fourth is refused; every 20 s one more.
    let bogus = TokenRequest {
        principal: p.principal_id(),
        nonce: medrelay_wire::B64(vec![0; 32]),
        signature: p.sign(b"x", b"y"),
    };
    let token_req = || test::TestRequest::post().uri("/v1/auth/token").set_json(&bogus);
    assert_eq!(send(&svc, token_req(), a).await.0, 401);
    let (s, retry, _, b) = send(&svc, challenge(), a).await;
    assert_eq!(limited(s, retry, &b, "logins per source address"), 20);
    let (s, retry, _, b) = send(&svc, token_req(), a).await;
    limited(s, retry, &b, "logins per source address");
    // Another address logs in.
    assert_eq!(send(&svc, challenge(), Some("198.51.100.8:1")).await.0, 200);
}

#[actix_web::test]
async fn requests_are_limited_per_principal() {
    let env = env();
    let quotas = Quotas { requests_per_principal: Rate::per(3, 60).unwrap(), ..Quotas::default() };
    let svc = test::init_service(app(env.state.clone().with_quotas(quotas))).await;
    let (p, q) = (key(1), key(2));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    let (tp, tq) = (login(&svc, &p).await, login(&svc, &q).await);
    let path = format!("/v1/patients/{}/records", p.principal_id());
    for _ in 0..3 {
        assert_eq!(get(&svc, &path, Some(&tp)).await.0, 200);
    }
    let req = test::TestRequest::get().uri(&path).insert_header(("Authorization", format!("Bearer {tp}")));
    let (s, retry, _, b) = send(&svc, req, None).await;
    assert_eq!(limited(s, retry, &b, "requests per principal"), 20);
    // Another principal is unaffected; an unauthenticated request is a 401
    // whatever the quota.
    let path_q = format!("/v1/patients/{}/records", q.principal_id());
    assert_eq!(get(&svc, &path_q, Some(&tq)).await.0, 200);
    expect_err(get(&svc, &path, None).await, 401, "unauthorized");
}

/// Each route's body limit is its largest real request: over it is a 413
/// before the body is read, and nothing is stored or logged.
#[actix_web::test]
async fn oversized_bodies_are_413_per_route_and_store_nothing() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, d) = (key(1), key(2));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let (tp, td) = (login(&svc, &p).await, login(&svc, &d).await);
    let size = log_size(&svc).await;

    // A real grant fits with room for eight key classes; 56 MiB does not.
    let real = grant_request(&p, &d, 1, "Observation?category=laboratory", T0 + 3600);
    let one_key = real.rekeys[0].len();
    assert!(one_key <= limits::MAX_REKEY_BYTES, "{one_key}");
    let eight = serde_json::to_vec(&medrelay_wire::CreateGrantRequest {
        grant: real.grant.clone(),
        rekeys: vec![real.rekeys[0].clone(); 8],
    })
    .unwrap();
    assert!(
        eight.len() <= limits::MAX_GRANT_BODY_BYTES,
        "{} > {}",
        eight.len(),
        limits::MAX_GRANT_BODY_BYTES
    );
    // Not 56 MiB any more (checked when this test compiles).
    const { assert!(limits::MAX_GRANT_BODY_BYTES < 18 * 1024 * 1024) };

    let oversized = |path: &str, limit: usize, token: Option<&str>| {
        let mut body = br#"{"padding": ""#.to_vec();
        body.resize(limit + 1 - 2, b'A');
        body.extend_from_slice(br#""}"#);
        let mut req = test::TestRequest::post()
            .uri(path)
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        req
    };
    let cases = [
        ("/v1/grants", limits::MAX_GRANT_BODY_BYTES, Some(tp.as_str())),
        ("/v1/principals", limits::MAX_REGISTER_BODY_BYTES, None),
        ("/v1/auth/challenge", limits::MAX_SMALL_BODY_BYTES, None),
        ("/v1/records", limits::MAX_RECORD_BODY_BYTES, Some(tp.as_str())),
        ("/v1/reencrypt", limits::MAX_REENCRYPT_BODY_BYTES, Some(td.as_str())),
        (
            "/v1/grants/00000000000000000000000000000000/revoke",
            limits::MAX_REVOKE_BODY_BYTES,
            Some(tp.as_str()),
        ),
    ];
    for (path, limit, token) in cases {
        let (s, _, _, b) = send(&svc, oversized(path, limit, token), None).await;
        assert_eq!(s, 413, "{path}: {}", String::from_utf8_lossy(&b));
        let e: ErrorBody = json(&b);
        assert_eq!(e.error, "payload_too_large", "{path}");
        assert!(e.message.contains(&limit.to_string()), "{path}: {}", e.message);
    }
    assert_eq!(log_size(&svc).await, size, "nothing was logged");
    let (_, b) = get(&svc, &format!("/v1/patients/{}/grants", p.principal_id()), Some(&tp)).await;
    assert_eq!(json::<serde_json::Value>(&b)["grants"], json!([]), "no grant stored");
    // The real grant is accepted on the same route.
    assert_eq!(post(&svc, "/v1/grants", &real, Some(&tp)).await.0, 201);
}

#[actix_web::test]
async fn other_methods_are_json_405s_with_allow() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let id = key(1).principal_id();
    let cases = [
        (test::TestRequest::post().uri(&format!("/v1/principals/{id}")), "GET"),
        (test::TestRequest::get().uri("/v1/records"), "POST"),
        (test::TestRequest::put().uri("/v1/log/checkpoint"), "GET"),
        (test::TestRequest::delete().uri("/healthz"), "GET"),
        (test::TestRequest::patch().uri("/v1/dp/schemas/health-basics/summary"), "PUT, GET, DELETE"),
        (test::TestRequest::default().method(actix_web::http::Method::OPTIONS).uri("/v1/principals"), "POST"),
    ];
    for (req, allow) in cases {
        let (s, _, got, b) = send(&svc, req, None).await;
        assert_eq!(s, 405, "{}", String::from_utf8_lossy(&b));
        assert_eq!(got.as_deref(), Some(allow));
        let e: ErrorBody = json(&b);
        assert_eq!(e.error, "method_not_allowed");
        assert!(e.message.contains(allow), "{}", e.message);
    }
    expect_err(get(&svc, "/v1/nothing-here", None).await, 404, "not_found");
}

fn events_from(env: &Env, from: u64) -> Vec<LogEvent> {
    let s = env.state.store();
    s.log_entries(from, s.log_size().unwrap()).unwrap().into_iter().map(|(_, d)| d.event().unwrap()).collect()
}

#[actix_web::test]
async fn a_suspended_principal_is_locked_out_at_once_and_every_attempt_is_refused() {
    let env = env();
    let public = test::init_service(app(env.state.clone())).await;
    let admin = test::init_service(admin_app(env.state.clone())).await;
    let (p, d) = (key(1), key(2));
    register(&public, &p, Role::Patient, None).await;
    register(&public, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let (td, td2) = (login(&public, &d).await, login(&public, &d).await);
    let grants = format!("/v1/doctors/{}/grants", d.principal_id());
    assert_eq!(get(&public, &grants, Some(&td)).await.0, 200);

    let (s, b) =
        post(&admin, SUSPENSIONS_PATH, &AdminSuspendRequest { principal: d.principal_id() }, None).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let r: SuspensionReceipt = json(&b);
    assert_eq!((r.role, r.suspended, r.sessions_ended), (Role::Doctor, true, 2));
    assert_eq!(
        events_from(&env, r.log_index),
        [LogEvent::PrincipalSuspended { at: Timestamp(T0), principal: d.principal_id() }]
    );
    // Both sessions stopped working at once, and signed logins are refused:
    // the first refusal is logged, the rest within the minute are counted.
    let size = log_size(&public).await;
    for t in [&td, &td2] {
        expect_err(get(&public, &grants, Some(t)).await, 403, "suspended");
    }
    for _ in 0..3 {
        let ch = challenge_for(&public, d.principal_id()).await;
        let msg = medrelay_wire::challenge_message(&d.principal_id(), ch.nonce.as_bytes());
        let req = TokenRequest {
            principal: d.principal_id(),
            nonce: ch.nonce,
            signature: d.sign(medrelay_crypto::domain::SIG_AUTH_CHALLENGE, &msg),
        };
        expect_err(post(&public, "/v1/auth/token", &req, None).await, 403, "suspended");
    }
    assert_eq!(
        events_from(&env, size),
        [LogEvent::SuspendedPrincipalRefused { at: Timestamp(T0), principal: d.principal_id() }]
    );
    assert_eq!(metric(&metrics(&public).await, "medrelay_suspended_refusals_total"), 5);

    // Twice, a patient, or nobody: refused, nothing logged.
    let size = log_size(&public).await;
    let again = AdminSuspendRequest { principal: d.principal_id() };
    expect_err(post(&admin, SUSPENSIONS_PATH, &again, None).await, 409, "conflict");
    let patient = AdminSuspendRequest { principal: p.principal_id() };
    expect_err(post(&admin, SUSPENSIONS_PATH, &patient, None).await, 400, "invalid_field");
    let nobody = AdminSuspendRequest { principal: key(9).principal_id() };
    expect_err(post(&admin, SUSPENSIONS_PATH, &nobody, None).await, 404, "not_found");
    assert_eq!(log_size(&public).await, size);
    // The public listener has no suspension route.
    expect_err(post(&public, SUSPENSIONS_PATH, &again, None).await, 404, "not_found");

    // Reinstated (logged): the doctor logs in again.
    let req = test::TestRequest::delete().uri(&format!("{SUSPENSIONS_PATH}/{}", d.principal_id()));
    let (s, b) = call(&admin, req).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let r: SuspensionReceipt = json(&b);
    assert!(!r.suspended);
    assert_eq!(
        events_from(&env, r.log_index),
        [LogEvent::PrincipalReinstated { at: Timestamp(T0), principal: d.principal_id() }]
    );
    // The sessions from before never work again; a fresh login does.
    expect_err(get(&public, &grants, Some(&td2)).await, 401, "unauthorized");
    let td = login(&public, &d).await;
    assert_eq!(get(&public, &grants, Some(&td)).await.0, 200);
    let req = test::TestRequest::delete().uri(&format!("{SUSPENSIONS_PATH}/{}", d.principal_id()));
    assert_eq!(call(&admin, req).await.0, 404);
}
