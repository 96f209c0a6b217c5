//! Grants, revocations and re-encryption denials through the real HTTP
//! stack: the checks that come before any PRE key is touched (signatures,
//! ownership, roles, limits), that forged and foreign grants are logged as
//! refusals while malformed ones are not, and that every re-encryption
//! denial is logged. The full grant → re-encrypt → decrypt flow is in
//! http_flow.rs; refusals that need real keys are in http_refusals.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_crypto::{domain, GrantId, PrincipalId, RecordId, SigningKey, Timestamp};
use medrelay_policy::{
    Grant, LogEvent, Operation, Purpose, RefusalReason, RefusedObject, Revocation, SignedGrant,
};
use medrelay_server::{app, REFUSAL_WINDOW_SECS};
use medrelay_wire::{
    limits, CreateGrantRequest, GrantList, LogEntries, ReencryptItem, ReencryptRequest, ReencryptResponse,
    RevokeRequest, Role, B64,
};

fn grant(patient: &SigningKey, doctor: PrincipalId, id: u8) -> Grant {
    Grant::new(
        GrantId::from_bytes([id; 16]),
        patient.principal_id(),
        doctor,
        "Observation".parse().unwrap(),
        Purpose::Treatment,
        Timestamp(T0),
        Timestamp(T0 + 3600),
        Timestamp(T0),
    )
    .unwrap()
}

fn request(signed: &SignedGrant, rekeys: usize) -> CreateGrantRequest {
    CreateGrantRequest { grant: B64(signed.to_bytes()), rekeys: vec![B64(vec![1; 8]); rekeys] }
}

