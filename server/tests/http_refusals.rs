//! Refusals of forged and foreign submissions, with real keys, through the
//! real HTTP stack: each is answered with its 4xx, appears in the audit log
//! as `request refused` (submitter, claimed id, reason; never the bytes),
//! and stores nothing else. Malformed and unauthenticated submissions are
//! not logged, so only accountable principals can add refusal entries.
//! Every kind of refusal is exactly one entry; a batch repeating an id is a
//! request error; repeated identical refusals are coalesced into one entry
//! with their count per window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_crypto::{domain, GrantId, Timestamp};
use medrelay_policy::{
    Denial, LogEvent, RefusalReason, RefusedObject, Revocation, SignedGrant, SignedRevocation,
};
use medrelay_server::{app, REFUSAL_WINDOW_SECS};
use medrelay_wire::{
    limits, GrantList, LogEntries, RecordList, ReencryptRequest, RevokeRequest, Role, UploadRecordRequest,
    B64,
};

const SCOPE: &str = "Observation?category=laboratory";

#[actix_web::test]
async fn forged_and_foreign_submissions_are_refused_logged_and_store_nothing_else() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, q, d, e) = (key(1), key(2), key(3), key(4));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &e, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let tp = login(&svc, &p).await;
    let tq = login(&svc, &q).await;
    // q's real grant to d, and p's own real grant 5 (both stored normally).
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&q, &d, 9, SCOPE, T0 + 3600), Some(&tq)).await.0, 201);
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 5, SCOPE, T0 + 3600), Some(&tp)).await.0, 201);
    let before = log_size(&svc).await;

    // 1. A grant whose re-encryption key delegates to another doctor than
    //    the grant names: the key's signature binding fails.
    let mut wrong_keys = grant_request(&p, &d, 1, SCOPE, T0 + 3600);
    wrong_keys.rekeys = grant_request(&p, &e, 1, SCOPE, T0 + 3600).rekeys;
    expect_err(post(&svc, "/v1/grants", &wrong_keys, Some(&tp)).await, 400, "bad_signature");
    // 2. A grant in p's name signed by the doctor (forged signature).
    let mut forged = grant_request(&p, &d, 2, SCOPE, T0 + 3600);
    let body = SignedGrant::from_bytes(forged.grant.as_bytes()).unwrap().body().to_vec();
    let forged_grant = SignedGrant::from_parts(body.clone(), d.sign(domain::SIG_GRANT, &body)).unwrap();
    forged.grant = B64(forged_grant.to_bytes());
    expect_err(post(&svc, "/v1/grants", &forged, Some(&tp)).await, 400, "bad_signature");
    // 3. A tampered envelope (one ciphertext bit flipped after signing).
    let env_p = seal(&p, 30, lab(), b"{\"resourceType\":\"Observation\"}");
    let mut tampered = env_p.to_bytes();
    *tampered.last_mut().unwrap() ^= 1;
    let req = UploadRecordRequest { envelope: B64(tampered), capsule: Some(B64(env_p.capsule.to_bytes())) };
    expect_err(post(&svc, "/v1/records", &req, Some(&tp)).await, 400, "bad_signature");
    // 4. p revokes q's grant (validly signed by p, but not p's grant).
    let gid9 = GrantId::from_bytes([9; 16]);
    let rev = Revocation::new(gid9, p.principal_id(), Timestamp(T0)).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    expect_err(post(&svc, &format!("/v1/grants/{gid9}/revoke"), &req, Some(&tp)).await, 403, "forbidden");
    // 5. A revocation of p's grant 5 in p's name, signed by the doctor.
    let gid5 = GrantId::from_bytes([5; 16]);
    let body = Revocation::new(gid5, p.principal_id(), Timestamp(T0)).to_bytes();
    let forged_rev =
        SignedRevocation::from_parts(body.clone(), d.sign(domain::SIG_REVOCATION, &body)).unwrap();
    let req = RevokeRequest { revocation: B64(forged_rev.to_bytes()) };
    expect_err(post(&svc, &format!("/v1/grants/{gid5}/revoke"), &req, Some(&tp)).await, 400, "bad_signature");

    // Not logged: the same forgery without a token, and malformed bytes.
    expect_err(post(&svc, "/v1/grants", &forged, None).await, 401, "unauthorized");
    let junk = RevokeRequest { revocation: B64(vec![1, 2, 3]) };
    expect_err(
        post(&svc, &format!("/v1/grants/{gid5}/revoke"), &junk, Some(&tp)).await,
        400,
        "invalid_field",
    );

    // Exactly one entry per refusal, each by p, with the claimed id.
    assert_eq!(log_size(&svc).await, before + 5);
    let (_, b) = get(&svc, "/v1/log/mine", Some(&tp)).await;
    let logged: Vec<(RefusedObject, RefusalReason)> = json::<LogEntries>(&b)
        .entries
        .iter()
        .filter(|x| x.index >= before)
        .map(|x| {
            assert_eq!(x.event.len(), 68, "ids and codes only");
            match event_of(x) {
                LogEvent::RequestRefused { principal, what, reason, at, count } => {
                    assert_eq!((principal, at, count), (p.principal_id(), Timestamp(T0), 1));
                    (what, reason)
                }
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        logged,
        vec![
            (RefusedObject::ReencryptionKeys(GrantId::from_bytes([1; 16])), RefusalReason::BadSignature),
            (RefusedObject::Grant(GrantId::from_bytes([2; 16])), RefusalReason::BadSignature),
            (RefusedObject::Record(env_p.header().record_id()), RefusalReason::BadSignature),
            (RefusedObject::Revocation(gid9), RefusalReason::NotOwner),
            (RefusedObject::Revocation(gid5), RefusalReason::BadSignature),
        ]
    );
    // The victim of the foreign revocation sees nothing new about them.
    let (_, b) = get(&svc, "/v1/log/mine", Some(&tq)).await;
    assert!(json::<LogEntries>(&b).entries.iter().all(|x| x.index < before));

    // Nothing else changed: no new grant, no record, no revocation, keys kept.
    let store = env.state.store();
    for id in [1, 2] {
        assert!(store.get_grant(&GrantId::from_bytes([id; 16])).unwrap().is_none());
        assert!(store.get_rekeys(&GrantId::from_bytes([id; 16])).unwrap().is_none());
    }
    for gid in [gid5, gid9] {
        assert!(store.get_grant(&gid).unwrap().unwrap().revocation.is_none());
        assert!(store.get_rekeys(&gid).unwrap().is_some());
    }
    let (_, b) = get(&svc, &format!("/v1/patients/{}/grants", p.principal_id()), Some(&tp)).await;
    let grants = json::<GrantList>(&b).grants;
    assert_eq!(grants.iter().map(|g| (g.grant_id, g.revoked)).collect::<Vec<_>>(), vec![(gid5, false)]);
    let (_, b) = get(&svc, &format!("/v1/patients/{}/records", p.principal_id()), Some(&tp)).await;
    assert!(json::<RecordList>(&b).records.is_empty());
    assert_eq!(metric(&metrics(&svc).await, "medrelay_requests_refused_total"), 5);
}

/// The log entries appended since `before`, read as the auditor does.
async fn appended<S, B>(svc: &S, auditor: &str, before: u64) -> Vec<LogEvent>
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let n = log_size(svc).await;
    let (s, b) = get(svc, &format!("/v1/log/entries?start={before}&end={n}"), Some(auditor)).await;
    assert_eq!(s, 200);
    json::<LogEntries>(&b).entries.iter().map(event_of).collect()
}

