//! The operator admin app (served only on the Unix-domain admin socket)
//! through the real actix HTTP stack: tokens it issues register doctors on
//! the public API of the same running state, bad requests are strict 4xx
//! that issue nothing, and the public app has no admin route.
//! The socket itself (permissions, the CLI against a running server) is
//! tested in binary.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_server::admin::{admin_app, AdminEnrollRequest, AdminEnrollResponse, ENROLL_PATH};
use medrelay_server::app;
use medrelay_wire::{limits, Role};

#[actix_web::test]
async fn admin_tokens_enroll_on_the_running_server() {
    let env = env();
    let public = test::init_service(app(env.state.clone())).await;
    let admin = test::init_service(admin_app(env.state.clone())).await;
    for (i, role) in [Role::Doctor, Role::Analyst, Role::Auditor].into_iter().enumerate() {
        let req = AdminEnrollRequest { role, name: "Dr Live".into() };
        let (s, b) = post(&admin, ENROLL_PATH, &req, None).await;
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
        let r: AdminEnrollResponse = json(&b);
        assert_eq!(r.expires_at.0, T0 + limits::ENROLLMENT_TTL_SECS);
        assert_eq!(r.token.len(), 43);
        let sk = key(100 + i as u64);
        register(&public, &sk, role, Some(r.token.clone())).await;
        // One time only.
        let again = register_request(&key(200 + i as u64), role, "Dr Again", Some(r.token));
        expect_err(post(&public, "/v1/principals", &again, None).await, 401, "invalid_enrollment");
    }
    assert_eq!(log_size(&public).await, 3);
}

#[actix_web::test]
async fn bad_admin_requests_issue_nothing() {
    let env = env();
    let admin = test::init_service(admin_app(env.state.clone())).await;
    let public = test::init_service(app(env.state.clone())).await;
    let bad = |role: Role, name: &str| AdminEnrollRequest { role, name: name.into() };
    expect_err(post(&admin, ENROLL_PATH, &bad(Role::Patient, "P"), None).await, 400, "invalid_field");
    expect_err(post(&admin, ENROLL_PATH, &bad(Role::Doctor, ""), None).await, 400, "invalid_field");
    expect_err(post(&admin, ENROLL_PATH, &bad(Role::Doctor, "a\nb"), None).await, 400, "invalid_field");
    let long = "x".repeat(limits::MAX_NAME_LEN + 1);
    expect_err(post(&admin, ENROLL_PATH, &bad(Role::Doctor, &long), None).await, 400, "invalid_field");
    let extra = serde_json::json!({ "role": "doctor", "name": "Dr", "admin": true });
    expect_err(post(&admin, ENROLL_PATH, &extra, None).await, 400, "invalid_json");
    let operator = serde_json::json!({ "role": "operator", "name": "Dr" });
    expect_err(post(&admin, ENROLL_PATH, &operator, None).await, 400, "invalid_json");
    let huge = serde_json::json!({ "role": "doctor", "name": "x".repeat(8192) });
    expect_err(post(&admin, ENROLL_PATH, &huge, None).await, 413, "payload_too_large");
    expect_err(get(&admin, ENROLL_PATH, None).await, 404, "not_found");
    expect_err(get(&admin, "/v1/principals", None).await, 404, "not_found");
    // No token was stored: the sweep at the end of time finds none.
    env.clock.advance(10 * limits::ENROLLMENT_TTL_SECS);
    let swept = medrelay_server::sweep_expired(&env.state).await.unwrap();
    assert_eq!(swept.enrollments, 0);

    // The public listener serves no admin route, with or without a token.
    let req = AdminEnrollRequest { role: Role::Doctor, name: "Dr".into() };
    expect_err(post(&public, ENROLL_PATH, &req, None).await, 404, "not_found");
    let p = key(1);
    register(&public, &p, Role::Patient, None).await;
    let tp = login(&public, &p).await;
    expect_err(post(&public, ENROLL_PATH, &req, Some(&tp)).await, 404, "not_found");
}
