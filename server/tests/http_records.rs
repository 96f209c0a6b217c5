//! Record upload and listing through the real actix HTTP stack, with real
//! envelopes from medrelay-crypto, and the canary scan of the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use base64::Engine as _;
use common::*;
use medrelay_crypto::{RecordEnvelope, RecordId, SigningKey};
use medrelay_policy::{LogEvent, RefusalReason, RefusedObject};
use medrelay_server::scan::Needles;
use medrelay_server::{app, REFUSAL_WINDOW_SECS};
use medrelay_wire::{
    limits, RecordList, Role, UploadRecordRequest, UploadRecordsRequest, UploadRecordsResponse, B64,
};

const CANARY: &str = "CANARY-PATIENT-PLAINTEXT-9f2c71e4";

fn seal(sk: &SigningKey, seed: u64, body: &[u8]) -> Sealed {
    common::seal(sk, seed, lab(), body)
}

fn one(env: &Sealed) -> UploadRecordRequest {
    env.upload()
}

#[actix_web::test]
async fn patients_upload_and_list_their_records() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(1);
    register(&svc, &p, Role::Patient, None).await;
    let tok = login(&svc, &p).await;
    let e1 = seal(&p, 100, b"{\"resourceType\":\"Observation\"}");
    let (s, b) = post(&svc, "/v1/records", &one(&e1), Some(&tok)).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let r: UploadRecordsResponse = json(&b);
    assert_eq!(r.receipts.len(), 1);
    assert_eq!(r.receipts[0].record_id, e1.header().record_id());
    assert_eq!(r.receipts[0].log_index, 1);

    let batch: Vec<Sealed> = (0..3).map(|i| seal(&p, 200 + i, b"batch body")).collect();
    let req = upload_all(&batch);
    let (s, b) = post(&svc, "/v1/records/batch", &req, Some(&tok)).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let r: UploadRecordsResponse = json(&b);
    assert_eq!(r.receipts.iter().map(|x| x.log_index).collect::<Vec<_>>(), vec![2, 3, 4]);

    let (s, b) = get(&svc, &format!("/v1/patients/{}/records", p.principal_id()), Some(&tok)).await;
    assert_eq!(s, 200);
    let list: RecordList = json(&b);
    assert_eq!(list.records.len(), 4);
    assert!(list.records.iter().all(|r| r.owner == p.principal_id()));
    // Pages: `?after=` the last id of a page gives the records after it.
    let ids: Vec<RecordId> = list.records.iter().map(|r| r.record_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");
    let (s, b) =
        get(&svc, &format!("/v1/patients/{}/records?after={}", p.principal_id(), ids[1]), Some(&tok)).await;
    assert_eq!(s, 200);
    let page: Vec<RecordId> = json::<RecordList>(&b).records.iter().map(|r| r.record_id).collect();
    assert_eq!(page, ids[2..]);
    let bad = format!("/v1/patients/{}/records?after=not-an-id", p.principal_id());
    expect_err(get(&svc, &bad, Some(&tok)).await, 400, "invalid_parameter");
    // The stored envelope is byte-for-byte what was uploaded.
    let (s, b) = get(&svc, &format!("/v1/records/{}", e1.header().record_id()), Some(&tok)).await;
    assert_eq!(s, 200);
    let got = json::<UploadRecordRequest>(&b);
    assert_eq!(got.envelope.0, e1.to_bytes());
    // The owner gets the batch capsule with it, byte for byte.
    assert_eq!(got.capsule.unwrap().0, e1.capsule.to_bytes());
    // Another patient sees neither the list nor the envelope.
    let q = key(2);
    register(&svc, &q, Role::Patient, None).await;
    let tq = login(&svc, &q).await;
    expect_err(
        get(&svc, &format!("/v1/patients/{}/records", p.principal_id()), Some(&tq)).await,
        403,
        "forbidden",
    );
    expect_err(
        get(&svc, &format!("/v1/records/{}", e1.header().record_id()), Some(&tq)).await,
        403,
        "forbidden",
    );
    expect_err(
        get(&svc, &format!("/v1/records/{}", RecordId::from_bytes([0; 16])), Some(&tq)).await,
        404,
        "not_found",
    );
}

