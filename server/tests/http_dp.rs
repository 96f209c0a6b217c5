//! The DP service through the real HTTP stack: summaries (submit, replace,
//! withdraw, validation), analysts' queries (noisy answers with mechanism,
//! scale and interval), exact accounting, overspend refusal, concurrent
//! queries, restart, small filtered counts, and the summary cache (every
//! acknowledged submit, replace and withdraw is seen by the next query; a
//! restart rebuilds the cache from the store).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use common::*;
use medrelay_crypto::{PrincipalId, SigningKey};
use medrelay_dp::{plan, AnalystId, Budget, Delta, Epsilon, Ledger, Mechanism, PrivacyCost, Query, Schema};
use medrelay_policy::LogEvent;
use medrelay_server::store::{encode_summary, LogAppend, SledStore};
use medrelay_server::{app, enroll_in, install_default_schema, set_budget_in, AppState, Clock};
use medrelay_wire::dp::{
    Accuracy, AnswerValue, BudgetStatus, DpAnswer, SchemaList, SummaryAction, SummaryReceipt,
};
use medrelay_wire::Role;
use serde_json::{json, Value};

const HB: &str = "health-basics";
const SEXES: [&str; 4] = ["female", "male", "other", "unknown"];

fn env_with_schema() -> Env {
    let env = env();
    install_default_schema(env.state.store().as_ref(), &env.clock).unwrap();
    env
}

fn budget(eps: f64) -> Budget {
    Budget { epsilon: Epsilon::new(eps).unwrap(), delta: Delta::new(1e-6).unwrap() }
}

/// Stores `n` summaries directly (no HTTP: these stand for many patients),
/// each with its real `summary submitted` log event.
fn seed(state: &AppState, n: usize, values: impl Fn(usize) -> Value) {
    let schema = Schema::health_basics();
    for i in 0..n {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let patient = PrincipalId::from_bytes(id);
        let doc = json!({"schema": HB, "values": values(i)});
        medrelay_dp::Summary::from_json(&schema, doc.to_string().as_bytes()).unwrap();
        let ev =
            LogEvent::SummarySubmitted { at: medrelay_crypto::Timestamp(T0), patient, schema: HB.into() };
        let append = LogAppend::seal(&ev).unwrap();
        state
            .store()
            .put_summary(HB, &patient, &encode_summary(doc.to_string().as_bytes()), &append)
            .unwrap();
    }
    // Written past the handlers: tell the summary cache, as they do.
    state.dp_cache().invalidate(HB);
}

fn population(i: usize) -> Value {
    json!({
        "birth_year": 1940 + (i * 7) % 60,
        "sex": SEXES[i % 4],
        "systolic_bp": 100.0 + (i % 50) as f64,
        "bmi": 18.0 + (i % 20) as f64,
        "diabetes": i.is_multiple_of(5),
        "hypertension": i.is_multiple_of(3),
        "asthma": false,
    })
}

async fn put<S, B>(svc: &S, path: &str, body: &Value, token: &str) -> (u16, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let req = test::TestRequest::put()
        .uri(path)
        .set_json(body)
        .insert_header(("Authorization", format!("Bearer {token}")));
    call(svc, req).await
}

async fn delete<S, B>(svc: &S, path: &str, token: &str) -> (u16, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let req =
        test::TestRequest::delete().uri(path).insert_header(("Authorization", format!("Bearer {token}")));
    call(svc, req).await
}

async fn analyst<S, B>(svc: &S, env: &Env, seed: u64) -> (SigningKey, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let sk = key(seed);
    register(svc, &sk, Role::Analyst, Some(enroll(env, Role::Analyst))).await;
    let token = login(svc, &sk).await;
    (sk, token)
}

async fn ask<S, B>(svc: &S, token: &str, query: &Value) -> (u16, Vec<u8>)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    post(svc, &format!("/v1/dp/schemas/{HB}/query"), query, Some(token)).await
}

async fn budget_of<S, B>(svc: &S, token: &str) -> BudgetStatus
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (s, b) = get(svc, &format!("/v1/dp/schemas/{HB}/budget"), Some(token)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    json(&b)
}

fn dp_events(state: &AppState) -> Vec<LogEvent> {
    let store = state.store();
    let n = store.log_size().unwrap();
    store
        .log_entries(0, n)
        .unwrap()
        .into_iter()
        .map(|(_, d)| d.event().unwrap())
        .filter(|e| e.kind() == "dp_query_answered")
        .collect()
}

fn count_query(eps: f64) -> Value {
    json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": eps}})
}

