//! The audit log over HTTP proves without publishing.
//!
//! - Public (no token): signed checkpoints, leaf hashes, inclusion and
//!   consistency proofs; none of it holds an id, a name, a category or a
//!   sensitivity class (the raw response bytes are searched for each).
//! - Authenticated: an entry's event and salt, only to those the event is
//!   about and to auditors; each reader recomputes the leaf from them and
//!   verifies its inclusion against the public checkpoint, the way the
//!   clients and auditors do.
//! - Edge cases: no consistency proof from size 0; bad proof queries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use base64::Engine as _;
use common::*;
use medrelay_crypto::{RecordCategory, RecordId, SensitivityLabel, SigningKey};
use medrelay_policy::{
    hash_leaf, verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof, LeafOpening, LogEvent,
    LogVerifier, MerkleHash,
};
use medrelay_server::app;
use medrelay_wire::{CheckpointResponse, LeafHashes, LogEntries, ProofResponse, RegisterRequest, Role};

fn hashes(p: &ProofResponse) -> Vec<MerkleHash> {
    p.path.iter().map(|h| MerkleHash::from_slice(h.as_bytes()).unwrap()).collect()
}

async fn verifier<S, B>(svc: &S) -> LogVerifier
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let (s, vkey) = get(svc, "/v1/log/key", None).await;
    assert_eq!(s, 200);
    LogVerifier::from_verifier_key(std::str::from_utf8(&vkey).unwrap()).unwrap()
}

/// Proves `entry` is the leaf at `index` under the public checkpoint, with
/// public proofs only.
async fn prove<S, B>(svc: &S, verifier: &LogVerifier, index: u64, entry: &LeafOpening)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let cp: CheckpointResponse = json(&get(svc, "/v1/log/checkpoint", None).await.1);
    let c = verifier.verify_checkpoint(&cp.checkpoint).unwrap();
    let (s, b) = get(svc, &format!("/v1/log/inclusion?index={index}&tree_size={}", c.tree_size), None).await;
    assert_eq!(s, 200);
    let p: ProofResponse = json(&b);
    let proof = InclusionProof { leaf_index: p.from, tree_size: p.tree_size, hashes: hashes(&p) };
    c.verify_inclusion(&entry.leaf_hash(), &proof).unwrap();
}

#[actix_web::test]
async fn checkpoints_and_proofs_verify_like_an_auditor_checks_them() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let verifier = verifier(&svc).await;
    // The empty log: size 0 with the empty root.
    let cp0: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c0 = verifier.verify_checkpoint(&cp0.checkpoint).unwrap();
    assert_eq!((c0.tree_size, c0.root_hash), (0, medrelay_policy::empty_root()));

    let aud = key(99);
    register(&svc, &aud, Role::Auditor, Some(enroll(&env, Role::Auditor))).await;
    register(&svc, &key(100), Role::Patient, None).await;
    let cp1: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c1 = verifier.verify_checkpoint(&cp1.checkpoint).unwrap();
    assert_eq!((c1.tree_size, cp1.tree_size), (2, 2));
    assert_eq!(c1.origin, "test.medrelay/log");
    for i in 1..6 {
        register(&svc, &key(100 + i), Role::Patient, None).await;
    }
    let cp2: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c2 = verifier.verify_checkpoint(&cp2.checkpoint).unwrap();
    assert_eq!(c2.tree_size, 7);
    assert_eq!(c2.root_hash.as_bytes()[..], cp2.root_hash.0[..]);

    // The auditor reads every entry: a typed event with its salt, whose
    // recomputed leaf is the public leaf hash and is included under the
    // signed root.
    let ta = login(&svc, &aud).await;
    let entries: LogEntries = json(&get(&svc, "/v1/log/entries?start=0&end=7", Some(&ta)).await.1);
    assert_eq!(entries.entries.len(), 7);
    let leaves: LeafHashes = json(&get(&svc, "/v1/log/leaves?start=0&end=7", None).await.1);
    assert_eq!(leaves.leaves.len(), 7);
    let public: Vec<MerkleHash> =
        leaves.leaves.iter().map(|l| MerkleHash::from_slice(l.hash.as_bytes()).unwrap()).collect();
    assert_eq!(medrelay_policy::root_from_leaves(&public), c2.root_hash);
    for (e, l) in entries.entries.iter().zip(&leaves.leaves) {
        assert_eq!(e.index, l.index);
        let o = opening(e);
        assert!(matches!(o.event().unwrap(), LogEvent::PrincipalRegistered { .. }));
        assert_eq!(o.leaf_hash(), public[e.index as usize]);
        // The leaf is not the hash of the event: it commits with the salt.
        assert_ne!(hash_leaf(o.event_bytes()), o.leaf_hash());
        let (s, b) = get(&svc, &format!("/v1/log/inclusion?index={}&tree_size=7", e.index), None).await;
        assert_eq!(s, 200);
        let p: ProofResponse = json(&b);
        let proof = InclusionProof { leaf_index: p.from, tree_size: p.tree_size, hashes: hashes(&p) };
        verify_inclusion(&o.leaf_hash(), &proof, &c2.root_hash).unwrap();
        // The same proof does not verify another entry.
        let other = opening(&entries.entries[(e.index as usize + 1) % 7]);
        assert!(verify_inclusion(&other.leaf_hash(), &proof, &c2.root_hash).is_err());
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

    // Bad proof queries are 400s; there is no consistency proof from the
    // empty tree (RFC 9162, transparency-dev), while size 0 to 0 is empty.
    for q in [
        "/v1/log/inclusion?index=7&tree_size=7",
        "/v1/log/inclusion?index=0&tree_size=8",
        "/v1/log/inclusion?index=0",
        "/v1/log/inclusion?index=x&tree_size=7",
        "/v1/log/consistency?old_size=5&new_size=3",
        "/v1/log/consistency?old_size=1&new_size=9",
        "/v1/log/consistency?old_size=0&new_size=7",
        "/v1/log/leaves?start=5&end=1",
        "/v1/log/leaves?start=0&end=100000",
    ] {
        expect_err(get(&svc, q, None).await, 400, "invalid_parameter");
    }
    let p: ProofResponse = json(&get(&svc, "/v1/log/consistency?old_size=0&new_size=0", None).await.1);
    assert!(p.path.is_empty());
}

