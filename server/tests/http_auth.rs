//! Authentication, registration and bad-input tests through the real actix
//! HTTP stack (routing, extractors, JSON config, error mapping, middleware).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_crypto::domain;
use medrelay_server::app;
use medrelay_wire::{
    challenge_message, limits, ChallengeResponse, LogEntries, PrincipalInfo, Role, TokenRequest, B64,
};

#[actix_web::test]
async fn patient_registers_logs_in_and_sees_own_history() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let sk = key(1);
    let info = register(&svc, &sk, Role::Patient, None).await;
    assert_eq!(info.id, sk.principal_id());
    assert_eq!(info.log_index, 0);
    // The directory answers only with a token (names are not public); the
    // principal itself may read its own entry.
    let path = format!("/v1/principals/{}", sk.principal_id());
    expect_err(get(&svc, &path, None).await, 401, "unauthorized");
    let token = login(&svc, &sk).await;
    let (s, b) = get(&svc, &path, Some(&token)).await;
    assert_eq!(s, 200);
    assert_eq!(json::<PrincipalInfo>(&b), info);

    let (s, b) = get(&svc, "/v1/log/mine", Some(&token)).await;
    assert_eq!(s, 200);
    let mine: LogEntries = json(&b);
    assert_eq!(mine.entries.len(), 1);
    assert_eq!(mine.entries[0].index, 0);
    // Another principal's history does not include it.
    let other = key(2);
    register(&svc, &other, Role::Patient, None).await;
    let t2 = login(&svc, &other).await;
    let mine2: LogEntries = json(&get(&svc, "/v1/log/mine", Some(&t2)).await.1);
    assert_eq!(mine2.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1]);
}

#[actix_web::test]
async fn doctors_need_a_one_time_operator_token_of_their_role() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let d1 = key(10);
    let d2 = key(11);
    expect_err(
        post(&svc, "/v1/principals", &register_request(&d1, Role::Doctor, "Dr A", None), None).await,
        401,
        "invalid_enrollment",
    );
    expect_err(
        post(
            &svc,
            "/v1/principals",
            &register_request(&d1, Role::Doctor, "Dr A", Some("made-up".into())),
            None,
        )
        .await,
        401,
        "invalid_enrollment",
    );
    let auditor_token = enroll(&env, Role::Auditor);
    expect_err(
        post(
            &svc,
            "/v1/principals",
            &register_request(&d1, Role::Doctor, "Dr A", Some(auditor_token.clone())),
            None,
        )
        .await,
        401,
        "invalid_enrollment",
    );
    assert_eq!(log_size(&svc).await, 0);
    let token = enroll(&env, Role::Doctor);
    let info = register(&svc, &d1, Role::Doctor, Some(token.clone())).await;
    assert_eq!(info.role, Role::Doctor);
    // Reuse of the token: refused, nothing registered.
    expect_err(
        post(&svc, "/v1/principals", &register_request(&d2, Role::Doctor, "Dr B", Some(token)), None).await,
        401,
        "invalid_enrollment",
    );
    assert!(env.state.store().get_principal(&d2.principal_id()).unwrap().is_none());
    // The auditor token was not consumed by the failed doctor attempt.
    register(&svc, &key(12), Role::Auditor, Some(auditor_token)).await;
    assert_eq!(log_size(&svc).await, 2);
    // Expired tokens are refused.
    let late = enroll(&env, Role::Analyst);
    env.clock.advance(limits::ENROLLMENT_TTL_SECS);
    expect_err(
        post(&svc, "/v1/principals", &register_request(&key(13), Role::Analyst, "An", Some(late)), None)
            .await,
        401,
        "invalid_enrollment",
    );
    // Patients may not present a token.
    expect_err(
        post(&svc, "/v1/principals", &register_request(&key(14), Role::Patient, "P", Some("x".into())), None)
            .await,
        400,
        "invalid_field",
    );
    assert_eq!(log_size(&svc).await, 2);
}

#[actix_web::test]
async fn bad_registrations_change_nothing() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let sk = key(20);
    // Signature by another key.
    let mut req = register_request(&sk, Role::Patient, "P", None);
    req.signature = key(21).sign(domain::SIG_REGISTRATION, b"whatever");
    expect_err(post(&svc, "/v1/principals", &req, None).await, 400, "bad_signature");
    // Signature over other PRE keys (a swapped key).
    let mut req = register_request(&sk, Role::Patient, "P", None);
    req.pre_public_keys = B64(pre_key_bytes(&key(22), Role::Patient));
    expect_err(post(&svc, "/v1/principals", &req, None).await, 400, "bad_signature");

    // Role changed after signing.
    let mut req = register_request(&sk, Role::Patient, "P", None);
    req.role = Role::Auditor;
    req.enrollment_token = Some(enroll(&env, Role::Auditor));
    expect_err(post(&svc, "/v1/principals", &req, None).await, 400, "bad_signature");
    // Bad names.
    expect_err(
        post(&svc, "/v1/principals", &register_request(&sk, Role::Patient, "", None), None).await,
        400,
        "invalid_field",
    );
    let long = "x".repeat(limits::MAX_NAME_LEN + 1);
    expect_err(
        post(&svc, "/v1/principals", &register_request(&sk, Role::Patient, &long, None), None).await,
        400,
        "invalid_field",
    );
    expect_err(
        post(&svc, "/v1/principals", &register_request(&sk, Role::Patient, "a\u{7}b", None), None).await,
        400,
        "invalid_field",
    );
    assert_eq!(log_size(&svc).await, 0);
    register(&svc, &sk, Role::Patient, None).await;
    expect_err(
        post(&svc, "/v1/principals", &register_request(&sk, Role::Patient, "Someone", None), None).await,
        409,
        "conflict",
    );
    assert_eq!(log_size(&svc).await, 1);
}

