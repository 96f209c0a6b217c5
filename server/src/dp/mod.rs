//! The differential-privacy service under `/v1/dp`: summary schemas,
//! patients' opt-in summaries, analysts' queries and budgets.
//!
//! - `GET /dp/schemas`, `GET /dp/schemas/{name}`: any authenticated principal.
//! - `PUT|GET|DELETE /dp/schemas/{name}/summary`: a patient's own summary
//!   (validated against the schema; one per patient per schema; a new one
//!   replaces the old; delete withdraws it). Submissions and withdrawals are
//!   logged with patient and schema only, never values.
//! - `POST /dp/schemas/{name}/query`, `GET /dp/schemas/{name}/budget`:
//!   analysts.
//!
//! Beside the routes: `admin`, the operator's schema and budget commands
//! ([`add_schema`](crate::add_schema), [`set_budget`](crate::set_budget));
//! `cache`, the validated summaries of each schema kept in memory
//! ([`DpCache`](crate::DpCache)).
//!
//! # Threat model
//!
//! Analysts are adversaries: they choose queries, repeat them and run them
//! concurrently. Every answer is an OpenDP release computed on a blocking
//! thread (OpenDP measurements are not `Send`), and it leaves the server only
//! after the store has, in one durable transaction, re-read the analyst's
//! ledger, debited the cost and appended the `DP query answered` entry. Two
//! concurrent queries cannot both spend the last of a budget: the second
//! charge sees the first one's debit and is refused, and its answer is
//! dropped unseen. A refused query spends nothing and stores nothing. No
//! handler returns an exact count or a stored summary of another patient;
//! error messages name fields and parameters, never values. Patients are
//! trusted only with their own summary, which is clamped at query time.

pub(crate) mod admin;
pub(crate) mod cache;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use medrelay_crypto::PrincipalId;
use medrelay_dp::{
    AnalystId, Answer, Budget, Delta, DpError, Epsilon, Ledger, Plan, PrivacyCost, Query, Schema, Summary,
    SummaryDoc, MAX_QUERY_BYTES, MAX_SUMMARY_BYTES,
};
use medrelay_policy::LogEvent;
use medrelay_wire::dp::{
    BudgetStatus, DpAnswer, SchemaInfo, SchemaList, SummaryAction, SummaryReceipt, MAX_SCHEMAS_LISTED,
};
use medrelay_wire::Role;
use tokio::sync::Semaphore;

use crate::log::events;
use crate::store::{decode_summary, encode_summary, LogAppend, Store, StoredSchema};
use crate::{error, ApiError, AppState, Auth, DpCache, PatientAuth};

/// Default deadline of one DP answer, from its arrival: past it the answer
/// is abandoned, nothing is charged, and the analyst gets `503 dp_deadline`.
pub const DEFAULT_DP_DEADLINE: Duration = Duration::from_secs(10);

/// Bounds the DP work of a server so that it can never starve the rest
/// (re-encryption above all).
///
/// OpenDP's exact samplers run on a blocking thread and cannot be
/// interrupted. So, besides the planner's bounds on what one answer may
/// cost (`medrelay_dp::bounds`), at most `slots` answers compute at once
/// (default: half the cores, at least one), and each answer has a
/// `deadline`. A query waits for a slot until its deadline (then `503
/// dp_busy`); past the deadline the request is answered `503 dp_deadline`
/// and the answer, when it comes, is dropped unseen and uncharged. The slot
/// is released only when the computation itself ends, so abandoned work
/// still counts against the bound: however many slow queries arrive, at
/// most `slots` cores compute DP answers and the rest stay free.
#[derive(Debug)]
pub struct DpGate {
    slots: Arc<Semaphore>,
    capacity: usize,
    deadline: Duration,
}

impl DpGate {
    /// At most `slots` concurrent answers (at least one), each with `deadline`.
    pub fn new(slots: usize, deadline: Duration) -> Self {
        let capacity = slots.max(1);
        Self { slots: Arc::new(Semaphore::new(capacity)), capacity, deadline }
    }

    /// Half the available cores, at least one.
    pub fn default_slots() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// Concurrent answers allowed.
    pub fn slots(&self) -> usize {
        self.capacity
    }