/// Every way an id, a name or a label could appear in raw bytes: hex (any
/// case), base64 (standard and URL-safe) of the raw id, and the raw bytes.
fn forms(label: &str, raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    vec![
        (format!("{label} (hex)"), hex::encode(raw).into_bytes()),
        (format!("{label} (HEX)"), hex::encode_upper(raw).into_bytes()),
        // The first 24 base64 characters encode whole bytes at any offset 0.
        (format!("{label} (base64)"), b64.as_bytes()[..20].to_vec()),
        (format!("{label} (base64url)"), url.as_bytes()[..20].to_vec()),
        (format!("{label} (raw)"), raw.to_vec()),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[actix_web::test]
async fn an_outsider_reads_proofs_and_leaf_hashes_but_no_id_class_category_or_name() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    // The story the outside tester saw: a patient with a mental-health
    // record, a doctor with a laboratory grant who reads one result and is
    // refused the other, a revocation, refusals.
    let (p, d) = (key(1), key(2));
    let reg = |sk: &SigningKey, role, name: &str, token| register_request(sk, role, name, token);
    let req: RegisterRequest = reg(&p, Role::Patient, "Alpha Zebrafinch", None);
    assert_eq!(post(&svc, "/v1/principals", &req, None).await.0, 201);
    let req = reg(&d, Role::Doctor, "Dr Grey Quokka", Some(enroll(&env, Role::Doctor)));
    assert_eq!(post(&svc, "/v1/principals", &req, None).await.0, 201);
    let (tp, td) = (login(&svc, &p).await, login(&svc, &d).await);
    let mental =
        RecordCategory::new("Observation", ["laboratory".to_owned()], [SensitivityLabel::MentalHealth])
            .unwrap();
    let records = [seal(&p, 10, lab(), b"{}"), seal(&p, 11, mental, b"{}")];
    for r in &records {
        let up = r.upload();
        assert_eq!(post(&svc, "/v1/records", &up, Some(&tp)).await.0, 201);
    }
    let grant = grant_request(&p, &d, 7, "Observation?category=laboratory", T0 + 3600);
    assert_eq!(post(&svc, "/v1/grants", &grant, Some(&tp)).await.0, 201);
    let reenc = |r: RecordId| format!("/v1/records/{r}/reencrypt");
    assert_eq!(post(&svc, &reenc(records[0].header().record_id()), &(), Some(&td)).await.0, 200);
    expect_err(
        post(&svc, &reenc(records[1].header().record_id()), &(), Some(&td)).await,
        403,
        "sensitive_excluded",
    );
    expect_err(
        get(&svc, &format!("/v1/records/{}", records[1].header().record_id()), Some(&td)).await,
        403,
        "sensitive_excluded",
    );
    expect_err(post(&svc, "/v1/grants", &grant, Some(&td)).await, 403, "wrong_role");
    // Two registrations, two records, the grant, the access served, the
    // denial (the envelope read was the same refusal, coalesced) and the
    // doctor's wrong-role attempt.
    let n = log_size(&svc).await;
    assert_eq!(n, 8);

    // Everything an outsider can ask for, without a token.
    let cp: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    let c = verifier(&svc).await.verify_checkpoint(&cp.checkpoint).unwrap();
    assert_eq!(c.tree_size, n);
    let mut public: Vec<(String, Vec<u8>)> = Vec::new();
    let mut fetch = |path: String, body: Vec<u8>| public.push((path, body));
    for path in [
        "/v1/log/checkpoint".to_owned(),
        "/v1/log/key".to_owned(),
        format!("/v1/log/leaves?start=0&end={n}"),
        "/healthz".to_owned(),
        "/metrics".to_owned(),
    ] {
        let (s, b) = get(&svc, &path, None).await;
        assert_eq!(s, 200, "{path}");
        fetch(path, b);
    }
    for i in 0..n {
        for path in [
            format!("/v1/log/inclusion?index={i}&tree_size={n}"),
            format!("/v1/log/consistency?old_size={}&new_size={n}", i + 1),
        ] {
            let (s, b) = get(&svc, &path, None).await;
            assert_eq!(s, 200, "{path}");
            fetch(path, b);
        }
    }
    // The readers' routes answer an outsider 401, with nothing in the body.
    for path in [
        format!("/v1/log/entries?start=0&end={n}"),
        "/v1/log/mine".to_owned(),
        format!("/v1/principals/{}", p.principal_id()),
        format!("/v1/principals/{}", d.principal_id()),
        format!("/v1/patients/{}/records", p.principal_id()),
        format!("/v1/records/{}", records[1].header().record_id()),
    ] {
        let (s, b) = get(&svc, &path, None).await;
        assert_eq!(s, 401, "{path}");
        fetch(path, b);
    }
    // The leaf hashes are the tree's: the public view is complete.
    let leaves: LeafHashes = json(&get(&svc, &format!("/v1/log/leaves?start=0&end={n}"), None).await.1);
    let hashes: Vec<MerkleHash> =
        leaves.leaves.iter().map(|l| MerkleHash::from_slice(l.hash.as_bytes()).unwrap()).collect();
    assert_eq!(medrelay_policy::root_from_leaves(&hashes), c.root_hash);

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    let ids: Vec<(&str, Vec<u8>)> = vec![
        ("patient id", p.principal_id().as_bytes().to_vec()),
        ("doctor id", d.principal_id().as_bytes().to_vec()),
        ("lab record id", records[0].header().record_id().as_bytes().to_vec()),
        ("mental-health record id", records[1].header().record_id().as_bytes().to_vec()),
        ("grant id", vec![7; 16]),
    ];
    for (label, raw) in &ids {
        needles.extend(forms(label, raw));
    }
    for word in [
        "Alpha",
        "Zebrafinch",
        "Grey",
        "Quokka",
        "mental",
        "Mental",
        "laboratory",
        "Laboratory",
        "Observation",
        "Condition",
        "sensitive",
        "treatment",
    ] {
        needles.push((word.to_owned(), word.as_bytes().to_vec()));
    }
    for (path, body) in &public {
        for (label, needle) in &needles {
            assert!(!contains(body, needle), "{label} found in the public answer to {path}");
        }
    }

    // The same story, read by those entitled: the patient sees the refusal
    // of the mental-health record, the doctor their own accesses, and each
    // entry is proven against the public checkpoint.
    let verifier = verifier(&svc).await;
    let (_, b) = get(&svc, "/v1/log/mine", Some(&tp)).await;
    let mine: LogEntries = json(&b);
    let denied: Vec<_> =
        mine.entries.iter().filter(|e| matches!(event_of(e), LogEvent::AccessDenied { .. })).collect();
    // The re-encryption and the envelope read were the same refusal (this
    // doctor, this record, this reason) inside one window: one entry so far.
    assert_eq!(denied.len(), 1);
    for e in &mine.entries {
        prove(&svc, &verifier, e.index, &opening(e)).await;
        assert!(event_of(e).audience().unwrap().includes(&p.principal_id()));
    }
}

#[actix_web::test]
async fn each_reader_gets_exactly_the_entries_about_them() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, q, d, e, a) = (key(1), key(2), key(3), key(4), key(5));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &e, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &a, Role::Auditor, Some(enroll(&env, Role::Auditor))).await;
    let (tp, tq, td, te, ta) = (
        login(&svc, &p).await,
        login(&svc, &q).await,
        login(&svc, &d).await,
        login(&svc, &e).await,
        login(&svc, &a).await,
    );
    let rec = seal(&p, 10, lab(), b"{}");
    let up = rec.upload();
    assert_eq!(post(&svc, "/v1/records", &up, Some(&tp)).await.0, 201);
    let g = grant_request(&p, &d, 7, "Observation?category=laboratory", T0 + 3600);
    assert_eq!(post(&svc, "/v1/grants", &g, Some(&tp)).await.0, 201);
    let reenc = format!("/v1/records/{}/reencrypt", rec.header().record_id());
    assert_eq!(post(&svc, &reenc, &(), Some(&td)).await.0, 200);
    expect_err(post(&svc, &reenc, &(), Some(&te)).await, 403, "no_grant");
    let n = log_size(&svc).await;

    // The auditor reads every entry; the leaves they open are the tree.
    let all: LogEntries = json(&get(&svc, &format!("/v1/log/entries?start=0&end={n}"), Some(&ta)).await.1);
    assert_eq!(all.entries.len() as u64, n);
    let root = medrelay_policy::root_from_leaves(
        &all.entries.iter().map(|x| opening(x).leaf_hash()).collect::<Vec<_>>(),
    );
    let cp: CheckpointResponse = json(&get(&svc, "/v1/log/checkpoint", None).await.1);
    assert_eq!(root.as_bytes()[..], cp.root_hash.0[..]);
    let events: Vec<LogEvent> = all.entries.iter().map(event_of).collect();
    // Salts are fresh per entry.
    let salts: std::collections::BTreeSet<Vec<u8>> = all.entries.iter().map(|x| x.salt.0.clone()).collect();
    assert_eq!(salts.len() as u64, n);

    let verifier = verifier(&svc).await;
    for (who, token, id) in [
        ("patient p", &tp, p.principal_id()),
        ("patient q", &tq, q.principal_id()),
        ("doctor d", &td, d.principal_id()),
        ("doctor e", &te, e.principal_id()),
    ] {
        let expected: Vec<u64> = events
            .iter()
            .enumerate()
            .filter(|(_, ev)| ev.audience().unwrap().includes(&id))
            .map(|(i, _)| i as u64)
            .collect();
        // Their own history, and a range read, give exactly those entries.
        let mine: Vec<u64> = mine(&svc, token).await.into_iter().map(|(i, _)| i).collect();
        assert_eq!(mine, expected, "{who}");
        let (_, b) = get(&svc, &format!("/v1/log/entries?start=0&end={n}"), Some(token)).await;
        let ranged: LogEntries = json(&b);
        assert_eq!(ranged.entries.iter().map(|x| x.index).collect::<Vec<_>>(), expected, "{who}");
        for x in &ranged.entries {
            prove(&svc, &verifier, x.index, &opening(x)).await;
        }
    }
    // Who sees what, concretely: p its registration, record, grant, the
    // access served and e's denial; q only its registration; d its
    // registration, the grant and its access; e its registration and its
    // denial.
    for (token, want) in [
        (
            &tp,
            &[
                "principal_registered",
                "record_published",
                "grant_created",
                "reencryption_served",
                "access_denied",
            ][..],
        ),
        (&tq, &["principal_registered"][..]),
        (&td, &["principal_registered", "grant_created", "reencryption_served"][..]),
        (&te, &["principal_registered", "access_denied"][..]),
    ] {
        let kinds: Vec<&str> = mine(&svc, token).await.iter().map(|(_, e)| e.kind()).collect();
        assert_eq!(kinds, want);
    }
}