#[actix_web::test]
async fn bad_grants_are_refused_before_any_key_is_used_and_change_nothing() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(1);
    let other = key(2);
    let d = key(3);
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &other, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let aud = key(4);
    register(&svc, &aud, Role::Auditor, Some(enroll(&env, Role::Auditor))).await;
    let tok = login(&svc, &p).await;
    let before = log_size(&svc).await;

    // Forged: the body names the patient, the doctor signed it.
    let body = grant(&p, d.principal_id(), 1).to_bytes();
    let forged = SignedGrant::from_parts(body.clone(), d.sign(domain::SIG_GRANT, &body)).unwrap();
    expect_err(post(&svc, "/v1/grants", &request(&forged, 1), Some(&tok)).await, 400, "bad_signature");
    // Signed over other bytes.
    let wrong = SignedGrant::from_parts(body, p.sign(domain::SIG_REVOCATION, b"x")).unwrap();
    expect_err(post(&svc, "/v1/grants", &request(&wrong, 1), Some(&tok)).await, 400, "bad_signature");
    // Another patient's (validly signed) grant, presented by this patient.
    let theirs = grant(&other, d.principal_id(), 2).sign(&other).unwrap();
    expect_err(post(&svc, "/v1/grants", &request(&theirs, 1), Some(&tok)).await, 403, "forbidden");
    // Toward a non-doctor, toward an unknown principal.
    let to_aud = grant(&p, aud.principal_id(), 3).sign(&p).unwrap();
    expect_err(post(&svc, "/v1/grants", &request(&to_aud, 1), Some(&tok)).await, 400, "invalid_field");
    let to_nobody = grant(&p, key(9).principal_id(), 4).sign(&p).unwrap();
    expect_err(post(&svc, "/v1/grants", &request(&to_nobody, 1), Some(&tok)).await, 404, "not_found");
    // Key count limits, garbage grant bytes.
    let good = grant(&p, d.principal_id(), 5).sign(&p).unwrap();
    expect_err(post(&svc, "/v1/grants", &request(&good, 0), Some(&tok)).await, 400, "invalid_field");
    let many = request(&good, limits::MAX_REKEYS_PER_GRANT + 1);
    expect_err(post(&svc, "/v1/grants", &many, Some(&tok)).await, 400, "invalid_field");
    let junk = CreateGrantRequest { grant: B64(vec![7; 40]), rekeys: vec![B64(vec![1])] };
    expect_err(post(&svc, "/v1/grants", &junk, Some(&tok)).await, 400, "invalid_field");
    let mut truncated = good.to_bytes();
    truncated.pop();
    let t = CreateGrantRequest { grant: B64(truncated), rekeys: vec![B64(vec![1])] };
    expect_err(post(&svc, "/v1/grants", &t, Some(&tok)).await, 400, "invalid_field");
    // Only patients create grants.
    let td = login(&svc, &d).await;
    expect_err(post(&svc, "/v1/grants", &request(&good, 1), Some(&td)).await, 403, "wrong_role");
    expect_err(post(&svc, "/v1/grants", &request(&good, 1), None).await, 401, "unauthorized");

    // The forged and foreign grants are each logged as a refusal by the
    // submitting patient (ids and reasons only), and the doctor's attempt as
    // a wrong-role refusal; the malformed ones, the limits and the
    // unauthenticated attempt are not. The wrongly signed grant is the same
    // refusal as the forged one (same patient, grant id and reason) inside
    // its window: counted, and written as one entry when the window ends.
    assert_eq!(log_size(&svc).await, before + 3);
    let refusals = refusals_since(&svc, &tok, p.principal_id(), before).await;
    assert_eq!(
        refusals,
        vec![
            (RefusedObject::Grant(GrantId::from_bytes([1; 16])), RefusalReason::BadSignature),
            (RefusedObject::Grant(GrantId::from_bytes([2; 16])), RefusalReason::NotOwner),
        ]
    );
    let create = RefusedObject::Operation(Operation::new("POST /v1/grants").unwrap());
    assert_eq!(
        refusals_since(&svc, &td, d.principal_id(), before).await,
        vec![(create.clone(), RefusalReason::WrongRole)]
    );
    env.clock.advance(REFUSAL_WINDOW_SECS);
    medrelay_server::sweep_expired(&env.state).await.unwrap();
    assert_eq!(log_size(&svc).await, before + 4);
    match mine(&svc, &tok).await.pop().unwrap().1 {
        LogEvent::RequestRefused { what, reason: RefusalReason::BadSignature, count: 1, .. } => {
            assert_eq!(what, RefusedObject::Grant(GrantId::from_bytes([1; 16])));
        }
        other => panic!("unexpected {other:?}"),
    }
    let before = log_size(&svc).await;
    let (s, b) = get(&svc, &format!("/v1/patients/{}/grants", p.principal_id()), Some(&tok)).await;
    assert_eq!(s, 200);
    assert!(json::<GrantList>(&b).grants.is_empty());
    // Grant lists are private to their patient, doctor and auditors; a
    // refused read is logged too.
    expect_err(
        get(&svc, &format!("/v1/patients/{}/grants", p.principal_id()), Some(&td)).await,
        403,
        "forbidden",
    );
    expect_err(
        get(&svc, &format!("/v1/doctors/{}/grants", d.principal_id()), Some(&tok)).await,
        403,
        "forbidden",
    );
    let ta = login(&svc, &aud).await;
    assert_eq!(get(&svc, &format!("/v1/doctors/{}/grants", d.principal_id()), Some(&ta)).await.0, 200);
    assert_eq!(
        refusals_since(&svc, &td, d.principal_id(), before).await,
        vec![(RefusedObject::PatientGrants(p.principal_id()), RefusalReason::NotEntitled)]
    );
    assert_eq!(
        refusals_since(&svc, &tok, p.principal_id(), before).await,
        vec![(RefusedObject::DoctorGrants(d.principal_id()), RefusalReason::NotEntitled)]
    );
    assert_eq!(log_size(&svc).await, before + 2);
}