#[actix_web::test]
async fn schemas_are_listed_to_any_authenticated_principal() {
    let env = env_with_schema();
    let svc = test::init_service(app(env.state.clone())).await;
    expect_err(get(&svc, "/v1/dp/schemas", None).await, 401, "unauthorized");
    let p = key(1);
    register(&svc, &p, Role::Patient, None).await;
    let token = login(&svc, &p).await;
    let (s, b) = get(&svc, "/v1/dp/schemas", Some(&token)).await;
    assert_eq!(s, 200);
    let list: SchemaList = json(&b);
    assert_eq!(list.schemas.len(), 1);
    let info = &list.schemas[0];
    assert_eq!((info.name.as_str(), info.log_index), (HB, 0));
    // The served document is the shipped schema, and its hash is the logged one.
    let served = Schema::from_json(info.schema.to_string().as_bytes()).unwrap();
    assert_eq!(served, Schema::health_basics());
    let logged = env.state.store().log_entries(0, 1).unwrap()[0].1.event().unwrap();
    let LogEvent::SchemaAdded { schema_sha256, .. } = logged else { panic!("{logged:?}") };
    assert_eq!(info.schema_sha256, hex::encode(schema_sha256));
    let (s, _) = get(&svc, &format!("/v1/dp/schemas/{HB}"), Some(&token)).await;
    assert_eq!(s, 200);
    expect_err(get(&svc, "/v1/dp/schemas/nope", Some(&token)).await, 404, "not_found");
    expect_err(get(&svc, "/v1/dp/schemas/Bad%20Name", Some(&token)).await, 400, "invalid_parameter");
}

#[actix_web::test]
async fn summaries_are_submitted_replaced_and_withdrawn() {
    let env = env_with_schema();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(1);
    register(&svc, &p, Role::Patient, None).await;
    let token = login(&svc, &p).await;
    let path = format!("/v1/dp/schemas/{HB}/summary");
    expect_err(get(&svc, &path, Some(&token)).await, 404, "not_found");

    let first = json!({"schema": HB, "values": {"bmi": 31.5, "diabetes": true, "sex": "female"}});
    let (s, b) = put(&svc, &path, &first, &token).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let r: SummaryReceipt = json(&b);
    assert_eq!((r.action, r.patient), (SummaryAction::Submitted, p.principal_id()));
    let (_, b) = get(&svc, &path, Some(&token)).await;
    let stored: Value = json(&b);
    assert_eq!(stored["values"]["bmi"], json!(31.5));
    assert_eq!(stored["values"]["asthma"], Value::Null);

    let second = json!({"schema": HB, "values": {"bmi": 24.0, "asthma": true}});
    let r: SummaryReceipt = json(&put(&svc, &path, &second, &token).await.1);
    assert_eq!(r.action, SummaryAction::Replaced);
    let stored: Value = json(&get(&svc, &path, Some(&token)).await.1);
    assert_eq!(stored["values"]["bmi"], json!(24.0));
    assert_eq!(stored["values"]["diabetes"], Value::Null, "replacement, not merge");
    assert_eq!(env.state.store().list_summaries(HB, 10).unwrap().len(), 1);

    // The log names patient and schema only: no value reaches it.
    let entry = &env.state.store().log_entries(r.log_index, r.log_index + 1).unwrap()[0].1;
    let expected = LogEvent::SummarySubmitted {
        at: medrelay_crypto::Timestamp(T0),
        patient: p.principal_id(),
        schema: HB.into(),
    };
    assert_eq!(entry.event_bytes(), &expected.to_bytes().unwrap()[..]);

    let (s, b) = delete(&svc, &path, &token).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let r: SummaryReceipt = json(&b);
    assert_eq!(r.action, SummaryAction::Withdrawn);
    let ev = env.state.store().log_entries(r.log_index, r.log_index + 1).unwrap()[0].1.event();
    assert_eq!(ev.unwrap().kind(), "summary_withdrawn");
    expect_err(get(&svc, &path, Some(&token)).await, 404, "not_found");
    let size = log_size(&svc).await;
    expect_err(delete(&svc, &path, &token).await, 404, "not_found");
    assert_eq!(log_size(&svc).await, size);
    assert!(env.state.store().list_summaries(HB, 10).unwrap().is_empty());

    // Only patients submit.
    let (_, atoken) = analyst(&svc, &env, 2).await;
    expect_err(put(&svc, &path, &first, &atoken).await, 403, "wrong_role");
}

