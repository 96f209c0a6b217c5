//! The audit log over HTTP: signed checkpoints, entries, inclusion and
//! consistency proofs, all verified with medrelay-policy's verifiers the way
//! an auditor would, plus bad proof queries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_policy::{
    hash_leaf, verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof, LogVerifier,
    MerkleHash,
};
use medrelay_server::app;
use medrelay_wire::{CheckpointResponse, LogEntries, ProofResponse, Role};

fn hashes(p: &ProofResponse) -> Vec<MerkleHash> {
    p.path.iter().map(|h| MerkleHash::from_slice(h.as_bytes()).unwrap()).collect()
}

#[actix_web::test]
async fn checkpoints_and_proofs_verify_like_an_auditor_checks_them() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (s, vkey) = get(&svc, "/v1/log/key", None).await;
    assert_eq!(s, 200);
    let verifier = LogVerifier::from_verifier_key(std::str::from_utf8(&vkey).unwrap()).unwrap();

    for i in 0..2 {
        register(&svc, &key(100 + i), Role::Patient, None).await;
    }
    let cp1: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c1 = verifier.verify_checkpoint(&cp1.checkpoint).unwrap();
    assert_eq!((c1.tree_size, cp1.tree_size), (2, 2));
    assert_eq!(c1.origin, "test.medrelay/log");
    for i in 2..7 {
        register(&svc, &key(100 + i), Role::Patient, None).await;
    }
    let cp2: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c2 = verifier.verify_checkpoint(&cp2.checkpoint).unwrap();
    assert_eq!(c2.tree_size, 7);
    assert_eq!(c2.root_hash.as_bytes()[..], cp2.root_hash.0[..]);

    // Every entry is a typed event, and included under the signed root.
    let entries: LogEntries = json(&get(&svc, "/v1/log/entries?start=0&end=7", None).await.1);
    assert_eq!(entries.entries.len(), 7);
    for e in &entries.entries {
        let ev = medrelay_policy::LogEvent::from_bytes(e.data.as_bytes()).unwrap();
        assert!(matches!(ev, medrelay_policy::LogEvent::PrincipalRegistered { .. }), "{ev:?}");
        assert_eq!(ev.leaf_hash().unwrap(), hash_leaf(e.data.as_bytes()));
        let (s, b) = get(&svc, &format!("/v1/log/inclusion?index={}&tree_size=7", e.index), None).await;
        assert_eq!(s, 200);
        let p: ProofResponse = json(&b);
        let proof = InclusionProof { leaf_index: p.from, tree_size: p.tree_size, hashes: hashes(&p) };
        verify_inclusion(&hash_leaf(e.data.as_bytes()), &proof, &c2.root_hash).unwrap();
        // The same proof does not verify another entry.
        let other = &entries.entries[(e.index as usize + 1) % 7];
        assert!(verify_inclusion(&hash_leaf(other.data.as_bytes()), &proof, &c2.root_hash).is_err());
    }
    // The log only grew between the two checkpoints.
    let (s, b) = get(&svc, "/v1/log/consistency?old_size=2&new_size=7", None).await;
    assert_eq!(s, 200);
    let p: ProofResponse = json(&b);
    let proof = ConsistencyProof { old_size: p.from, new_size: p.tree_size, hashes: hashes(&p) };
    verify_consistency(&proof, &c1.root_hash, &c2.root_hash).unwrap();
    assert!(verify_consistency(&proof, &c2.root_hash, &c1.root_hash).is_err());

    // A forged checkpoint (edited size) fails verification.
    let forged = cp2.checkpoint.replacen("\n7\n", "\n8\n", 1);
    assert!(verifier.verify_checkpoint(&forged).is_err());

    // Bad proof queries are 400s.
    for q in [
        "/v1/log/inclusion?index=7&tree_size=7",
        "/v1/log/inclusion?index=0&tree_size=8",
        "/v1/log/inclusion?index=0",
        "/v1/log/inclusion?index=x&tree_size=7",
        "/v1/log/consistency?old_size=5&new_size=3",
        "/v1/log/consistency?old_size=1&new_size=9",
    ] {
        expect_err(get(&svc, q, None).await, 400, "invalid_parameter");
    }
}