    /// Answers computing now (including abandoned ones still running).
    pub fn busy(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// The deadline of one answer.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// Where an answer stands: computing, being charged (past the point of no
/// return), or abandoned at its deadline (never charged).
const COMPUTING: u8 = 0;
const CHARGING: u8 = 1;
const ABANDONED: u8 = 2;

fn past_deadline() -> ApiError {
    ApiError::Unavailable {
        code: "dp_deadline",
        message: "the answer was not ready before its deadline and was abandoned; nothing was spent \
                  (retry later, or ask for less work: fewer bins or candidates, more privacy)",
        retry_after: 5,
    }
}

/// ε of the budget an analyst gets for a schema when the operator has set
/// none (see [`default_dp_budget`]).
pub const DEFAULT_DP_EPSILON: f64 = 1.0;
/// δ of the default budget (the δ at which zCDP spending converts to ε).
pub const DEFAULT_DP_DELTA: f64 = 1e-6;

/// The budget an analyst gets for a schema until the operator sets one with
/// `medrelay-server budget set`: ε = [`DEFAULT_DP_EPSILON`], δ =
/// [`DEFAULT_DP_DELTA`]. It is written into the analyst's ledger on the first
/// answer and from then on never resets (not on restart, not when the
/// server's default changes).
pub fn default_dp_budget() -> Option<Budget> {
    Some(Budget {
        epsilon: Epsilon::new(DEFAULT_DP_EPSILON).ok()?,
        delta: Delta::new(DEFAULT_DP_DELTA).ok()?,
    })
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dp/schemas", web::get().to(list_schemas))
        .route("/dp/schemas/{name}", web::get().to(get_schema))
        .service(
            web::resource("/dp/schemas/{name}/summary")
                .app_data(error::json_config(MAX_SUMMARY_BYTES))
                .route(web::put().to(submit_summary))
                .route(web::get().to(own_summary))
                .route(web::delete().to(withdraw_summary)),
        )
        .service(
            web::resource("/dp/schemas/{name}/query")
                .app_data(error::json_config(MAX_QUERY_BYTES))
                .route(web::post().to(query)),
        )
        .route("/dp/schemas/{name}/budget", web::get().to(budget));
}

/// Checks a schema name from a path: 1-64 characters from `[a-z0-9_-]`
/// (the rule `medrelay_dp::Schema` enforces).
pub(crate) fn check_schema_name(name: &str) -> Result<(), ApiError> {
    if medrelay_dp::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidParameter("schema name must be 1-64 characters from [a-z0-9_-]".into()))
    }
}

fn analyst(auth: Auth) -> Result<PrincipalId, ApiError> {
    if auth.role == Role::Analyst {
        Ok(auth.principal)
    } else {
        Err(ApiError::WrongRole { needed: "analyst" })
    }
}

fn analyst_id(p: &PrincipalId) -> AnalystId {
    AnalystId::from_bytes(*p.as_bytes())
}

/// Maps a dp error to the API: problems with what the client sent are 4xx
/// naming the field; anything else is internal (logged, generic body).
fn dp_error(e: DpError) -> ApiError {
    match e {
        DpError::Query(q) => ApiError::field("query", q),
        DpError::InvalidParameter { name, reason } => ApiError::field("privacy", format!("{name} {reason}")),
        DpError::Summary(s) => ApiError::field("values", s),
        DpError::Overspend(o) => ApiError::BudgetExceeded(o.to_string()),
        DpError::TooLarge { what, limit, .. } => ApiError::field(what, format!("larger than {limit} bytes")),
        DpError::Malformed { what, detail } => ApiError::field(what, detail),
        DpError::Refused(r) => ApiError::PlanRefused(r),
        other => ApiError::Internal(format!("dp: {other}")),
    }
}

fn parse_schema(stored: &StoredSchema) -> Result<Schema, ApiError> {
    Schema::from_json(&stored.json).map_err(|e| ApiError::Internal(format!("stored schema: {e}")))
}

fn schema_info(stored: StoredSchema) -> Result<SchemaInfo, ApiError> {
    let schema = parse_schema(&stored)?;
    let doc = serde_json::from_slice(&stored.json)
        .map_err(|e| ApiError::Internal(format!("stored schema json: {e}")))?;
    Ok(SchemaInfo {
        name: stored.name,
        description: schema.description().to_owned(),
        schema_sha256: hex::encode(stored.sha256),
        schema: doc,
        log_index: stored.log_index,
    })
}

async fn load_schema(state: &AppState, name: &str) -> Result<(StoredSchema, Schema), ApiError> {
    let n = name.to_owned();
    let stored = state.with_store(move |s| s.get_schema(&n)).await?.ok_or(ApiError::NotFound("schema"))?;
    let schema = parse_schema(&stored)?;
    Ok((stored, schema))
}