#[actix_web::test]
async fn bad_summaries_are_clear_400s_and_store_nothing() {
    let env = env_with_schema();
    let svc = test::init_service(app(env.state.clone())).await;
    let p = key(1);
    register(&svc, &p, Role::Patient, None).await;
    let token = login(&svc, &p).await;
    let path = format!("/v1/dp/schemas/{HB}/summary");
    let before = log_size(&svc).await;
    let cases = [
        (json!({"schema": HB, "values": {"weight": 80}}), "invalid_field", "unknown field \"weight\""),
        (
            json!({"schema": HB, "values": {"bmi": "high"}}),
            "invalid_field",
            "field \"bmi\": expected a number",
        ),
        (json!({"schema": HB, "values": {"birth_year": 1980.5}}), "invalid_field", "expected a whole number"),
        (json!({"schema": HB, "values": {"diabetes": 1}}), "invalid_field", "expected true or false"),
        (
            json!({"schema": HB, "values": {"sex": "robot"}}),
            "invalid_field",
            "not one of the schema's categories",
        ),
        (
            json!({"schema": HB, "values": {"bmi": 95.0}}),
            "invalid_field",
            "outside the schema's public bounds [10, 70]",
        ),
        (
            json!({"schema": HB, "values": {"birth_year": 1700}}),
            "invalid_field",
            "outside the schema's public bounds",
        ),
        (json!({"schema": "other", "values": {}}), "invalid_field", "expected \"health-basics\""),
        (json!({"schema": HB, "values": {}, "extra": 1}), "invalid_json", "unknown field"),
        (json!({"values": {}}), "invalid_json", "missing field"),
    ];
    for (body, code, text) in cases {
        let e = expect_err(put(&svc, &path, &body, &token).await, 400, code);
        assert!(e.message.contains(text), "{body}: {}", e.message);
    }
    // Oversized body, unknown schema, malformed schema name.
    let big = json!({"schema": HB, "values": {"x".repeat(20_000): 1}});
    expect_err(put(&svc, &path, &big, &token).await, 413, "payload_too_large");
    let ok = json!({"schema": HB, "values": {}});
    expect_err(put(&svc, "/v1/dp/schemas/nope/summary", &ok, &token).await, 404, "not_found");
    expect_err(put(&svc, "/v1/dp/schemas/NO!/summary", &ok, &token).await, 400, "invalid_parameter");
    assert_eq!(log_size(&svc).await, before);
    assert!(env.state.store().list_summaries(HB, 10).unwrap().is_empty());
    expect_err(get(&svc, &path, Some(&token)).await, 404, "not_found");
}