#[actix_web::test]
async fn bad_revocations_are_refused() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(11);
    register(&svc, &p, Role::Patient, None).await;
    let tok = login(&svc, &p).await;
    let gid = GrantId::from_bytes([5; 16]);
    let rev = Revocation::new(gid, p.principal_id(), Timestamp(T0)).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    expect_err(post(&svc, &format!("/v1/grants/{gid}/revoke"), &req, Some(&tok)).await, 404, "not_found");
    let other = GrantId::from_bytes([6; 16]);
    expect_err(
        post(&svc, &format!("/v1/grants/{other}/revoke"), &req, Some(&tok)).await,
        400,
        "invalid_field",
    );
    let junk = RevokeRequest { revocation: B64(vec![1, 2, 3]) };
    expect_err(
        post(&svc, &format!("/v1/grants/{gid}/revoke"), &junk, Some(&tok)).await,
        400,
        "invalid_field",
    );
    expect_err(post(&svc, "/v1/grants/zz/revoke", &req, Some(&tok)).await, 400, "invalid_parameter");
    assert_eq!(log_size(&svc).await, 1);
}

#[actix_web::test]
async fn every_reencryption_denial_is_logged_and_answered_403() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let d = key(21);
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let p = key(22);
    register(&svc, &p, Role::Patient, None).await;
    let td = login(&svc, &d).await;
    let tp = login(&svc, &p).await;
    let before = log_size(&svc).await;

    // A record the doctor holds no grant for (here: unknown) is a logged denial.
    let rid = RecordId::from_bytes([1; 16]);
    expect_err(post(&svc, &format!("/v1/records/{rid}/reencrypt"), &(), Some(&td)).await, 403, "no_grant");
    assert_eq!(log_size(&svc).await, before + 1);
    let (_, b) = get(&svc, "/v1/log/mine", Some(&td)).await;
    let mine: LogEntries = json(&b);
    let last = event_of(mine.entries.last().unwrap());
    match last {
        LogEvent::AccessDenied { doctor, record, reason, .. } => {
            assert_eq!((doctor, record, reason.code()), (d.principal_id(), rid, "no_grant"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Batch: one denial item per record, each logged.
    let req =
        ReencryptRequest { record_ids: vec![RecordId::from_bytes([2; 16]), RecordId::from_bytes([3; 16])] };
    let (s, b) = post(&svc, "/v1/reencrypt", &req, Some(&td)).await;
    assert_eq!(s, 200);
    let r: ReencryptResponse = json(&b);
    assert_eq!(r.items.len(), 2);
    assert!(r
        .items
        .iter()
        .all(|i| matches!(i, ReencryptItem::Denied { error, .. } if error.error == "no_grant")));
    assert_eq!(log_size(&svc).await, before + 3);
    // Limits: nothing logged. One id many times is a request error.
    let empty = ReencryptRequest { record_ids: vec![] };
    expect_err(post(&svc, "/v1/reencrypt", &empty, Some(&td)).await, 400, "invalid_field");
    let many = ReencryptRequest { record_ids: vec![rid; limits::MAX_BATCH_REENCRYPT + 1] };
    expect_err(post(&svc, "/v1/reencrypt", &many, Some(&td)).await, 400, "invalid_field");
    let copies = ReencryptRequest { record_ids: vec![rid; limits::MAX_BATCH_REENCRYPT] };
    expect_err(post(&svc, "/v1/reencrypt", &copies, Some(&td)).await, 400, "invalid_field");
    expect_err(post(&svc, &format!("/v1/records/{rid}/reencrypt"), &(), None).await, 401, "unauthorized");
    assert_eq!(log_size(&svc).await, before + 3);
    // The wrong role is logged, as the patient's own refusal.
    expect_err(post(&svc, &format!("/v1/records/{rid}/reencrypt"), &(), Some(&tp)).await, 403, "wrong_role");
    assert_eq!(log_size(&svc).await, before + 4);
    let op = RefusedObject::Operation(Operation::new("POST /v1/records/{id}/reencrypt").unwrap());
    assert_eq!(
        refusals_since(&svc, &tp, p.principal_id(), before).await,
        vec![(op, RefusalReason::WrongRole)]
    );
    let (_, m) = get(&svc, "/metrics", None).await;
    assert!(String::from_utf8(m).unwrap().contains("medrelay_access_denials_total 3"));
}
