//! Need to know, through the real HTTP stack with real keys: a doctor lists
//! and downloads only what a grant in force covers, expiry and revocation
//! stop every read path at once, strangers are refused, directory entries
//! go only to those with a reason, and every refusal is on the record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::test;
use common::*;
use medrelay_crypto::{GrantId, RecordCategory, RecordId, SensitivityLabel, Timestamp};
use medrelay_policy::{Denial, LogEvent, RefusalReason, RefusedObject, Revocation};
use medrelay_server::app;
use medrelay_wire::{PrincipalInfo, RecordList, RevokeRequest, Role, UploadRecordRequest, B64};

const LAB: &str = "Observation?category=laboratory";

fn listed(body: &[u8]) -> Vec<RecordId> {
    let mut ids: Vec<RecordId> = json::<RecordList>(body).records.iter().map(|r| r.record_id).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<RecordId>) -> Vec<RecordId> {
    ids.sort();
    ids
}

#[actix_web::test]
async fn a_doctor_reads_only_what_a_grant_in_force_covers_and_every_refusal_is_logged() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, q, d, e, f, a) = (key(1), key(2), key(3), key(4), key(5), key(6));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    for doc in [&d, &e, &f] {
        register(&svc, doc, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    }
    register(&svc, &a, Role::Auditor, Some(enroll(&env, Role::Auditor))).await;
    let (tp, tq, td, te, tf, ta) = (
        login(&svc, &p).await,
        login(&svc, &q).await,
        login(&svc, &d).await,
        login(&svc, &e).await,
        login(&svc, &f).await,
        login(&svc, &a).await,
    );
    // p: a lab result, a mental-health-labelled lab result, a Condition.
    let mental =
        RecordCategory::new("Observation", ["laboratory".to_owned()], [SensitivityLabel::MentalHealth])
            .unwrap();
    let condition = RecordCategory::new("Condition", [], []).unwrap();
    let recs: Vec<Sealed> =
        vec![seal(&p, 10, lab(), b"{}"), seal(&p, 11, mental, b"{}"), seal(&p, 12, condition, b"{}")];
    for r in &recs {
        let up = r.upload();
        assert_eq!(post(&svc, "/v1/records", &up, Some(&tp)).await.0, 201);
    }
    let [lab_id, mental_id, cond_id] = [0, 1, 2].map(|i| recs[i].header().record_id());
    let all = sorted(vec![lab_id, mental_id, cond_id]);
    // d: a laboratory grant for an hour; e: one that p revokes.
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 1, LAB, T0 + 3600), Some(&tp)).await.0, 201);
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &e, 2, LAB, T0 + 7200), Some(&tp)).await.0, 201);
    let rev =
        Revocation::new(GrantId::from_bytes([2; 16]), p.principal_id(), Timestamp(T0)).sign(&p).unwrap();
    let req = RevokeRequest { revocation: B64(rev.to_bytes()) };
    let path = format!("/v1/grants/{}/revoke", GrantId::from_bytes([2; 16]));
    assert_eq!(post(&svc, &path, &req, Some(&tp)).await.0, 200);

    let records = format!("/v1/patients/{}/records", p.principal_id());
    let envelope = |id: RecordId| format!("/v1/records/{id}");
    // The owner and the auditor see everything.
    for t in [&tp, &ta] {
        let (s, b) = get(&svc, &records, Some(t)).await;
        assert_eq!(s, 200);
        assert_eq!(listed(&b), all);
        assert_eq!(get(&svc, &envelope(mental_id), Some(t)).await.0, 200);
    }
    let before = log_size(&svc).await;

    // d, lab-only: lists and downloads the lab result only.
    let (s, b) = get(&svc, &records, Some(&td)).await;
    assert_eq!(s, 200);
    assert_eq!(listed(&b), vec![lab_id]);
    let (s, b) = get(&svc, &envelope(lab_id), Some(&td)).await;
    assert_eq!(s, 200);
    assert_eq!(json::<UploadRecordRequest>(&b).envelope.0, recs[0].to_bytes());
    expect_err(get(&svc, &envelope(mental_id), Some(&td)).await, 403, "sensitive_excluded");
    expect_err(get(&svc, &envelope(cond_id), Some(&td)).await, 403, "out_of_scope");
    // e, revoked: nothing; f, no grant: nothing; q, another patient: nothing.
    expect_err(get(&svc, &records, Some(&te)).await, 403, "revoked");
    expect_err(get(&svc, &envelope(lab_id), Some(&te)).await, 403, "revoked");
    expect_err(get(&svc, &records, Some(&tf)).await, 403, "no_grant");
    expect_err(get(&svc, &envelope(lab_id), Some(&tf)).await, 403, "no_grant");
    expect_err(get(&svc, &records, Some(&tq)).await, 403, "forbidden");
    expect_err(get(&svc, &envelope(lab_id), Some(&tq)).await, 403, "forbidden");
    // Each refusal is one entry: 8 refusals, 8 entries.
    assert_eq!(log_size(&svc).await, before + 8);
    let d_denied: Vec<(RecordId, Denial)> = mine(&svc, &td)
        .await
        .into_iter()
        .filter(|(i, _)| *i >= before)
        .map(|(_, ev)| match ev {
            LogEvent::AccessDenied { record, reason, patient, count: 1, .. } => {
                assert_eq!(patient, Some(p.principal_id()));
                (record, reason)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(d_denied, vec![(mental_id, Denial::SensitiveExcluded), (cond_id, Denial::OutOfScope)]);
    // e and f: the refused listing, and the denied envelope.
    for (t, reason) in [(&te, Denial::Revoked), (&tf, Denial::NoGrant)] {
        let got: Vec<LogEvent> =
            mine(&svc, t).await.into_iter().filter(|(i, _)| *i >= before).map(|(_, ev)| ev).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            matches!(&got[0], LogEvent::RequestRefused { what: RefusedObject::RecordList(o), reason: r, count: 1, .. }
            if *o == p.principal_id() && *r == RefusalReason::Denied(reason))
        );
        assert!(matches!(&got[1], LogEvent::AccessDenied { record, reason: r, count: 1, .. }
            if *record == lab_id && *r == reason));
    }
    assert_eq!(
        refusals_since(&svc, &tq, q.principal_id(), before).await,
        vec![
            (RefusedObject::RecordList(p.principal_id()), RefusalReason::NotEntitled),
            (RefusedObject::Envelope(lab_id), RefusalReason::NotEntitled),
        ]
    );
    // The patient sees the denials on their records and the revoked
    // doctor's refused listing; not the stranger's guesses (f, q).
    let p_sees: Vec<&str> =
        mine(&svc, &tp).await.iter().filter(|(i, _)| *i >= before).map(|(_, ev)| ev.kind()).collect();
    assert_eq!(
        p_sees,
        ["access_denied", "access_denied", "request_refused", "access_denied", "access_denied"],
        "d's two denials, e's listing and envelope, f's envelope (f asked for p's record by id)"
    );

    // The grant expires: at that second, listing, envelope reads and
    // re-encryption all stop, and each is logged.
    env.clock.advance(3600);
    let (td, tp) = (login(&svc, &d).await, login(&svc, &p).await);
    let before = log_size(&svc).await;
    let (s, b) = get(&svc, &records, Some(&td)).await;
    assert_eq!((s, serde_json::from_slice::<RecordList>(&b).is_err()), (403, true), "nothing listed");
    expect_err((s, b), 403, "expired");
    expect_err(get(&svc, &envelope(lab_id), Some(&td)).await, 403, "expired");
    expect_err(post(&svc, &format!("/v1/records/{lab_id}/reencrypt"), &(), Some(&td)).await, 403, "expired");
    // The listing refusal and the envelope refusal; the re-encryption of the
    // same record for the same reason is the same refusal (coalesced).
    assert_eq!(log_size(&svc).await, before + 2);
    let after: Vec<LogEvent> =
        mine(&svc, &td).await.into_iter().filter(|(i, _)| *i >= before).map(|(_, ev)| ev).collect();
    assert!(matches!(
        &after[0],
        LogEvent::RequestRefused {
            what: RefusedObject::RecordList(_),
            reason: RefusalReason::Denied(Denial::Expired),
            ..
        }
    ));
    assert!(
        matches!(&after[1], LogEvent::AccessDenied { reason: Denial::Expired, record, .. } if *record == lab_id)
    );
    // The patient is told about the expired doctor's listing attempt.
    assert!(mine(&svc, &tp).await.iter().any(|(i, ev)| *i >= before
        && matches!(ev, LogEvent::RequestRefused { reason: RefusalReason::Denied(Denial::Expired), .. })));
}

#[actix_web::test]
async fn directory_entries_go_only_to_those_with_a_reason() {
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, q, d, f, n, a) = (key(1), key(2), key(3), key(4), key(5), key(6));
    register(&svc, &p, Role::Patient, None).await;
    register(&svc, &q, Role::Patient, None).await;
    register(&svc, &d, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &f, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    register(&svc, &n, Role::Analyst, Some(enroll(&env, Role::Analyst))).await;
    register(&svc, &a, Role::Auditor, Some(enroll(&env, Role::Auditor))).await;
    let (tp, tq, td, tf, tn, ta) = (
        login(&svc, &p).await,
        login(&svc, &q).await,
        login(&svc, &d).await,
        login(&svc, &f).await,
        login(&svc, &n).await,
        login(&svc, &a).await,
    );
    // p grants d (then it expires: d still sees p).
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &d, 1, LAB, T0 + 60), Some(&tp)).await.0, 201);
    env.clock.advance(120);
    let unknown = key(77).principal_id();
    let dir = |id: medrelay_crypto::PrincipalId| format!("/v1/principals/{id}");
    let ok = [
        (&tp, p.principal_id()),
        (&tp, d.principal_id()),
        (&tp, f.principal_id()),
        (&tq, d.principal_id()),
        (&td, p.principal_id()),
        (&tn, n.principal_id()),
        (&ta, p.principal_id()),
        (&ta, n.principal_id()),
    ];
    for (t, id) in ok {
        let (s, b) = get(&svc, &dir(id), Some(t)).await;
        assert_eq!(s, 200, "{id}");
        assert_eq!(json::<PrincipalInfo>(&b).id, id);
    }
    expect_err(get(&svc, &dir(unknown), Some(&ta)).await, 404, "not_found");
    let before = log_size(&svc).await;
    let refused = [
        (&tq, q.principal_id(), p.principal_id()), // a patient, another patient
        (&tp, p.principal_id(), n.principal_id()), // a patient, an analyst
        (&tp, p.principal_id(), unknown),          // a patient, an unknown id: the same answer
        (&tf, f.principal_id(), p.principal_id()), // a doctor without any grant from p
        (&td, d.principal_id(), q.principal_id()), // a doctor, a patient who never granted it
        (&td, d.principal_id(), f.principal_id()), // a doctor, another doctor
        (&tn, n.principal_id(), d.principal_id()), // an analyst, anyone else
    ];
    for (t, who, id) in refused {
        let body = expect_err(get(&svc, &dir(id), Some(t)).await, 403, "forbidden");
        assert!(!body.message.contains(&id.to_string()));
        let got = refusals_since(&svc, t, who, before).await;
        assert_eq!(got.last(), Some(&(RefusedObject::Principal(id), RefusalReason::NotEntitled)));
    }
    assert_eq!(log_size(&svc).await, before + refused.len() as u64);
    // The principal looked up is not told about the attempts.
    for t in [&tp, &tq] {
        assert!(mine(&svc, t).await.iter().all(|(i, ev)| *i < before
            || matches!(ev, LogEvent::RequestRefused { principal, .. } if [p.principal_id(), q.principal_id()].contains(principal))));
    }
}