#[actix_web::test]
async fn answers_are_noisy_with_mechanism_scale_and_interval() {
    let env = env_with_schema();
    seed(&env.state, 60, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let (sk, token) = analyst(&svc, &env, 9).await;
    set_budget_in(env.state.store().as_ref(), &sk.principal_id(), HB, budget(10.0), &env.clock).unwrap();
    let schema = Schema::health_basics();

    let q = count_query(0.5);
    let (s, b) = ask(&svc, &token, &q).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let a: DpAnswer = json(&b);
    let expected = plan(&schema, &serde_json::from_value::<Query>(q).unwrap()).unwrap();
    let c = &a.answer.components[0];
    assert_eq!(c.mechanism, Mechanism::DiscreteLaplace);
    assert_eq!(c.scale, expected.components()[0].scale);
    let AnswerValue::Scalar(v) = a.answer.value else { panic!("scalar expected") };
    let Accuracy::Interval { confidence, low, high, guaranteed } = a.answer.accuracy else { panic!() };
    assert_eq!((confidence, guaranteed), (0.95, true));
    assert!(low < v && v < high);
    assert!(((high - v) - c.half_width.unwrap()).abs() < 1e-9);
    // The cost is the one OpenDP's map reports for the calibrated scale: at
    // most the requested ε, never more.
    let PrivacyCost::Epsilon(cost) = expected.cost() else { panic!() };
    assert!(cost <= 0.5 && cost > 0.499);
    assert_eq!(a.answer.cost, expected.cost());
    assert_eq!((a.budget.spent_pure_epsilon, a.budget.queries), (cost, 1));
    let ev = env.state.store().log_entries(a.log_index, a.log_index + 1).unwrap()[0].1.event();
    assert!(
        matches!(ev.unwrap(), LogEvent::DpQueryAnswered { epsilon, rho, .. } if epsilon == cost && rho == 0.0)
    );

    // Median: exponential mechanism with a rank accuracy.
    let (s, b) = ask(
        &svc,
        &token,
        &json!({"statistic": {"kind": "median", "field": "bmi"}, "privacy": {"epsilon": 0.5}}),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let a: DpAnswer = json(&b);
    assert_eq!(a.answer.components[0].mechanism, Mechanism::ExponentialMechanism);
    assert!(
        matches!(a.answer.accuracy, Accuracy::Rank { confidence, within } if confidence == 0.95 && within > 0.0)
    );
    let AnswerValue::Scalar(m) = a.answer.value else { panic!() };
    assert!((10.0..=70.0).contains(&m));

    // Mean under zCDP: Gaussian noise on count and sum.
    let (s, b) = ask(
        &svc,
        &token,
        &json!({"statistic": {"kind": "mean", "field": "systolic_bp"}, "privacy": {"rho": 0.05}}),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let a: DpAnswer = json(&b);
    let mechs: Vec<_> = a.answer.components.iter().map(|c| c.mechanism).collect();
    assert_eq!(mechs, [Mechanism::DiscreteGaussian, Mechanism::Gaussian]);
    let PrivacyCost::Rho(rho) = a.answer.cost else { panic!() };
    assert!(rho <= 0.05 && rho > 0.0499);
    assert_eq!(a.budget.spent_rho, rho);

    // Bad queries are 400s that spend nothing.
    let before = budget_of(&svc, &token).await;
    let bad = [
        (json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": 0.5}, "x": 1}), "invalid_json"),
        (
            json!({"statistic": {"kind": "sum", "field": "weight"}, "privacy": {"epsilon": 0.5}}),
            "invalid_field",
        ),
        (json!({"statistic": {"kind": "sum", "field": "sex"}, "privacy": {"epsilon": 0.5}}), "invalid_field"),
        (json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": -1.0}}), "invalid_json"),
        (json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": 1e9}}), "invalid_json"),
    ];
    for (q, code) in bad {
        expect_err(ask(&svc, &token, &q).await, 400, code);
    }
    assert_eq!(budget_of(&svc, &token).await, before);
    // Only analysts query.
    let p = key(3);
    register(&svc, &p, Role::Patient, None).await;
    let ptoken = login(&svc, &p).await;
    expect_err(ask(&svc, &ptoken, &count_query(0.5)).await, 403, "wrong_role");
    expect_err(get(&svc, &format!("/v1/dp/schemas/{HB}/budget"), Some(&ptoken)).await, 403, "wrong_role");
}

#[actix_web::test]
async fn accounting_after_k_queries_matches_the_dp_ledger() {
    let env = env_with_schema();
    seed(&env.state, 30, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let (sk, token) = analyst(&svc, &env, 9).await;
    set_budget_in(env.state.store().as_ref(), &sk.principal_id(), HB, budget(5.0), &env.clock).unwrap();
    let schema = Schema::health_basics();
    let mut expected =
        Ledger::new(AnalystId::from_bytes(*sk.principal_id().as_bytes()), HB, budget(5.0)).unwrap();
    let queries = [
        count_query(0.1),
        json!({"statistic": {"kind": "sum", "field": "bmi"}, "privacy": {"epsilon": 0.3}}),
        json!({"statistic": {"kind": "histogram", "field": "sex"}, "privacy": {"rho": 0.01}}),
        json!({"statistic": {"kind": "variance", "field": "bmi"}, "privacy": {"epsilon": 0.2}}),
        json!({"statistic": {"kind": "correlation", "x": "bmi", "y": "systolic_bp"}, "privacy": {"rho": 0.02}}),
        json!({"statistic": {"kind": "quantile", "field": "birth_year", "alpha": 0.25}, "privacy": {"epsilon": 0.15}}),
        count_query(0.1),
    ];
    for q in &queries {
        let (s, b) = ask(&svc, &token, q).await;
        assert_eq!(s, 200, "{q}: {}", String::from_utf8_lossy(&b));
        let p = plan(&schema, &serde_json::from_value::<Query>(q.clone()).unwrap()).unwrap();
        expected.debit(p.cost()).unwrap();
        let a: DpAnswer = json(&b);
        assert_eq!(a.answer.cost, p.cost());
    }
    let status = budget_of(&svc, &token).await;
    assert_eq!(status.queries, queries.len() as u64);
    assert_eq!(status.spent_pure_epsilon, expected.spent_pure_epsilon());
    assert_eq!(status.spent_rho, expected.spent_rho());
    assert_eq!(status.spent_epsilon, expected.spent_epsilon().unwrap());
    assert_eq!(status.remaining_epsilon, expected.remaining_epsilon().unwrap());
    assert_eq!(env.state.store().get_ledger(&sk.principal_id(), HB).unwrap().unwrap(), expected);
    assert_eq!(dp_events(&env.state).len(), queries.len());
}

#[actix_web::test]
async fn overspend_is_refused_clearly_and_spends_nothing() {
    let env = env_with_schema();
    seed(&env.state, 20, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let (sk, token) = analyst(&svc, &env, 9).await;
    set_budget_in(env.state.store().as_ref(), &sk.principal_id(), HB, budget(1.0), &env.clock).unwrap();
    assert_eq!(ask(&svc, &token, &count_query(0.6)).await.0, 200);
    let before = budget_of(&svc, &token).await;
    let size = log_size(&svc).await;
    let e = expect_err(ask(&svc, &token, &count_query(0.6)).await, 403, "budget_exceeded");
    assert!(
        e.message.contains("privacy budget exceeded") && e.message.contains("total ε is 1"),
        "{}",
        e.message
    );
    // A zCDP query that converts to more than what is left is refused too.
    expect_err(
        ask(&svc, &token, &json!({"statistic": {"kind": "count"}, "privacy": {"rho": 0.05}})).await,
        403,
        "budget_exceeded",
    );
    assert_eq!(budget_of(&svc, &token).await, before);
    assert_eq!(log_size(&svc).await, size);
    // What is left can still be spent.
    assert_eq!(ask(&svc, &token, &count_query(0.3)).await.0, 200);
}

#[actix_web::test]
async fn the_default_budget_applies_and_can_be_switched_off() {
    let env = env_with_schema();
    seed(&env.state, 10, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let (_, token) = analyst(&svc, &env, 9).await;
    let status = budget_of(&svc, &token).await;
    assert_eq!((status.total_epsilon, status.delta, status.queries), (1.0, 1e-6, 0));
    assert_eq!(ask(&svc, &token, &count_query(1.0)).await.0, 200);
    expect_err(ask(&svc, &token, &count_query(0.01)).await, 403, "budget_exceeded");

    let strict = test::init_service(app(env.state.clone().with_dp_default_budget(None))).await;
    let (_, other) = analyst(&strict, &env, 10).await;
    expect_err(ask(&strict, &other, &count_query(0.1)).await, 403, "no_budget");
    expect_err(get(&strict, &format!("/v1/dp/schemas/{HB}/budget"), Some(&other)).await, 403, "no_budget");
}

#[actix_web::test]
async fn parallel_queries_never_overspend() {
    let env = env_with_schema();
    seed(&env.state, 200, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let (sk, token) = analyst(&svc, &env, 9).await;
    // 5 × 0.25 = 1.25 fits 1.3; a sixth would not.
    set_budget_in(env.state.store().as_ref(), &sk.principal_id(), HB, budget(1.3), &env.clock).unwrap();
    let q = json!({"statistic": {"kind": "median", "field": "bmi"}, "privacy": {"epsilon": 0.25}});
    let cost =
        plan(&Schema::health_basics(), &serde_json::from_value::<Query>(q.clone()).unwrap()).unwrap().cost();
    let requests = (0..16).map(|_| ask(&svc, &token, &q));
    let results = futures_util::future::join_all(requests).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 5, "{:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
    for (s, b) in results.into_iter().filter(|(s, _)| *s != 200) {
        expect_err((s, b), 403, "budget_exceeded");
    }
    let ledger = env.state.store().get_ledger(&sk.principal_id(), HB).unwrap().unwrap();
    let mut expected =
        Ledger::new(AnalystId::from_bytes(*sk.principal_id().as_bytes()), HB, budget(1.3)).unwrap();
    for _ in 0..5 {
        expected.debit(cost).unwrap();
    }
    assert_eq!(ledger, expected);
    let events = dp_events(&env.state);
    assert_eq!(events.len(), 5);
    assert!(events
        .iter()
        .all(|e| matches!((e, cost), (LogEvent::DpQueryAnswered { epsilon, .. }, PrivacyCost::Epsilon(c)) if *epsilon == c)));
}

#[actix_web::test]
async fn a_restart_keeps_the_spent_budget() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let signer = || medrelay_policy::LogSigner::new("test.medrelay/log", &log_key()).unwrap();
    let analyst_key = key(9);
    let spent = {
        let state = AppState::new(SledStore::open(&dir.path().join("db")).unwrap(), clock.clone(), signer());
        install_default_schema(state.store().as_ref(), &clock).unwrap();
        seed(&state, 10, population);
        let svc = test::init_service(app(state.clone())).await;
        let enrollment = enroll_in(state.store().as_ref(), Role::Analyst, "A", &clock).unwrap().to_string();
        register(&svc, &analyst_key, Role::Analyst, Some(enrollment)).await;
        let token = login(&svc, &analyst_key).await;
        for _ in 0..3 {
            assert_eq!(ask(&svc, &token, &count_query(0.3)).await.0, 200);
        }
        budget_of(&svc, &token).await
    };
    // Everything above is dropped: reopen the same sled directory.
    let state = AppState::new(
        SledStore::open_waiting(&dir.path().join("db"), REOPEN_WAIT).unwrap(),
        clock.clone(),
        signer(),
    );
    let svc = test::init_service(app(state.clone())).await;
    let token = login(&svc, &analyst_key).await;
    let after = budget_of(&svc, &token).await;
    assert_eq!(after, spent);
    assert_eq!(after.queries, 3);
    // 0.9 spent of the default 1.0: a fresh budget would allow 0.3, this one does not.
    expect_err(ask(&svc, &token, &count_query(0.3)).await, 403, "budget_exceeded");
    assert_eq!(dp_events(&state).len(), 3);
}

#[actix_web::test]
async fn a_filter_matching_one_patient_still_gets_only_noise() {
    let env = env_with_schema();
    // 40 summaries without asthma, one with.
    seed(&env.state, 41, |i| {
        let mut v = population(i);
        v["asthma"] = json!(i == 17);
        v
    });
    let svc = test::init_service(app(env.state.clone())).await;
    let (sk, token) = analyst(&svc, &env, 9).await;
    set_budget_in(env.state.store().as_ref(), &sk.principal_id(), HB, budget(50.0), &env.clock).unwrap();
    let q = json!({"statistic": {"kind": "count"},
        "filters": [{"field": "asthma", "op": "is", "value": true}], "privacy": {"epsilon": 1.0}});
    let mut values = Vec::new();
    for _ in 0..20 {
        let (s, b) = ask(&svc, &token, &q).await;
        assert_eq!(s, 200);
        let raw: Value = json(&b);
        // Only the documented fields: no exact count hides in the answer.
        let mut keys: Vec<_> = raw["answer"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["accuracy", "components", "cost", "query", "schema", "value"]);
        let a: DpAnswer = serde_json::from_value(raw).unwrap();
        let AnswerValue::Scalar(v) = a.answer.value else { panic!() };
        assert_eq!(a.answer.components[0].noisy_value, Some(v));
        values.push(v);
    }
    // Discrete Laplace at ε = 1 (scale 1) adds zero with probability
    // (1 − e⁻¹)/(1 + e⁻¹) ≈ 0.46, so 20 exact answers in a row happen with
    // probability ≈ 2e-7: this is the test's flake rate.
    assert!(values.iter().any(|v| *v != 1.0), "{values:?}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!((mean - 1.0).abs() < 3.0, "{values:?}");
}

/// ε of the cache tests' counts. A count is released with discrete Laplace
/// noise of scale 1/ε, which is 0 with probability (1 − e^−ε)/(1 + e^−ε):
/// at ε = 20 the noisy count differs from the true one with probability
/// 2e^−20/(1 + e^−20) ≈ 4.1e-9 per query, so each answer rounds to the exact
/// count and tells apart counts that differ by one patient. The tests below
/// ask 13 such queries: their flake rate is below 6e-8.
const EXACT_EPS: f64 = 20.0;

/// A count (optionally of diabetics only) at [`EXACT_EPS`]: the true count
/// except with probability ≈ 4.1e-9 (see there).
async fn near_exact_count<S, B>(svc: &S, token: &str, diabetics: bool) -> f64
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut q = count_query(EXACT_EPS);
    if diabetics {
        q["filters"] = json!([{"field": "diabetes", "op": "is", "value": true}]);
    }
    let (s, b) = ask(svc, token, &q).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let a: DpAnswer = json(&b);
    let AnswerValue::Scalar(v) = a.answer.value else { panic!("{:?}", a.answer.value) };
    v
}

#[actix_web::test]
async fn every_acknowledged_summary_change_is_seen_by_the_next_query() {
    let env = env_with_schema();
    // 50 patients, 10 of them diabetic (every fifth).
    seed(&env.state, 50, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let cache = env.state.dp_cache();
    // Two analysts with ε = 100 each: four queries of ε = 20 apiece.
    let (a1, t1) = analyst(&svc, &env, 9).await;
    let (a2, t2) = analyst(&svc, &env, 10).await;
    for a in [&a1, &a2] {
        set_budget_in(env.state.store().as_ref(), &a.principal_id(), HB, budget(100.0), &env.clock).unwrap();
    }
    let p = key(1);
    register(&svc, &p, Role::Patient, None).await;
    let ptoken = login(&svc, &p).await;
    let path = format!("/v1/dp/schemas/{HB}/summary");

    assert_eq!(cache.loads(), 0);
    assert_eq!(near_exact_count(&svc, &t1, false).await.round(), 50.0);
    assert_eq!(cache.cached_rows(HB), Some(50));
    // Nothing changed: the second query is served from memory.
    assert_eq!(near_exact_count(&svc, &t1, true).await.round(), 10.0);
    assert_eq!(cache.loads(), 1);

    // Submit a diabetic summary: both counts go up by one.
    let doc = json!({"schema": HB, "values": {"bmi": 31.5, "diabetes": true, "sex": "female"}});
    assert_eq!(put(&svc, &path, &doc, &ptoken).await.0, 200);
    assert_eq!(near_exact_count(&svc, &t1, false).await.round(), 51.0);
    assert_eq!(near_exact_count(&svc, &t1, true).await.round(), 11.0);
    assert_eq!((cache.loads(), cache.cached_rows(HB)), (2, Some(51)));

    // Replace it with a non-diabetic one: the filtered count goes back down,
    // the total stays.
    let doc = json!({"schema": HB, "values": {"bmi": 24.0, "diabetes": false}});
    let r: SummaryReceipt = json(&put(&svc, &path, &doc, &ptoken).await.1);
    assert_eq!(r.action, SummaryAction::Replaced);
    assert_eq!(near_exact_count(&svc, &t2, true).await.round(), 10.0);
    assert_eq!(near_exact_count(&svc, &t2, false).await.round(), 51.0);
    assert_eq!(cache.loads(), 3);

    // Withdraw it: the total is back to 50.
    assert_eq!(delete(&svc, &path, &ptoken).await.0, 200);
    assert_eq!(near_exact_count(&svc, &t2, false).await.round(), 50.0);
    assert_eq!((cache.loads(), cache.cached_rows(HB)), (4, Some(50)));

    // A refused write (nothing to withdraw) costs at most one reload and
    // changes no answer.
    expect_err(delete(&svc, &path, &ptoken).await, 404, "not_found");
    assert_eq!(near_exact_count(&svc, &t2, true).await.round(), 10.0);
    // Every answer was still charged and logged one by one.
    assert_eq!(dp_events(&env.state).len(), 8);
    assert_eq!(budget_of(&svc, &t2).await.queries, 4);
}

#[actix_web::test]
async fn the_summary_cache_is_rebuilt_from_the_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let signer = || medrelay_policy::LogSigner::new("test.medrelay/log", &log_key()).unwrap();
    let analyst_key = key(9);
    {
        let state = AppState::new(SledStore::open(&dir.path().join("db")).unwrap(), clock.clone(), signer());
        install_default_schema(state.store().as_ref(), &clock).unwrap();
        seed(&state, 30, population);
        let svc = test::init_service(app(state.clone())).await;
        let enrollment = enroll_in(state.store().as_ref(), Role::Analyst, "A", &clock).unwrap().to_string();
        register(&svc, &analyst_key, Role::Analyst, Some(enrollment)).await;
        let principal = analyst_key.principal_id();
        set_budget_in(state.store().as_ref(), &principal, HB, budget(100.0), &clock).unwrap();
        let token = login(&svc, &analyst_key).await;
        assert_eq!(near_exact_count(&svc, &token, false).await.round(), 30.0);
        assert_eq!(state.dp_cache().cached_rows(HB), Some(30));
    }
    // Reopen the same sled directory; while the server was down, 5 more
    // summaries were stored (the first 30 are rewritten unchanged).
    let state = AppState::new(
        SledStore::open_waiting(&dir.path().join("db"), REOPEN_WAIT).unwrap(),
        clock.clone(),
        signer(),
    );
    seed(&state, 35, population);
    assert_eq!((state.dp_cache().cached_rows(HB), state.dp_cache().loads()), (None, 0));
    let svc = test::init_service(app(state.clone())).await;
    let token = login(&svc, &analyst_key).await;
    assert_eq!(near_exact_count(&svc, &token, false).await.round(), 35.0);
    assert_eq!(near_exact_count(&svc, &token, true).await.round(), 7.0);
    assert_eq!((state.dp_cache().cached_rows(HB), state.dp_cache().loads()), (Some(35), 1));
}

#[actix_web::test]
async fn with_the_summary_cache_off_every_query_reads_the_store() {
    let env = env_with_schema();
    let state = env.state.clone().with_dp_cache(0);
    seed(&state, 20, population);
    let svc = test::init_service(app(state.clone())).await;
    let (sk, token) = analyst(&svc, &env, 9).await;
    set_budget_in(state.store().as_ref(), &sk.principal_id(), HB, budget(100.0), &env.clock).unwrap();
    assert_eq!(near_exact_count(&svc, &token, false).await.round(), 20.0);
    assert_eq!(near_exact_count(&svc, &token, true).await.round(), 4.0);
    assert_eq!((state.dp_cache().loads(), state.dp_cache().rows()), (2, 0));
}

/// How long a reopen waits for sled to release the file lock of the store
/// just dropped in this process (its I/O threads let go a moment later).
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Issue 12, finding 2: a vanishing ε or ρ is refused at planning with a
/// typed code and a message the analyst can act on; nothing is spent or
/// logged, and the same analyst's next sensible query is answered.
#[actix_web::test]
async fn vanishing_privacy_is_refused_at_planning_and_spends_nothing() {
    let env = env_with_schema();
    seed(&env.state, 30, population);
    let svc = test::init_service(app(env.state.clone())).await;
    let (_, token) = analyst(&svc, &env, 7).await;
    let before = budget_of(&svc, &token).await;
    let size = log_size(&svc).await;
    let refused = [
        (json!({"statistic": {"kind": "count"}, "privacy": {"rho": 1e-300}}), "privacy_below_floor", "rho"),
        (
            json!({"statistic": {"kind": "count"}, "privacy": {"epsilon": 1e-20}}),
            "privacy_below_floor",
            "epsilon",
        ),
        (
            json!({"statistic": {"kind": "histogram", "field": "birth_year",
                "edges": (0..=256).map(|i| 1900.0 + f64::from(i) * 0.5).collect::<Vec<_>>()},
                "privacy": {"rho": 1e-12}}),
            "sampler_cost_too_large",
            "sampler units",
        ),
    ];
    for (query, code, text) in refused {
        let e = expect_err(ask(&svc, &token, &query).await, 400, code);
        assert!(e.message.contains(text), "{query}: {}", e.message);
        assert!(!e.message.contains("OpenDP"), "explained, not OpenDP's raw text: {}", e.message);
    }
    assert_eq!(budget_of(&svc, &token).await, before, "nothing was spent");
    assert_eq!(log_size(&svc).await, size, "nothing was logged");
    assert!(dp_events(&env.state).is_empty());
    let (s, b) = ask(&svc, &token, &count_query(0.1)).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
}

/// DP work runs in a bounded number of slots and under a deadline: an
/// answer that is not ready in time is abandoned (503 dp_deadline, with
/// Retry-After), charged nothing and logged nothing, and its slot comes
/// back once the computation ends.
#[actix_web::test]
async fn an_answer_past_its_deadline_is_abandoned_uncharged() {
    let env = env_with_schema();
    seed(&env.state, 200, population);
    let state = env.state.clone().with_dp_limits(1, std::time::Duration::from_millis(1));
    let svc = test::init_service(app(state.clone())).await;
    let (_, token) = analyst(&svc, &env, 8).await;
    let before = budget_of(&svc, &token).await;
    let size = log_size(&svc).await;
    // 256 Gaussian bins over 200 rows: far more than a millisecond.
    let edges: Vec<f64> = (0..=256).map(|i| 1900.0 + f64::from(i) * 0.5).collect();
    let slow = json!({"statistic": {"kind": "histogram", "field": "birth_year", "edges": edges},
        "privacy": {"rho": 0.01}});
    let req = test::TestRequest::post()
        .uri(&format!("/v1/dp/schemas/{HB}/query"))
        .set_json(&slow)
        .insert_header(("Authorization", format!("Bearer {token}")));
    let res = test::call_service(&svc, req.to_request()).await;
    assert_eq!(res.status().as_u16(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let e: medrelay_wire::ErrorBody = test::read_body_json(res).await;
    assert!(e.error == "dp_deadline" || e.error == "dp_busy", "{e:?}");
    // The abandoned computation holds its slot until it ends, then frees it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while state.dp_gate().busy() > 0 {
        assert!(std::time::Instant::now() < deadline, "the slot never came back");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(budget_of(&svc, &token).await, before, "nothing was charged");
    assert_eq!(log_size(&svc).await, size, "nothing was logged");
    assert!(metric(&metrics(&svc).await, "medrelay_dp_abandoned_total") >= 1);

    // With a real deadline the same analyst is answered and charged.
    let state = env.state.clone().with_dp_limits(1, std::time::Duration::from_secs(30));
    let svc = test::init_service(app(state)).await;
    let (s, b) = ask(&svc, &token, &slow).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert!(budget_of(&svc, &token).await.spent_epsilon > before.spent_epsilon);
}
