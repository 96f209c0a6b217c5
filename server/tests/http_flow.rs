//! The whole flow over the real HTTP stack with real hybrid PRE keys:
//! register patient and doctors, upload, grant, doctor re-encrypts and
//! decrypts, revoke, then the negative matrix (no grant, other doctor,
//! expired, revoked, out of scope) — each denied with its reason code and
//! each denial present in the log, whose proofs verify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_crypto::{GrantId, RecordCategory, RecordId, SensitivityLabel};
use medrelay_policy::{
    hash_leaf, verify_inclusion, InclusionProof, LogEvent, LogVerifier, MerkleHash, Revocation,
};
use medrelay_server::app;
use medrelay_wire::{CheckpointResponse, LogEntries, ProofResponse, RevokeRequest, Role, B64};

#[actix_web::test]
async fn grant_reencrypt_decrypt_revoke_and_the_negative_matrix() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(1);
    let d = key(2);
    let other = key(3);
    let short = key(4);
    register(&svc, &p, Role::Patient, None).await;
    for doc in [&d, &other, &short] {
        register(&svc, doc, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    }
    let tp = login(&svc, &p).await;
    let td = login(&svc, &d).await;
    let to = login(&svc, &other).await;
    let ts = login(&svc, &short).await;

    let lab = RecordCategory::new("Observation", ["laboratory".to_owned()], []).unwrap();
    let mental =
        RecordCategory::new("Observation", ["laboratory".to_owned()], [SensitivityLabel::MentalHealth])
            .unwrap();
    let survey = RecordCategory::new("Observation", ["survey".to_owned()], []).unwrap();
    let body = b"{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":5.4}}";
    let r1 = seal(&p, 10, lab, body);
    let r2 = seal(&p, 11, mental, b"sensitive");
    let r3 = seal(&p, 12, survey, b"survey");
    for r in [&r1, &r2, &r3] {
        let (s, b) = post(&svc, "/v1/records", &r.upload(), Some(&tp)).await;
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    }
    let id1 = r1.header().record_id();
    let id2 = r2.header().record_id();
    let id3 = r3.header().record_id();

    let scope = "Observation?category=laboratory";
    let (s, b) = post(&svc, "/v1/grants", &grant_request(&p, &d, 1, scope, T0 + 86_400), Some(&tp)).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let (s, b) = post(&svc, "/v1/grants", &grant_request(&p, &short, 2, scope, T0 + 60), Some(&tp)).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));

    // The doctor re-encrypts and decrypts.
    let (s, b) = post(&svc, &format!("/v1/records/{id1}/reencrypt"), &(), Some(&td)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let (served, delivered) = served_one(&b);
    let plain = open_as(&d, &p, &served, &delivered).unwrap();
    assert_eq!(&plain[..], &body[..]);
    // Another doctor cannot use that capsule.
    assert!(open_as(&other, &p, &served, &delivered).is_err());
    // Asked again, the server returns the same re-encryption (made once
    // per capsule and grant: no fresh lattice noise to collect), and logs
    // the access again.
    let (s, b) = post(&svc, &format!("/v1/records/{id1}/reencrypt"), &(), Some(&td)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let (again, delivered_again) = served_one(&b);
    assert_eq!(delivered_again, delivered);
    assert!(again.log_index > served.log_index);

    // The negative matrix.
    let reenc = |id: RecordId| format!("/v1/records/{id}/reencrypt");
    expect_err(post(&svc, &reenc(id1), &(), Some(&to)).await, 403, "no_grant");
    let e = expect_err(post(&svc, &reenc(id2), &(), Some(&td)).await, 403, "sensitive_excluded");
    assert!(e.message.contains("sensitive_excluded"));
    expect_err(post(&svc, &reenc(id3), &(), Some(&td)).await, 403, "out_of_scope");
    env.clock.advance(120);
    expect_err(post(&svc, &reenc(id1), &(), Some(&ts)).await, 403, "expired");
    let rev =
        Revocation::new(GrantId::from_bytes([1; 16]), p.principal_id(), env.clock.now()).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    let (s, b) =
        post(&svc, &format!("/v1/grants/{}/revoke", GrantId::from_bytes([1; 16])), &req, Some(&tp)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert!(env.state.store().get_rekeys(&GrantId::from_bytes([1; 16])).unwrap().is_none());
    expect_err(post(&svc, &reenc(id1), &(), Some(&td)).await, 403, "revoked");

    // Every denial is in the log, about the patient's record, and the
    // patient sees who accessed what.
    let (_, b) = get(&svc, "/v1/log/mine", Some(&tp)).await;
    let mine: LogEntries = json(&b);
    let events: Vec<LogEvent> = mine.entries.iter().map(event_of).collect();
    let mut reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            LogEvent::AccessDenied { reason, .. } => Some(reason.code()),
            _ => None,
        })
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, vec!["expired", "no_grant", "out_of_scope", "revoked", "sensitive_excluded"]);
    let served_ev =
        mine.entries.iter().find(|e| matches!(event_of(e), LogEvent::ReencryptionServed { .. })).unwrap();
    assert_eq!(served_ev.index, served.log_index);

    // The served event is provably in the signed log.
    let verifier =
        LogVerifier::from_verifier_key(&String::from_utf8(get(&svc, "/v1/log/key", None).await.1).unwrap())
            .unwrap();
    let cp: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c = verifier.verify_checkpoint(&cp.checkpoint).unwrap();
    let (_, b) =
        get(&svc, &format!("/v1/log/inclusion?index={}&tree_size={}", served.log_index, c.tree_size), None)
            .await;
    let p: ProofResponse = json(&b);
    let proof = InclusionProof {
        leaf_index: p.from,
        tree_size: p.tree_size,
        hashes: p.path.iter().map(|h| MerkleHash::from_slice(h.as_bytes()).unwrap()).collect(),
    };
    verify_inclusion(&opening(served_ev).leaf_hash(), &proof, &c.root_hash).unwrap();
    // The event bytes alone are not the leaf: the leaf commits with a salt.
    assert!(verify_inclusion(&hash_leaf(served_ev.event.as_bytes()), &proof, &c.root_hash).is_err());
    let (_, m) = get(&svc, "/metrics", None).await;
    let m = String::from_utf8(m).unwrap();
    assert!(
        m.contains("medrelay_reencryptions_total 2") && m.contains("medrelay_access_denials_total 5"),
        "{m}"
    );
}