#[actix_web::test]
async fn malformed_bodies_get_json_4xx() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let sk = key(30);
    let good = serde_json::to_value(register_request(&sk, Role::Patient, "P", None)).unwrap();

    // Unknown field.
    let mut v = good.clone();
    v["extra"] = serde_json::json!(1);
    let e = expect_err(post(&svc, "/v1/principals", &v, None).await, 400, "invalid_json");
    assert!(e.message.contains("unknown field"), "{}", e.message);
    // Wrong base64.
    let mut v = good.clone();
    v["pre_public_keys"] = serde_json::json!("not base64!");
    let e = expect_err(post(&svc, "/v1/principals", &v, None).await, 400, "invalid_json");
    assert!(e.message.contains("base64"), "{}", e.message);
    // Wrong signature length, bad public key, bad role.
    let mut v = good.clone();
    v["signature"] = serde_json::json!("AAAA");
    expect_err(post(&svc, "/v1/principals", &v, None).await, 400, "invalid_json");
    let mut v = good.clone();
    v["signing_key"] = serde_json::json!("AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    expect_err(post(&svc, "/v1/principals", &v, None).await, 400, "invalid_json");
    let mut v = good.clone();
    v["role"] = serde_json::json!("operator");
    expect_err(post(&svc, "/v1/principals", &v, None).await, 400, "invalid_json");
    // Missing field, syntax error, wrong content type.
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("signature");
    expect_err(post(&svc, "/v1/principals", &v, None).await, 400, "invalid_json");
    let req = test::TestRequest::post()
        .uri("/v1/principals")
        .insert_header(("content-type", "application/json"))
        .set_payload("{\"role\":");
    expect_err(call(&svc, req).await, 400, "invalid_json");
    let req = test::TestRequest::post()
        .uri("/v1/principals")
        .insert_header(("content-type", "text/plain"))
        .set_payload(serde_json::to_vec(&good).unwrap());
    expect_err(call(&svc, req).await, 415, "unsupported_media_type");
    // Oversized body.
    let req = test::TestRequest::post()
        .uri("/v1/principals")
        .insert_header(("content-type", "application/json"))
        .set_payload(vec![b' '; limits::MAX_BODY_BYTES + 1]);
    expect_err(call(&svc, req).await, 413, "payload_too_large");
    // Oversized PRE key field inside a body under the limit.
    let mut req = register_request(&sk, Role::Patient, "P", None);
    req.pre_public_keys = B64(vec![1; limits::MAX_PRE_PUBLIC_KEYS_BYTES + 1]);
    expect_err(post(&svc, "/v1/principals", &req, None).await, 400, "invalid_field");
    // Unknown route, bad query; readers' routes want a token first.
    expect_err(get(&svc, "/v1/principals/xyz", None).await, 401, "unauthorized");
    expect_err(get(&svc, "/v1/nothing-here", None).await, 404, "not_found");
    expect_err(get(&svc, "/v1/log/leaves?start=5&end=1", None).await, 400, "invalid_parameter");
    expect_err(get(&svc, "/v1/log/leaves?start=0&end=1&x=2", None).await, 400, "invalid_parameter");
    expect_err(get(&svc, "/v1/log/leaves?start=0&end=100000", None).await, 400, "invalid_parameter");
    assert_eq!(log_size(&svc).await, 0);
    // The server is still fine; with a token, bad path and query parameters
    // are 400s (and not logged: they are malformed, not refused).
    register(&svc, &sk, Role::Patient, None).await;
    let token = login(&svc, &sk).await;
    expect_err(get(&svc, "/v1/principals/xyz", Some(&token)).await, 400, "invalid_parameter");
    expect_err(get(&svc, "/v1/log/entries?start=5&end=1", Some(&token)).await, 400, "invalid_parameter");
    expect_err(get(&svc, "/v1/log/entries?start=0&end=1&x=2", Some(&token)).await, 400, "invalid_parameter");
    expect_err(get(&svc, "/v1/log/entries?start=0&end=100000", Some(&token)).await, 400, "invalid_parameter");
    assert_eq!(log_size(&svc).await, 1);
}