#[actix_web::test]
async fn bad_envelopes_are_refused_and_change_nothing() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(3);
    let q = key(4);
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    let tok = login(&svc, &p).await;
    let before = log_size(&svc).await;
    let good_rec = seal(&p, 1, b"body");
    let good = good_rec.to_bytes();
    let good_cap = B64(good_rec.capsule.to_bytes());

    // Someone else's (validly signed) envelope.
    let theirs = seal(&q, 2, b"body");
    let theirs_alone = UploadRecordRequest { envelope: B64(theirs.to_bytes()), capsule: None };
    expect_err(post(&svc, "/v1/records", &theirs_alone, Some(&tok)).await, 403, "forbidden");
    // Tampered ciphertext: the owner's signature no longer verifies.
    let mut t = good.clone();
    let n = t.len();
    t[n - 1] ^= 1;
    let req = UploadRecordRequest { envelope: B64(t), capsule: None };
    expect_err(post(&svc, "/v1/records", &req, Some(&tok)).await, 400, "bad_signature");
    // Truncated, trailing garbage, wrong version, empty.
    for bad in [
        good[..good.len() / 2].to_vec(),
        [good.clone(), vec![0]].concat(),
        {
            let mut v = good.clone();
            v[4] = 99;
            v
        },
        vec![],
    ] {
        let req = UploadRecordRequest { envelope: B64(bad), capsule: Some(good_cap.clone()) };
        expect_err(post(&svc, "/v1/records", &req, Some(&tok)).await, 400, "invalid_field");
    }
    // Oversized envelope.
    let req = UploadRecordRequest { envelope: B64(vec![0; limits::MAX_ENVELOPE_BYTES + 1]), capsule: None };
    expect_err(post(&svc, "/v1/records", &req, Some(&tok)).await, 400, "invalid_field");
    // Batch limits, and a batch with one bad envelope stores nothing.
    let empty = UploadRecordsRequest { capsules: vec![], envelopes: vec![] };
    expect_err(post(&svc, "/v1/records/batch", &empty, Some(&tok)).await, 400, "invalid_field");
    let many = UploadRecordsRequest {
        capsules: vec![good_cap.clone()],
        envelopes: vec![B64(good.clone()); limits::MAX_BATCH_RECORDS + 1],
    };
    expect_err(post(&svc, "/v1/records/batch", &many, Some(&tok)).await, 400, "invalid_field");
    let mixed = UploadRecordsRequest {
        capsules: vec![good_cap.clone()],
        envelopes: vec![B64(good.clone()), B64(theirs.to_bytes())],
    };
    expect_err(post(&svc, "/v1/records/batch", &mixed, Some(&tok)).await, 403, "forbidden");
    // One record twice in a batch is a request error, not a conflict.
    let dup = UploadRecordsRequest {
        capsules: vec![good_cap.clone()],
        envelopes: vec![B64(good.clone()), B64(good.clone())],
    };
    let e = expect_err(post(&svc, "/v1/records/batch", &dup, Some(&tok)).await, 400, "invalid_field");
    assert!(e.message.contains("more than once"), "{}", e.message);
    // No token, and a non-patient token.
    expect_err(post(&svc, "/v1/records", &one(&seal(&p, 1, b"body")), None).await, 401, "unauthorized");
    let d = key(5);
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    let td = login(&svc, &d).await;
    expect_err(post(&svc, "/v1/records", &one(&seal(&p, 1, b"body")), Some(&td)).await, 403, "wrong_role");
    // Logged: the foreign envelope and the tampered one (refusals by p, ids
    // only), the doctor's registration and its wrong-role refusal. Nothing
    // for malformed bytes, limits or bad tokens. The foreign envelope again
    // in the mixed batch is the same refusal inside its window: counted,
    // not yet an entry.
    let after_doctor = before + 4;
    assert_eq!(log_size(&svc).await, after_doctor);
    let refusals = refusals_since(&svc, &tok, p.principal_id(), before).await;
    let good_id = RecordEnvelope::from_bytes(&good, usize::MAX).unwrap().header().record_id();
    let theirs_id = RefusedObject::Record(theirs.header().record_id());
    assert_eq!(
        refusals,
        vec![
            (theirs_id.clone(), RefusalReason::NotOwner),
            (RefusedObject::Record(good_id), RefusalReason::BadSignature),
        ]
    );
    // When the window ends, the repeat is one entry with its count.
    env.clock.advance(REFUSAL_WINDOW_SECS);
    medrelay_server::sweep_expired(&env.state).await.unwrap();
    let after_doctor = after_doctor + 1;
    assert_eq!(log_size(&svc).await, after_doctor);
    match mine(&svc, &tok).await.pop().unwrap() {
        (i, LogEvent::RequestRefused { what, reason: RefusalReason::NotOwner, count: 1, .. }) => {
            assert_eq!((i, what), (after_doctor - 1, theirs_id));
        }
        other => panic!("unexpected {other:?}"),
    }
    let (_, b) = get(&svc, &format!("/v1/patients/{}/records", p.principal_id()), Some(&tok)).await;
    assert!(json::<RecordList>(&b).records.is_empty());
    // The good envelope still goes in once, then is a conflict.
    assert_eq!(
        post(
            &svc,
            "/v1/records",
            &UploadRecordRequest { envelope: B64(good.clone()), capsule: Some(good_cap.clone()) },
            Some(&tok)
        )
        .await
        .0,
        201
    );
    expect_err(
        post(&svc, "/v1/records", &UploadRecordRequest { envelope: B64(good), capsule: None }, Some(&tok))
            .await,
        409,
        "conflict",
    );
    assert_eq!(log_size(&svc).await, after_doctor + 1);
}

#[actix_web::test]
async fn data_directory_never_holds_plaintext_or_secret_keys() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(9);
    register(&svc, &p, Role::Patient, None).await;
    let tok = login(&svc, &p).await;
    let body = format!("{{\"resourceType\":\"Observation\",\"note\":\"{CANARY}\"}}").repeat(20);
    let batch: Vec<Sealed> = (0..4).map(|i| seal(&p, 300 + i, body.as_bytes())).collect();
    let req = upload_all(&batch);
    assert_eq!(post(&svc, "/v1/records/batch", &req, Some(&tok)).await.0, 201);
    env.state.store().flush().unwrap();

    // The canary raw and base64 at every alignment; the secret keys (the
    // signing key seed and the PRE master secret) raw, hex and base64.
    let seed = p.to_seed();
    let master = patient_keys(&p).master().to_bytes();
    let mut needles = Needles::new();
    needles.text("canary", CANARY.as_bytes());
    needles.secret("signing key seed", &seed[..]);
    needles.secret("PRE master secret", &master[..]);
    let report = needles.scan_dir(env.dir.path()).unwrap();
    assert!(report.hits.is_empty(), "forbidden bytes on disk: {:?}", report.hits);
    assert!(
        report.files > 0 && report.bytes > 4 * body.len() as u64,
        "scanned {} files, {} bytes",
        report.files,
        report.bytes
    );
    // Sanity: the scan does find the canary when it is there, raw or base64.
    assert_eq!(needles.find_in(format!("x{CANARY}y").as_bytes()), Some("canary"));
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("ab{CANARY}cd"));
    assert_eq!(needles.find_in(b64.as_bytes()), Some("canary (base64)"));
}