#[actix_web::test]
async fn a_grant_reaches_only_the_key_classes_its_category_codes_name() {
    // Review finding F6: an Observation coded both vital-signs and
    // laboratory is a laboratory record. A vital-signs grant (general class
    // only) neither lists, serves nor re-encrypts it, and says why; a
    // laboratory grant does all three.
    let env = env();
    let svc = test::init_service(app(env.state.clone())).await;
    let (p, v, l) = (key(1), key(2), key(3));
    register(&svc, &p, Role::Patient, None).await;
    for doc in [&v, &l] {
        register(&svc, doc, Role::Doctor, Some(enroll(&env, Role::Doctor))).await;
    }
    let (tp, tv, tl) = (login(&svc, &p).await, login(&svc, &v).await, login(&svc, &l).await);
    let codes =
        |c: &[&str]| RecordCategory::new("Observation", c.iter().map(|s| (*s).to_owned()), []).unwrap();
    let recs = [
        seal(&p, 10, codes(&["laboratory", "vital-signs"]), b"{}"),
        seal(&p, 11, codes(&["vital-signs"]), b"{}"),
    ];
    for r in &recs {
        assert_eq!(post(&svc, "/v1/records", &r.upload(), Some(&tp)).await.0, 201);
    }
    let [both_id, vitals_id] = [0, 1].map(|i| recs[i].header().record_id());
    let vitals_grant = grant_request(&p, &v, 1, "Observation?category=vital-signs", T0 + 3600);
    assert_eq!(vitals_grant.rekeys.len(), 1, "one key class: general");
    assert_eq!(post(&svc, "/v1/grants", &vitals_grant, Some(&tp)).await.0, 201);
    assert_eq!(post(&svc, "/v1/grants", &grant_request(&p, &l, 2, LAB, T0 + 3600), Some(&tp)).await.0, 201);

    let records = format!("/v1/patients/{}/records", p.principal_id());
    let envelope = |id: RecordId| format!("/v1/records/{id}");
    let reencrypt = |id: RecordId| format!("/v1/records/{id}/reencrypt");
    let (s, b) = get(&svc, &records, Some(&tv)).await;
    assert_eq!((s, listed(&b)), (200, vec![vitals_id]));
    assert_eq!(get(&svc, &envelope(vitals_id), Some(&tv)).await.0, 200);
    let before = log_size(&svc).await;
    let e = expect_err(get(&svc, &envelope(both_id), Some(&tv)).await, 403, "class_not_granted");
    assert!(e.message.contains("class_not_granted"), "{}", e.message);
    expect_err(post(&svc, &reencrypt(both_id), &(), Some(&tv)).await, 403, "class_not_granted");
    let denied: Vec<Denial> = mine(&svc, &tv)
        .await
        .into_iter()
        .filter(|(i, _)| *i >= before)
        .filter_map(|(_, ev)| match ev {
            LogEvent::AccessDenied { record, reason, .. } if record == both_id => Some(reason),
            _ => None,
        })
        .collect();
    assert!(!denied.is_empty() && denied.iter().all(|d| *d == Denial::ClassNotGranted), "{denied:?}");

    let (s, b) = get(&svc, &records, Some(&tl)).await;
    assert_eq!((s, listed(&b)), (200, vec![both_id]));
    assert_eq!(get(&svc, &envelope(both_id), Some(&tl)).await.0, 200);
    assert_eq!(post(&svc, &reencrypt(both_id), &(), Some(&tl)).await.0, 200);
}