#[actix_web::test]
async fn challenges_are_single_use_bound_and_expiring() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let sk = key(40);
    let principal = sk.principal_id();
    // Unknown principal.
    expect_err(
        post(&svc, "/v1/auth/challenge", &serde_json::json!({ "principal": key(41).principal_id() }), None)
            .await,
        404,
        "not_found",
    );
    register(&svc, &sk, Role::Patient, None).await;
    let sign =
        |nonce: &B64| sk.sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, nonce.as_bytes()));

    // Bad signature: refused, and the nonce is burnt.
    let ch = challenge_for(&svc, principal).await;
    let forged =
        key(42).sign(domain::SIG_AUTH_CHALLENGE, &challenge_message(&principal, ch.nonce.as_bytes()));
    let req = TokenRequest { principal, nonce: ch.nonce.clone(), signature: forged };
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 401, "unauthorized");
    let req = TokenRequest { principal, nonce: ch.nonce.clone(), signature: sign(&ch.nonce) };
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 401, "unauthorized");

    // Replay of a good answer.
    let ch = challenge_for(&svc, principal).await;
    let req = TokenRequest { principal, nonce: ch.nonce.clone(), signature: sign(&ch.nonce) };
    assert_eq!(post(&svc, "/v1/auth/token", &req, None).await.0, 200);
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 401, "unauthorized");

    // Signature over a domain other than the auth challenge.
    let ch = challenge_for(&svc, principal).await;
    let wrong_ctx = sk.sign(domain::SIG_GRANT, &challenge_message(&principal, ch.nonce.as_bytes()));
    let req = TokenRequest { principal, nonce: ch.nonce.clone(), signature: wrong_ctx };
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 401, "unauthorized");

    // Someone else's challenge, answered by them for our principal.
    let other = key(43);
    register(&svc, &other, Role::Patient, None).await;
    let (_, b) =
        post(&svc, "/v1/auth/challenge", &serde_json::json!({ "principal": other.principal_id() }), None)
            .await;
    let och: ChallengeResponse = json(&b);
    let req = TokenRequest { principal, nonce: och.nonce.clone(), signature: sign(&och.nonce) };
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 401, "unauthorized");

    // Expired.
    let ch = challenge_for(&svc, principal).await;
    env.clock.advance(limits::CHALLENGE_TTL_SECS);
    let req = TokenRequest { principal, nonce: ch.nonce.clone(), signature: sign(&ch.nonce) };
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 401, "unauthorized");

    // Wrong nonce length.
    let req = TokenRequest { principal, nonce: B64(vec![1; 5]), signature: sign(&B64(vec![1; 5])) };
    expect_err(post(&svc, "/v1/auth/token", &req, None).await, 400, "invalid_field");
    // Authentication never logs anything.
    assert_eq!(log_size(&svc).await, 2);
}

#[actix_web::test]
async fn bearer_tokens_expire_and_cannot_be_forged() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let sk = key(50);
    register(&svc, &sk, Role::Patient, None).await;
    let token = login(&svc, &sk).await;
    assert_eq!(get(&svc, "/v1/log/mine", Some(&token)).await.0, 200);
    expect_err(get(&svc, "/v1/log/mine", None).await, 401, "unauthorized");
    expect_err(
        get(&svc, "/v1/log/mine", Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await,
        401,
        "unauthorized",
    );
    let mut tampered = token.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    expect_err(get(&svc, "/v1/log/mine", Some(&tampered)).await, 401, "unauthorized");
    let req = test::TestRequest::get()
        .uri("/v1/log/mine")
        .insert_header(("Authorization", format!("Basic {token}")));
    expect_err(call(&svc, req).await, 401, "unauthorized");
    env.clock.advance(limits::TOKEN_TTL_SECS);
    expect_err(get(&svc, "/v1/log/mine", Some(&token)).await, 401, "unauthorized");
    // A fresh login works again.
    let token = login(&svc, &sk).await;
    assert_eq!(get(&svc, "/v1/log/mine", Some(&token)).await.0, 200);
}

#[actix_web::test]
async fn metrics_and_health_report_real_counts() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    register(&svc, &key(60), Role::Patient, None).await;
    let token = login(&svc, &key(60)).await;
    expect_err(get(&svc, "/v1/principals/xyz", Some(&token)).await, 400, "invalid_parameter");
    let (s, b) = get(&svc, "/metrics", None).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(
        text.contains("medrelay_http_requests_total{route=\"/v1/principals\",status=\"201\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("medrelay_http_requests_total{route=\"/v1/principals/{id}\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("medrelay_http_request_duration_seconds_count{route=\"/v1/principals\"} 1"),
        "{text}"
    );
    assert!(text.contains("medrelay_reencryptions_total 0"));
    // Raw ids never appear as labels.
    assert!(!text.contains("xyz"));
}
