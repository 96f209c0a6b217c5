//! Private studies over real HTTP: a leader and a helper aggregator
//! (in-process, each with its own data directory, HPKE key and log), the
//! token they share, patients uploading sealed reports, an analyst
//! releasing batches. Every kind of bad input gets its typed refusal, is
//! counted in the log, and never reaches an aggregate: malformed reports,
//! reports for another study or outside the window, shares that do not
//! decrypt or have the wrong length, replays, reports over a patient's
//! quota, out-of-range measurements (refused by the proof), unknown studies,
//! batches below the minimum, second releases, and anyone but the leader
//! at the helper.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use medrelay_client::{Analyst, ClientError, Http, Passphrase, ServerOptions};
use medrelay_crypto::{domain, PatientSecretKeys, SigningKey};
use medrelay_dp::study::testing::seal_out_of_range_report;
use medrelay_dp::study::{example_study, ReportSealer, StudyDefinition, StudyEncoding};
use medrelay_dp::{Epsilon, Privacy, Schema, Summary, SummaryDoc};
use medrelay_policy::{LogEvent, StudyEvent};
use medrelay_server::store::{
    CollectCheck, HelperReleaseOutcome, SledStore, StoreError, StudyStore, Transform, UploadOutcome,
};
use medrelay_server::study::{add_study, load_aggregator_key};
use medrelay_server::{enroll_in, init, AggregatorConfig, AggregatorToken, LocalServer, Quotas};
use medrelay_wire::{registration_message, RegisterRequest, Role, B64};
use rand::SeedableRng;
use sha2::{Digest, Sha256};

fn schema_sha() -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(&Schema::health_basics()).unwrap()))
}

/// Installs `def` (edited by `edit`) on both data directories.
fn definition(
    leader: &Path,
    helper: &Path,
    min: u64,
    edit: impl Fn(&mut serde_json::Value),
) -> StudyDefinition {
    let lk = load_aggregator_key(leader).unwrap().public_key();
    let hk = load_aggregator_key(helper).unwrap().public_key();
    let base = example_study(
        &schema_sha(),
        lk.as_bytes(),
        hk.as_bytes(),
        min,
        Privacy::Epsilon(Epsilon::new(1.0).unwrap()),
    )
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&base.canonical_json().unwrap()).unwrap();
    edit(&mut doc);
    StudyDefinition::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

struct Pair {
    leader: LocalServer,
    helper: LocalServer,
    root: tempfile::TempDir,
    token: AggregatorToken,
}

fn pair(studies: &[StudyDefinition], dirs: &tempfile::TempDir) -> Pair {
    let (l, h) = (dirs.path().join("leader"), dirs.path().join("helper"));
    for d in studies {
        let json = d.canonical_json().unwrap();
        let (_, role) = add_study(&l, &json).unwrap();
        assert_eq!(role.name(), "leader");
        let (_, role) = add_study(&h, &json).unwrap();
        assert_eq!(role.name(), "helper");
    }
    let token = AggregatorToken::generate();
    let helper = LocalServer::start_with(
        &h,
        "helper.test/log",
        2,
        Quotas::off(),
        Some(AggregatorConfig::Helper { token: token.clone() }),
    )
    .unwrap();
    let leader = LocalServer::start_with(
        &l,
        "leader.test/log",
        2,
        Quotas::off(),
        Some(AggregatorConfig::Leader { helper_url: helper.url(), token: token.clone() }),
    )
    .unwrap();
    Pair { leader, helper, root: tempfile::tempdir().unwrap(), token }
}

fn patient(url: &str, seed: u8) -> Http {
    let sk = SigningKey::from_seed(&[seed; 32]);
    let keys = PatientSecretKeys::generate(&mut rand_chacha::ChaCha20Rng::from_seed([seed; 32]));
    let pre = keys.public_keys().to_bytes();
    let name = format!("patient-{seed}");
    let vk = sk.verifying_key();
    let signature = sk.sign(domain::SIG_REGISTRATION, &registration_message(Role::Patient, &name, &vk, &pre));
    let http = Http::new(&ServerOptions::new(url)).unwrap().with_identity(Arc::new(sk));
    http.register(&RegisterRequest {
        role: Role::Patient,
        name,
        signing_key: vk,
        pre_public_keys: B64(pre),
        enrollment_token: None,
        signature,
    })
    .unwrap();
    http
}