async fn list_schemas(state: web::Data<AppState>, _auth: Auth) -> Result<HttpResponse, ApiError> {
    let stored = state.with_store(|s| s.list_schemas(MAX_SCHEMAS_LISTED)).await?;
    let schemas = stored.into_iter().map(schema_info).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(SchemaList { schemas }))
}

async fn get_schema(
    state: web::Data<AppState>,
    _auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_schema_name(&name)?;
    let (stored, _) = load_schema(&state, &name).await?;
    Ok(HttpResponse::Ok().json(schema_info(stored)?))
}

async fn submit_summary(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    name: web::Path<String>,
    doc: web::Json<SummaryDoc>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_schema_name(&name)?;
    let (_, schema) = load_schema(&state, &name).await?;
    let summary = Summary::validate(&schema, &doc).map_err(|e| match e {
        medrelay_dp::SummaryError::WrongSchema { .. } => ApiError::field("schema", e),
        other => ApiError::field("values", other),
    })?;
    check_bounds(&schema, &summary)?;
    let json = serde_json::to_vec(&summary.to_doc(&schema))
        .map_err(|e| ApiError::Internal(format!("encoding a summary: {e}")))?;
    let blob = encode_summary(&json);
    let event = events::append(&LogEvent::SummarySubmitted {
        at: state.clock().now(),
        patient,
        schema: name.clone(),
    })?;
    let n = name.clone();
    let cache = Arc::clone(state.dp_cache());
    let (replaced, log_index) = state
        .with_store(move |s| {
            // Bumped on this blocking thread whatever the outcome (see
            // `dp_cache`): visible to every query after the acknowledgement.
            let r = s.put_summary(&n, &patient, &blob, &event);
            cache.invalidate(&n);
            r
        })
        .await?;
    tracing::info!(principal.id = %patient, dp.schema = %name, replaced, "dp summary stored");
    let action = if replaced { SummaryAction::Replaced } else { SummaryAction::Submitted };
    Ok(HttpResponse::Ok().json(SummaryReceipt { schema: name, patient, action, log_index }))
}

/// Refuses numeric values outside the schema's public bounds. Queries would
/// clamp them anyway; refusing tells the patient's client to clamp, so that
/// what is stored is what every query uses. The message names the field and
/// its public bounds, never the value.
fn check_bounds(schema: &Schema, summary: &Summary) -> Result<(), ApiError> {
    for (i, field) in schema.fields().iter().enumerate() {
        let (Some((min, max)), Some(x)) =
            (field.field_type.bounds(), summary.value(i).and_then(medrelay_dp::FieldValue::as_f64))
        else {
            continue;
        };
        if !(min <= x && x <= max) {
            return Err(ApiError::field(
                "values",
                format!(
                    "field {:?}: value is outside the schema's public bounds [{min}, {max}]; clamp it before submitting",
                    field.name
                ),
            ));
        }
    }
    Ok(())
}

async fn own_summary(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_schema_name(&name)?;
    let n = name.clone();
    let blob =
        state.with_store(move |s| s.get_summary(&n, &patient)).await?.ok_or(ApiError::NotFound("summary"))?;
    let doc: SummaryDoc = serde_json::from_slice(decode_summary(&blob)?)
        .map_err(|e| ApiError::Internal(format!("stored summary: {e}")))?;
    Ok(HttpResponse::Ok().json(doc))
}

async fn withdraw_summary(
    state: web::Data<AppState>,
    PatientAuth(patient): PatientAuth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    check_schema_name(&name)?;
    let event = events::append(&LogEvent::SummaryWithdrawn {
        at: state.clock().now(),
        patient,
        schema: name.clone(),
    })?;
    let n = name.clone();
    let cache = Arc::clone(state.dp_cache());
    let log_index = state
        .with_store(move |s| {
            let r = s.delete_summary(&n, &patient, &event);
            cache.invalidate(&n);
            r
        })
        .await?;
    tracing::info!(principal.id = %patient, dp.schema = %name, "dp summary withdrawn");
    Ok(HttpResponse::Ok().json(SummaryReceipt {
        schema: name,
        patient,
        action: SummaryAction::Withdrawn,
        log_index,
    }))
}