#[actix_web::test]
async fn each_refusal_kind_is_one_entry_and_repeats_are_coalesced_not_flooded() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, q, d, r, a) = (key(1), key(2), key(3), key(4), key(5));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &r, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &a, Role::Auditor, Some(enroll(&env, Role::Auditor))).await;
    let (tp, tq, td, tr, ta) = (
        login(&svc, &p).await,
        login(&svc, &q).await,
        login(&svc, &d).await,
        login(&svc, &r).await,
        login(&svc, &a).await,
    );
    let rec = seal(&p, 30, lab(), b"{}");
    let rid = rec.header().record_id();
    let up = rec.upload();
    assert_eq!(post(&svc, "/v1/records", &up, Some(&tp)).await.0, 201);
    // d's grant expires in a minute; r's is revoked.
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 1, SCOPE, T0 + 60), Some(&tp)).await.0, 201);
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &r, 2, SCOPE, T0 + 9999), Some(&tp)).await.0, 201);
    let gid2 = GrantId::from_bytes([2; 16]);
    let rev = Revocation::new(gid2, p.principal_id(), Timestamp(T0)).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    assert_eq!(post(&svc, &format!("/v1/grants/{gid2}/revoke"), &req, Some(&tp)).await.0, 200);
    env.clock.advance(60);
    let reenc = format!("/v1/records/{rid}/reencrypt");

    // Each kind of refusal: its answer, and exactly one new entry saying so.
    let forged = {
        let mut g = grant_request(&p, &d, 3, SCOPE, T0 + 3600);
        let body = SignedGrant::from_bytes(g.grant.as_bytes()).unwrap().body().to_vec();
        g.grant =
            B64(SignedGrant::from_parts(body.clone(), d.sign(domain::SIG_GRANT, &body)).unwrap().to_bytes());
        g
    };
    // (what, the answer, its status and code)
    type Case = (&'static str, (u16, Vec<u8>), u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            "another principal's object",
            get(&svc, &format!("/v1/records/{rid}"), Some(&tq)).await,
            403,
            "forbidden",
        ),
        ("wrong role", post(&svc, &reenc, &(), Some(&tp)).await, 403, "wrong_role"),
        ("expired grant", post(&svc, &reenc, &(), Some(&td)).await, 403, "expired"),
        ("revoked grant", post(&svc, &reenc, &(), Some(&tr)).await, 403, "revoked"),
        ("bad signature", post(&svc, "/v1/grants", &forged, Some(&tp)).await, 400, "bad_signature"),
    ];
    // (The requests above ran in order; check their answers and entries.)
    let start = log_size(&svc).await - cases.len() as u64;
    let entries = appended(&svc, &ta, start).await;
    assert_eq!(entries.len(), cases.len());
    for ((what, answer, status, code), ev) in cases.into_iter().zip(&entries) {
        expect_err(answer, status, code);
        let (by, logged_code) = match ev {
            LogEvent::RequestRefused { principal, reason, count: 1, .. } => (*principal, reason.code()),
            LogEvent::AccessDenied { doctor, reason, count: 1, .. } => (*doctor, reason.code()),
            other => panic!("{what}: unexpected {other:?}"),
        };
        let want_by = match what {
            "another principal's object" => q.principal_id(),
            "wrong role" | "bad signature" => p.principal_id(),
            "expired grant" => d.principal_id(),
            _ => r.principal_id(),
        };
        let want_code = match code {
            "forbidden" => "not_entitled",
            other => other,
        };
        assert_eq!((by, logged_code), (want_by, want_code), "{what}");
    }

    // 64 copies of one id in a batch: a request error, nothing logged.
    let before = log_size(&svc).await;
    let copies = ReencryptRequest { record_ids: vec![rid; limits::MAX_BATCH_REENCRYPT] };
    let e = expect_err(post(&svc, "/v1/reencrypt", &copies, Some(&tr)).await, 400, "invalid_field");
    assert!(e.message.contains("more than once"), "{}", e.message);
    assert_eq!(log_size(&svc).await, before);

    // A revoked doctor hammering one record: every request is refused, the
    // first was logged above, the repeats inside the window are counted and
    // become one entry with their count when it ends.
    let history_before = mine(&svc, &tp).await.len();
    for _ in 0..50 {
        expect_err(post(&svc, &reenc, &(), Some(&tr)).await, 403, "revoked");
    }
    let one = ReencryptRequest { record_ids: vec![rid] };
    for _ in 0..10 {
        let (s, _) = post(&svc, "/v1/reencrypt", &one, Some(&tr)).await;
        assert_eq!(s, 200);
    }
    assert_eq!(log_size(&svc).await, before);
    assert_eq!(metric(&metrics(&svc).await, "medrelay_refusals_coalesced_total"), 60);
    env.clock.advance(REFUSAL_WINDOW_SECS);
    medrelay_server::sweep_expired(&env.state).await.unwrap();
    let added = appended(&svc, &ta, before).await;
    assert_eq!(added.len(), 1);
    match &added[0] {
        LogEvent::AccessDenied { doctor, record, reason, count, patient, .. } => {
            assert_eq!((*doctor, *record, *reason, *count), (r.principal_id(), rid, Denial::Revoked, 60));
            assert_eq!(*patient, Some(p.principal_id()));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The patient's history grew by that one entry, not sixty.
    assert_eq!(mine(&svc, &tp).await.len(), history_before + 1);
    // After the window, the same refusal is logged at once again.
    expect_err(post(&svc, &reenc, &(), Some(&tr)).await, 403, "revoked");
    assert_eq!(log_size(&svc).await, before + 2);
}

/// Batch capsules: one signed by someone else in the patient's name is
/// refused and logged at upload; an envelope naming a capsule the server
/// does not hold is a request error; a stored capsule that no longer
/// verifies (tampered on disk) is refused and logged when a doctor asks for
/// it, never a 500 (review finding F10), and nothing is served.
#[actix_web::test]
async fn forged_unknown_and_tampered_capsules_are_refused() {
    use medrelay_crypto::{SignedCapsule, MAX_SIGNED_CAPSULE_LEN};
    use medrelay_wire::{ReencryptItem, ReencryptResponse, UploadRecordsRequest};
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, d) = (key(61), key(62));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let (tp, td) = (login(&svc, &p).await, login(&svc, &d).await);
    let rec = seal(&p, 70, lab(), b"{\"resourceType\":\"Observation\"}");
    let before = log_size(&svc).await;

    // The capsule's bytes signed by the doctor instead of the patient.
    let c = rec.capsule.capsule();
    let forged = {
        let mut raw = rec.capsule.to_bytes();
        let sig = d.sign(domain::SIG_CAPSULE, &c.to_bytes());
        let n = raw.len();
        raw[n - 64..].copy_from_slice(&sig.to_bytes());
        raw
    };
    assert!(forged.len() <= MAX_SIGNED_CAPSULE_LEN);
    let forged_id = SignedCapsule::from_bytes(&forged).unwrap().id();
    let req = UploadRecordsRequest { capsules: vec![B64(forged)], envelopes: vec![B64(rec.to_bytes())] };
    expect_err(post(&svc, "/v1/records/batch", &req, Some(&tp)).await, 400, "bad_signature");
    // The envelope alone: its capsule is unknown.
    let req = UploadRecordRequest { envelope: B64(rec.to_bytes()), capsule: None };
    let e = expect_err(post(&svc, "/v1/records", &req, Some(&tp)).await, 400, "invalid_field");
    assert!(e.message.contains("unknown capsule"), "{}", e.message);
    assert_eq!(
        refusals_since(&svc, &tp, p.principal_id(), before).await,
        vec![(RefusedObject::Capsule(forged_id), RefusalReason::BadSignature)]
    );
    let (_, b) = get(&svc, &format!("/v1/patients/{}/records", p.principal_id()), Some(&tp)).await;
    assert!(json::<RecordList>(&b).records.is_empty(), "nothing stored");

    // The disk holds a tampered copy under the capsule's id (written to the
    // store directly, as an attacker with the disk would); the upload keeps
    // the stored copy, and the fetch refuses it.
    let mut tampered = rec.capsule.to_bytes();
    tampered[2000] ^= 1;
    let cid = rec.capsule.id();
    env.state.store().put_batch(&[(cid, tampered)], &[], &[]).unwrap();
    assert_eq!(post(&svc, "/v1/records", &rec.upload(), Some(&tp)).await.0, 201);
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 3, SCOPE, T0 + 3600), Some(&tp)).await.0, 201);
    let id = rec.header().record_id();
    let before = log_size(&svc).await;
    let e = expect_err(
        post(&svc, &format!("/v1/records/{id}/reencrypt"), &(), Some(&td)).await,
        400,
        "bad_signature",
    );
    assert!(e.message.contains("capsule"), "{}", e.message);
    let req = ReencryptRequest { record_ids: vec![id] };
    let (s, b) = post(&svc, "/v1/reencrypt", &req, Some(&td)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let r: ReencryptResponse = json(&b);
    assert!(matches!(&r.items[..], [ReencryptItem::Denied { error, .. }] if error.error == "bad_signature"));
    assert!(r.capsules.is_empty());
    // One refusal entry (the repeat is coalesced in its window), by the
    // doctor, naming the capsule; nothing served.
    assert_eq!(
        refusals_since(&svc, &td, d.principal_id(), before).await,
        vec![(RefusedObject::Capsule(cid), RefusalReason::BadSignature)]
    );
    assert!(env.state.store().get_delivered(&GrantId::from_bytes([3; 16]), &cid).unwrap().is_none());
}