fn summary(v: serde_json::Value) -> Summary {
    let doc: SummaryDoc =
        serde_json::from_value(serde_json::json!({"schema": "health-basics", "values": v})).unwrap();
    Summary::validate(&Schema::health_basics(), &doc).unwrap()
}

fn person(i: u32) -> Summary {
    summary(serde_json::json!({
        "systolic_bp": 110.0 + f64::from(i % 7) * 6.0,
        "bmi": 22.0 + f64::from(i % 5),
        "diabetes": i.is_multiple_of(3),
        "sex": if i.is_multiple_of(2) { "female" } else { "male" },
    }))
}

fn codes(resp: &medrelay_wire::study::UploadReportsResponse) -> Vec<String> {
    resp.refused.iter().map(|r| r.code.clone()).collect()
}

fn study_events(store: &SledStore) -> Vec<StudyEvent> {
    use medrelay_server::store::Store as _;
    let size = store.log_size().unwrap();
    store
        .log_entries(0, size)
        .unwrap()
        .into_iter()
        .filter_map(|(_, opening)| match opening.event().unwrap() {
            LogEvent::Study { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[test]
fn bad_reports_are_refused_or_rejected_counted_and_never_aggregated() {
    let dirs = tempfile::tempdir().unwrap();
    let (l, h) = (dirs.path().join("leader"), dirs.path().join("helper"));
    init(&l).unwrap();
    init(&h).unwrap();
    let def = definition(&l, &h, 4, |_| {});
    let p = pair(std::slice::from_ref(&def), &dirs);
    let url = p.leader.url();
    let encoding = StudyEncoding::new(&Schema::health_basics(), &def).unwrap();
    let sealer = ReportSealer::new(encoding.clone()).unwrap();
    let mut rng = rand::rngs::OsRng;
    let now = medrelay_client::time::now().unix_seconds();
    let patients: Vec<Http> = (1..=8).map(|i| patient(&url, i)).collect();
    let name = def.name();
    let upload = |who: &Http, reports: Vec<Vec<u8>>| who.upload_study_reports(name, reports).unwrap();

    // A valid report is accepted; the same bytes again are a replay.
    let first = sealer.seal(&mut rng, &person(1), now).unwrap().encode();
    let r = upload(&patients[0], vec![first.clone()]);
    assert_eq!((r.accepted, codes(&r)), (1, vec![]));
    // Refused at upload, each with its code; nothing stored for them.
    let mut wrong_time = sealer.seal(&mut rng, &person(2), now).unwrap();
    wrong_time.time = 3600; // 1970: outside the window (and the AAD no longer matches)
    let mut tampered_leader = sealer.seal(&mut rng, &person(3), now).unwrap();
    tampered_leader.leader_share.ciphertext[10] ^= 1;
    let other_def = definition(&l, &h, 4, |d| d["name"] = serde_json::json!("other-study"));
    let other = ReportSealer::new(StudyEncoding::new(&Schema::health_basics(), &other_def).unwrap()).unwrap();
    let foreign = other.seal(&mut rng, &person(4), now).unwrap().encode();
    let shards = sealer.vdaf().shard(&encoding.encode(&person(5)).unwrap(), &[7u8; 16]).unwrap();
    let mut long_leader = shards.leader.clone();
    long_leader.push(0);
    let wrong_length = sealer
        .seal_shards(
            &mut rng,
            medrelay_dp::study::ReportId([7u8; 16]),
            now,
            &shards.public_share,
            &long_leader,
            &shards.helper,
        )
        .unwrap()
        .encode();
    let r = upload(
        &patients[1],
        vec![
            first.clone(),
            b"not a report".to_vec(),
            wrong_time.encode(),
            tampered_leader.encode(),
            foreign,
            wrong_length,
        ],
    );
    assert_eq!(r.accepted, 0);
    assert_eq!(
        codes(&r),
        [
            "replayed",
            "malformed_report",
            "outside_window",
            "decrypt_failed",
            "wrong_study",
            "malformed_share"
        ]
    );
    // A patient's second report is over the study's quota of one.
    let second = sealer.seal(&mut rng, &person(6), now).unwrap().encode();
    assert_eq!(codes(&upload(&patients[0], vec![second])), ["over_quota"]);
    // Accepted at upload but rejected in preparation: a helper share that
    // does not decrypt, and an out-of-range measurement with an honest
    // proof of it (only the proof can tell).
    let mut tampered_helper = sealer.seal(&mut rng, &person(7), now).unwrap();
    tampered_helper.helper_share.ciphertext[0] ^= 1;
    assert_eq!(upload(&patients[2], vec![tampered_helper.encode()]).accepted, 1);
    let out_of_range = seal_out_of_range_report(&sealer, &mut rng, &person(8), now).unwrap();
    assert_eq!(upload(&patients[3], vec![out_of_range.encode()]).accepted, 1);
    // An unknown study.
    let e = patients[4].upload_study_reports("no-such-study", vec![first.clone()]).unwrap_err();
    assert_eq!(e.server_code(), Some("not_found"), "{e}");

    // The analyst: the batch holds 1 valid report (< 4): not released.
    let analyst_token =
        enroll_in(p.leader.state().store().as_ref(), Role::Analyst, "Ana", p.leader.state().clock()).unwrap();
    let pass = Passphrase::new("correct horse battery staple").unwrap();
    let ana =
        Analyst::init(&p.root.path().join("ana"), &ServerOptions::new(&url), "Ana", &analyst_token, &pass)
            .unwrap();
    let e = patients[4].upload_study_reports(name, vec![]).unwrap_err();
    assert_eq!(e.server_code(), Some("invalid_field"));
    match ana.study_release(name, None) {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, "batch_too_small"),
        other => panic!("{other:?}"),
    }
    let status = ana.study_status(name).unwrap();
    assert_eq!((status.open_batch, status.ready, status.released.len()), (0, false, 0));
    let e = ana.study_results(name, None, 0.95, &[]).unwrap_err();
    assert!(e.to_string().contains("no released batch"), "{e}");

    // Three more valid reports: 4 valid, 2 rejected in preparation.
    for (i, who) in patients[4..7].iter().enumerate() {
        let report = sealer.seal(&mut rng, &person(10 + u32::try_from(i).unwrap()), now).unwrap().encode();
        assert_eq!(upload(who, vec![report]).accepted, 1);
    }
    let release = ana.study_release(name, None).unwrap();
    assert_eq!(release.batch, 0);
    assert_eq!(release.rejected["invalid_proof"], 1, "{:?}", release.rejected);
    assert_eq!(release.rejected["decrypt_failed"], 1, "{:?}", release.rejected);
    let bits: i64 = release.sums.sums[0].iter().sum();
    assert!(bits.abs() < 10_000, "noisy sums, not field garbage: {bits}");
    // A second release of the same batch is refused; a future batch is not open.
    match ana.study_release(name, Some(0)) {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, "already_released"),
        other => panic!("{other:?}"),
    }
    match ana.study_release(name, Some(7)) {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, "not_found"),
        other => panic!("{other:?}"),
    }
    // A report uploaded after the release goes to batch 1, never into 0.
    let late = sealer.seal(&mut rng, &person(20), now).unwrap().encode();
    assert_eq!(upload(&patients[7], vec![late]).accepted, 1);
    let results = ana.study_results(name, None, 0.95, &[0.5]).unwrap();
    assert_eq!(results.releases, 1);
    assert!(results.overall.count.contains(4.0), "{:?}", results.overall.count);
    let status = ana.study_status(name).unwrap();
    assert_eq!((status.open_batch, status.released.clone()), (1, vec![0]));
    // A patient cannot release; a patient cannot read releases.
    let e = patients[0].study_release(name, 1).unwrap_err();
    assert_eq!(e.server_code(), Some("wrong_role"));

    // The helper answers nothing but the leader's aggregator requests.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let job = format!("{}/v1/aggregator/studies/{name}/jobs/{}", p.helper.url(), "00".repeat(16));
    for (auth, want) in [(None, 401), (Some("Bearer wrong-token-wrong-token-wrong-token-wrong"), 401)] {
        let mut req = agent.put(&job);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send(&b"x"[..]).unwrap().status().as_u16(), want);
    }
    let bearer = format!("Bearer {}", p.token.expose());
    let resp = agent.put(&job).header("Authorization", &bearer).send(&b"garbage"[..]).unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = agent.get(&format!("{}/v1/principals/{}", p.helper.url(), "00".repeat(32))).call().unwrap();
    assert_eq!(resp.status().as_u16(), 404, "the helper serves no public API");

    // Both logs count what happened; the leader's has the upload refusals.
    drop(p.leader);
    drop(p.helper);
    let leader_store = SledStore::open_waiting(&l.join("db"), std::time::Duration::from_secs(30)).unwrap();
    let helper_store = SledStore::open_waiting(&h.join("db"), std::time::Duration::from_secs(30)).unwrap();
    let le = study_events(&leader_store);
    let refused: u32 = le
        .iter()
        .map(|e| match e {
            StudyEvent::ReportsUploaded { refused, .. } => *refused,
            _ => 0,
        })
        .sum();
    assert_eq!(refused, 7, "six refused in one request, one over quota");
    let rejected = |events: &[StudyEvent]| {
        events.iter().fold([0u32; 5], |mut acc, e| {
            if let StudyEvent::ReportsAggregated { rejected, .. } = e {
                for (a, r) in acc.iter_mut().zip(rejected) {
                    *a += r;
                }
            }
            acc
        })
    };
    assert_eq!(rejected(&le), [1, 0, 1, 0, 0], "leader: one undecryptable, one invalid proof");
    let he = study_events(&helper_store);
    assert_eq!(rejected(&he), [1, 0, 1, 0, 0], "helper: the same two");
    for events in [&le, &he] {
        let released: Vec<(u64, u64)> = events
            .iter()
            .filter_map(|e| match e {
                StudyEvent::BatchReleased { batch, reports, epsilon, .. } => {
                    assert!((*epsilon - 1.0).abs() < 1e-6);
                    Some((*batch, *reports))
                }
                _ => None,
            })
            .collect();
        assert_eq!(released, [(0, 4)], "released once, with 4 reports");
    }
}