/// The budget status a ledger reports.
pub(crate) fn budget_status(analyst: PrincipalId, ledger: &Ledger) -> Result<BudgetStatus, ApiError> {
    let spent = ledger.spent_epsilon().map_err(dp_error)?;
    Ok(BudgetStatus {
        analyst,
        schema: ledger.schema().to_owned(),
        total_epsilon: ledger.budget().epsilon.get(),
        delta: ledger.budget().delta.get(),
        spent_epsilon: spent,
        spent_pure_epsilon: ledger.spent_pure_epsilon(),
        spent_rho: ledger.spent_rho(),
        remaining_epsilon: ledger.remaining_epsilon().map_err(dp_error)?,
        queries: ledger.queries(),
    })
}

/// The analyst's stored ledger, or a fresh one with the default budget.
fn current_ledger(
    store: &dyn Store,
    analyst: &PrincipalId,
    schema: &str,
    default: Option<Budget>,
) -> Result<Ledger, ApiError> {
    match store.get_ledger(analyst, schema)? {
        Some(l) => Ok(l),
        None => {
            let budget = default.ok_or(ApiError::NoBudget)?;
            Ledger::new(analyst_id(analyst), schema, budget).map_err(dp_error)
        }
    }
}

async fn budget(
    state: web::Data<AppState>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let analyst = analyst(auth)?;
    let name = name.into_inner();
    check_schema_name(&name)?;
    load_schema(&state, &name).await?;
    let default = state.dp_default_budget();
    let n = name.clone();
    let store = Arc::clone(state.store());
    let ledger = web::block(move || current_ledger(store.as_ref(), &analyst, &n, default)).await??;
    Ok(HttpResponse::Ok().json(budget_status(analyst, &ledger)?))
}

/// Everything a query does on the blocking pool: refuse early if the
/// stored ledger cannot pay, take the validated summaries (from the
/// [`DpCache`] if no summary of the schema changed since they were loaded,
/// else read and validated from the store), build the OpenDP measurements
/// and release (on a scratch copy of the ledger), then charge the real
/// ledger and log in one durable transaction. Only if that commit succeeds
/// does the answer leave this function.
/// An answer abandoned at its deadline (`fate` no longer `COMPUTING`) is
/// dropped here, before the charge.
fn answer_and_charge(
    store: &dyn Store,
    cache: &DpCache,
    stored: &StoredSchema,
    schema: &Schema,
    q: &QueryJob,
    fate: &AtomicU8,
) -> Result<(Answer, Ledger, u64), ApiError> {
    let name = schema.name();
    let mut scratch = current_ledger(store, &q.analyst, name, q.default)?;
    scratch.check(q.plan.cost()).map_err(dp_error)?;
    let rows = cache.summaries(store, stored, schema)?;
    let answer = medrelay_dp::answer(&q.plan, &rows, &mut scratch).map_err(dp_error)?;
    drop(rows);
    if fate.compare_exchange(COMPUTING, CHARGING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return Err(past_deadline());
    }
    let (ledger, log_index) = store.charge_dp_query(&q.analyst, name, q.default, q.plan.cost(), &q.event)?;
    Ok((answer, ledger, log_index))
}

/// One analyst's planned query, with the log entry its charge appends.
struct QueryJob {
    plan: Plan,
    analyst: PrincipalId,
    default: Option<Budget>,
    event: LogAppend,
}

async fn query(
    state: web::Data<AppState>,
    auth: Auth,
    name: web::Path<String>,
    q: web::Json<Query>,
) -> Result<HttpResponse, ApiError> {
    let analyst = analyst(auth)?;
    let name = name.into_inner();
    check_schema_name(&name)?;
    let arrived = Instant::now();
    let (stored, schema) = load_schema(&state, &name).await?;
    let plan = match medrelay_dp::plan(&schema, &q) {
        Ok(p) => p,
        Err(e) => {
            let e = dp_error(e);
            tracing::info!(principal.id = %analyst, dp.schema = %name, error.code = e.code(), "dp query refused at planning");
            return Err(e);
        }
    };
    let (epsilon, rho) = match plan.cost() {
        PrivacyCost::Epsilon(e) => (e, 0.0),
        PrivacyCost::Rho(r) => (0.0, r),
    };
    let event = events::append(&LogEvent::DpQueryAnswered {
        at: state.clock().now(),
        analyst,
        schema: name.clone(),
        epsilon,
        rho,
    })?;
    let default = state.dp_default_budget();
    let store = Arc::clone(state.store());
    let cache = Arc::clone(state.dp_cache());
    let job = QueryJob { plan, analyst, default, event };
    let result = run_gated(&state, arrived, move |fate| {
        answer_and_charge(store.as_ref(), &cache, &stored, &schema, &job, fate)
    })
    .await;
    let (answer, ledger, log_index) = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(principal.id = %analyst, dp.schema = %name, error.code = e.code(), "dp query refused");
            return Err(e);
        }
    };
    tracing::info!(principal.id = %analyst, dp.schema = %name, dp.epsilon = epsilon, dp.rho = rho, log.index = log_index, "dp query answered");
    let budget = budget_status(analyst, &ledger)?;
    Ok(HttpResponse::Ok().json(DpAnswer { answer, budget, log_index }))
}