/// Review finding F2: the signed grant names the digests of the
/// re-encryption keys it authorizes. Valid keys toward the right doctor,
/// but not the ones the patient signed for, are refused; nothing stored.
#[actix_web::test]
async fn keys_the_grant_does_not_name_are_refused() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, d) = (key(71), key(72));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let tp = login(&svc, &p).await;
    let mut swapped = grant_request(&p, &d, 6, SCOPE, T0 + 3600);
    swapped.rekeys = grant_request(&p, &d, 7, SCOPE, T0 + 3600).rekeys;
    let e = expect_err(post(&svc, "/v1/grants", &swapped, Some(&tp)).await, 400, "invalid_field");
    assert!(e.message.contains("does not authorize"), "{}", e.message);
    assert!(env.state.store().get_grant(&GrantId::from_bytes([6; 16])).unwrap().is_none());
    assert!(env.state.store().get_rekeys(&GrantId::from_bytes([6; 16])).unwrap().is_none());
    // The keys it does name go in.
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 6, SCOPE, T0 + 3600), Some(&tp)).await.0, 201);
}

/// Review finding F7: the signed grant carries the threshold and fragment
/// count of its re-encryption keys. Keys the grant authorizes by digest but
/// of another threshold or fragment count are refused with a clear error
/// and nothing is stored; keys matching a 2-of-3 grant go in.
#[actix_web::test]
async fn keys_of_another_threshold_than_the_grant_are_refused() {
    use medrelay_crypto::Threshold;
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, d) = (key(73), key(74));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let tp = login(&svc, &p).await;
    let t = |a, b| Threshold::new(a, b).unwrap();
    for (id, keys, grant) in [(8, t(1, 1), t(2, 3)), (9, t(2, 2), t(2, 3)), (10, t(2, 3), t(1, 3))] {
        let req = grant_request_with_thresholds(&p, &d, id, SCOPE, T0 + 3600, keys, grant);
        let e = expect_err(post(&svc, "/v1/grants", &req, Some(&tp)).await, 400, "invalid_field");
        let said = format!(
            "is {}-of-{}, the signed grant says {}-of-{}",
            keys.threshold(),
            keys.shares(),
            grant.threshold(),
            grant.shares()
        );
        assert!(e.message.contains(&said), "{}", e.message);
        assert!(env.state.store().get_grant(&GrantId::from_bytes([id; 16])).unwrap().is_none());
        assert!(env.state.store().get_rekeys(&GrantId::from_bytes([id; 16])).unwrap().is_none());
    }
    let ok = grant_request_with_thresholds(&p, &d, 8, SCOPE, T0 + 3600, t(2, 3), t(2, 3));
    assert_eq!(post(&svc, "/v1/grants", &ok, Some(&tp)).await.0, 201);
    assert!(env.state.store().get_rekeys(&GrantId::from_bytes([8; 16])).unwrap().is_some());
}