/// A well-formed log append (the store's decisions do not depend on it).
fn some_append() -> medrelay_server::store::LogAppend {
    let principal = medrelay_crypto::PrincipalId::from_bytes([7; 32]);
    let event = LogEvent::PrincipalSuspended { at: medrelay_crypto::Timestamp(1), principal };
    medrelay_server::store::LogAppend::seal(&event).unwrap()
}

/// The study store's decisions, directly, on sled.
#[test]
fn the_study_store_decides_under_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    study_store_decides_under_its_lock(SledStore::open(dir.path()).unwrap());
}

/// The same conformance check on PostgreSQL (a fresh database of the test
/// binary's throwaway cluster).
#[test]
fn the_study_store_decides_under_its_lock_on_postgres() {
    let Some(url) = medrelay_server::store::postgres::testing::fresh_database() else { return };
    study_store_decides_under_its_lock(medrelay_server::store::PgStore::open_with(&url, 2).unwrap());
}

/// The study store's decisions: replays inside one upload, quotas, the
/// helper's one-time release with its checks.
fn study_store_decides_under_its_lock<S: StudyStore>(store: S) {
    let event =
        |_: u32, _: u32| -> Result<medrelay_server::store::LogAppend, StoreError> { Ok(some_append()) };
    let patient = medrelay_crypto::PrincipalId::from_bytes([1; 32]);
    let reports =
        vec![([1u8; 16], vec![1]), ([1u8; 16], vec![2]), ([2u8; 16], vec![3]), ([3u8; 16], vec![4])];
    let (out, _) = store.upload_reports("s", &patient, 2, &reports, 0, &event).unwrap();
    assert_eq!(
        out,
        [UploadOutcome::Accepted, UploadOutcome::Replayed, UploadOutcome::Accepted, UploadOutcome::OverQuota]
    );
    assert_eq!(store.pending_reports("s", 10).unwrap().len(), 2);
    let (out, _) = store.upload_reports("s", &patient, 2, &[([4u8; 16], vec![5])], 0, &event).unwrap();
    assert_eq!(out, [UploadOutcome::OverQuota], "the quota holds across requests");

    // A started job keeps its reports (by id) until its commit deletes
    // them: after a crash, `jobs` hands back the same reports to resend.
    let pending = store.pending_reports("s", 10).unwrap();
    let job = medrelay_server::store::StudyJob { job_id: [3; 16], batch: 0, reports: pending.clone() };
    store.start_job("s", &job).unwrap();
    assert_eq!(store.jobs("s").unwrap(), vec![job.clone()]);
    let missing =
        medrelay_server::store::StudyJob { job_id: [4; 16], batch: 0, reports: vec![([9u8; 16], vec![])] };
    assert!(matches!(store.start_job("s", &missing), Err(StoreError::NotFound("pending report"))));
    let ids: Vec<[u8; 16]> = pending.iter().map(|(id, _)| *id).collect();
    let leader_commit = medrelay_server::store::JobCommit {
        job_id: [3; 16],
        batch: 0,
        aggregated: &ids[..1],
        rejected: &[(ids[1], 2)],
        helper_response: None,
    };
    let keep: &Transform<'_> = &|cur: &[u8]| Ok(cur.to_vec());
    let log = some_append();
    store.commit_job("s", &leader_commit, b"agg", keep, &log).unwrap();
    assert!(store.jobs("s").unwrap().is_empty() && store.pending_reports("s", 10).unwrap().is_empty());
    let b = store.get_batch("s", 0).unwrap().unwrap();
    assert_eq!((b.reports, b.rejected), (1, [0, 0, 1, 0, 0]));

    // Helper release: wrong count or checksum, too small, then once.
    let noisy: &Transform<'_> = &|agg: &[u8]| Ok([agg, b"+noise"].concat());
    let log = some_append();
    let commit = medrelay_server::store::JobCommit {
        job_id: [9; 16],
        batch: 0,
        aggregated: &[[5u8; 16], [6u8; 16]],
        rejected: &[],
        helper_response: Some(([0; 32], b"resp")),
    };
    let merge: &Transform<'_> = &|cur: &[u8]| Ok([cur, b"+"].concat());
    store.commit_job("h", &commit, b"agg", merge, &log).unwrap();
    let batch = store.get_batch("h", 0).unwrap().unwrap();
    let check = |reports, checksum| CollectCheck { batch: 0, reports, checksum, min_reports: 2 };
    assert_eq!(
        store.helper_release("h", &check(3, batch.checksum), noisy, &log).unwrap(),
        HelperReleaseOutcome::Mismatch
    );
    assert_eq!(
        store.helper_release("h", &check(2, [0; 32]), noisy, &log).unwrap(),
        HelperReleaseOutcome::Mismatch
    );
    let tight = CollectCheck { min_reports: 3, ..check(2, batch.checksum) };
    assert_eq!(store.helper_release("h", &tight, noisy, &log).unwrap(), HelperReleaseOutcome::TooSmall);
    let first = store.helper_release("h", &check(2, batch.checksum), noisy, &log).unwrap();
    assert_eq!(first, HelperReleaseOutcome::Released(b"agg++noise".to_vec()));
    // A retry gets the same bytes, not fresh noise; the batch takes no job.
    let other_noise: &Transform<'_> = &|_: &[u8]| panic!("noise drawn twice");
    assert_eq!(store.helper_release("h", &check(2, batch.checksum), other_noise, &log).unwrap(), first);
    let late = medrelay_server::store::JobCommit { job_id: [8; 16], aggregated: &[[7u8; 16]], ..commit };
    assert_eq!(
        store.commit_job("h", &late, b"agg", merge, &log).unwrap(),
        medrelay_server::store::CommitOutcome::BatchClosed
    );
}