/// Runs `work` on the blocking pool in a DP slot, within the deadline
/// counted from `arrived` (see [`DpGate`]). `work` gets the answer's fate
/// and must not charge once it is no longer `COMPUTING`.
async fn run_gated<T: Send + 'static>(
    state: &AppState,
    arrived: Instant,
    work: impl FnOnce(&AtomicU8) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let gate = Arc::clone(state.dp_gate());
    let deadline = arrived + gate.deadline();
    let slot = tokio::time::timeout_at(deadline.into(), Arc::clone(&gate.slots).acquire_owned()).await;
    let Ok(Ok(permit)) = slot else {
        state.metrics().dp_busy();
        return Err(ApiError::Unavailable {
            code: "dp_busy",
            message: "every DP slot stayed busy until this query's deadline; nothing was spent",
            retry_after: 1,
        });
    };
    let fate = Arc::new(AtomicU8::new(COMPUTING));
    let theirs = Arc::clone(&fate);
    let mut task = Box::pin(web::block(move || {
        // Held until the computation ends, even if it was abandoned.
        let _slot = permit;
        work(&theirs)
    }));
    match tokio::time::timeout_at(deadline.into(), &mut task).await {
        Ok(done) => done?,
        Err(_) if fate.compare_exchange(COMPUTING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_ok() => {
            state.metrics().dp_abandoned();
            Err(past_deadline())
        }
        // Already charging: the charge is durable in a moment, and an
        // answer that was paid for is delivered.
        Err(_) => task.await?,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::SledStore;
    use crate::Clock;

    fn state(dir: &std::path::Path, deadline: Duration) -> AppState {
        let key = medrelay_crypto::SigningKey::from_seed(&[3; 32]);
        let signer = medrelay_policy::LogSigner::new("test/log", &key).unwrap();
        AppState::new(SledStore::open(dir).unwrap(), Clock::manual(1), signer).with_dp_limits(1, deadline)
    }

    async fn wait_idle(gate: &DpGate) {
        let until = Instant::now() + Duration::from_secs(10);
        while gate.busy() > 0 {
            assert!(Instant::now() < until, "the slot never came back");
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix_web::test]
    async fn a_full_gate_is_busy_and_a_late_answer_is_never_charged() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path(), Duration::from_millis(100));
        let gate = Arc::clone(state.dp_gate());

        // Every slot taken until the deadline: dp_busy, the work never runs.
        let held = Arc::clone(&gate.slots).try_acquire_owned().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&ran);
        let e = run_gated(&state, Instant::now(), move |_| {
            r.store(true, Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(e.code(), "dp_busy");
        assert!(!ran.load(Ordering::SeqCst));
        drop(held);

        // Work that finishes after the deadline cannot charge: the request
        // was answered dp_deadline, and the slot stays taken until the work
        // really ends.
        let charged = Arc::new(AtomicBool::new(false));
        let c = Arc::clone(&charged);
        let e = run_gated(&state, Instant::now(), move |fate| {
            std::thread::sleep(Duration::from_millis(300));
            if fate.compare_exchange(COMPUTING, CHARGING, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                c.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(e.code(), "dp_deadline");
        assert_eq!(gate.busy(), 1, "the abandoned work still holds its slot");
        wait_idle(&gate).await;
        assert!(!charged.load(Ordering::SeqCst), "an abandoned answer was charged");

        // In time: answered, and the slot is free again.
        let v = run_gated(&state, Instant::now(), |fate| {
            assert!(fate.compare_exchange(COMPUTING, CHARGING, Ordering::SeqCst, Ordering::SeqCst).is_ok());
            Ok(7)
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
        wait_idle(&gate).await;
    }
}
