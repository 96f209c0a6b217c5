//! Private studies: the two aggregators of `medrelay_dp::study`.
//!
//! `serve --aggregator leader` adds, beside the whole medrelay API, the
//! study routes under `/v1/studies` (patients upload encrypted reports,
//! analysts release batches) and a driver that prepares pending reports
//! with the helper in jobs of up to [`JOB_REPORTS`]. `serve --aggregator
//! helper` serves only `/healthz` and `/v1/aggregator/…`, which answer only
//! requests that carry the token the two operators share.
//!
//! # Threat model
//!
//! Each aggregator sees only its own share of every report (uniformly
//! random alone), the public share, report ids and times, and counts; the
//! leader also sees which patient uploaded how many reports. A summary is
//! exposed only if both aggregators collude. A dishonest aggregator cannot
//! break the DP of a release: each adds noise for the whole ε (ρ) to its
//! aggregate share before it leaves, and the leader's release is logged
//! with its cost, durably, before the helper is even asked. A batch is
//! released at most once (the helper keeps its noisy share and answers a
//! retry with the same bytes, never with fresh noise) and only when both
//! aggregators count at least the minimum and agree on the count and on a
//! checksum of the report ids, so neither can release a partial or padded
//! batch alone. Every report id is aggregated at most once per aggregator.
//! Bad input (malformed reports, undecryptable or wrong-length shares,
//! failed proofs, replays, reports outside the window, unknown studies,
//! released batches) gets a typed refusal and is counted in the log; it
//! never reaches an aggregate.

mod admin;
mod driver;
mod helper;
mod keys;
mod leader;
mod protocol;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError as _};
use medrelay_crypto::hpke::HpkeSecretKey;
use medrelay_dp::study::{AggregatorRole, StudyDefinition, StudyEncoding, StudyNoise, StudyVdaf};
use medrelay_dp::Schema;
use zeroize::Zeroizing;

use crate::store::{StoreError, StoredStudy, StudyStore};
use crate::{ApiError, AppState};

pub use admin::{add_study, add_study_in, aggregator_key_json, list_studies};
pub use keys::{create_aggregator_key, load_aggregator_key, AggregatorToken, MIN_TOKEN_LEN};

/// Most reports in one preparation job (leader → helper).
pub const JOB_REPORTS: usize = 1000;
/// How often the leader's driver looks for pending reports.
pub const DRIVER_INTERVAL: Duration = Duration::from_millis(200);

/// This server's part in private studies.
#[derive(Clone, Debug)]
pub enum AggregatorConfig {
    /// The leader: talks to the helper at `helper_url` with `token`.
    Leader {
        /// The helper's base URL (`http://` or `https://`).
        helper_url: String,
        /// The secret shared with the helper.
        token: AggregatorToken,
    },
    /// The helper: accepts only the leader's `token`.
    Helper {
        /// The secret shared with the leader.
        token: AggregatorToken,
    },
}

/// A study ready to use: definition, encoding, Prio3, noise and key.
pub(crate) struct LoadedStudy {
    pub(crate) stored: StoredStudy,
    pub(crate) def: StudyDefinition,
    pub(crate) encoding: StudyEncoding,
    pub(crate) vdaf: StudyVdaf,
    pub(crate) noise: StudyNoise,
    pub(crate) verify_key: Zeroizing<[u8; 32]>,
}

impl LoadedStudy {
    /// A job's aggregate share, encoded, and the encoded empty aggregate a
    /// batch starts from.
    pub(crate) fn encoded_delta(
        &self,
        aggregate: &medrelay_dp::study::AggregateShares,
    ) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
        let internal = |e: medrelay_dp::study::StudyError| ApiError::Internal(e.to_string());
        let delta = self.vdaf.encode_aggregate(aggregate).map_err(internal)?;
        let empty = self.vdaf.encode_aggregate(&self.vdaf.aggregate_init()).map_err(internal)?;
        Ok((delta, empty))
    }

    /// `current` (a batch's encoded aggregate) with the encoded `delta`
    /// added: what a job's commit stores.
    pub(crate) fn merge_encoded(&self, current: &[u8], delta: &[u8]) -> Result<Vec<u8>, StoreError> {
        let bad = |e: medrelay_dp::study::StudyError| StoreError::Backend(format!("aggregate: {e}"));
        let mut a = self.vdaf.decode_aggregate(current).map_err(bad)?;
        let d = self.vdaf.decode_aggregate(delta).map_err(bad)?;
        self.vdaf.merge(&mut a, &d).map_err(bad)?;
        self.vdaf.encode_aggregate(&a).map_err(bad)
    }
}

impl std::fmt::Debug for LoadedStudy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedStudy").field("name", &self.stored.name).finish_non_exhaustive()
    }
}

/// The study service of one aggregator.
pub struct StudyService {
    role: AggregatorRole,
    store: Arc<dyn StudyStore>,
    hpke: HpkeSecretKey,
    token: AggregatorToken,
    helper: Option<driver::HelperClient>,
    loaded: Mutex<HashMap<String, Arc<LoadedStudy>>>,
    /// Serializes the leader's preparation jobs and releases.
    work: Mutex<()>,
}

impl std::fmt::Debug for StudyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudyService").field("role", &self.role).finish_non_exhaustive()
    }
}

impl StudyService {
    /// The service for `config`, over `store` (the server's own database),
    /// decrypting with `hpke`.
    pub fn new(
        config: AggregatorConfig,
        store: Arc<dyn StudyStore>,
        hpke: HpkeSecretKey,
    ) -> Result<Self, crate::ServeError> {
        let (role, token, helper) = match config {
            AggregatorConfig::Leader { helper_url, token } => {
                let client = driver::HelperClient::new(&helper_url, token.clone())?;
                (AggregatorRole::Leader, token, Some(client))
            }
            AggregatorConfig::Helper { token } => (AggregatorRole::Helper, token, None),
        };
        Ok(Self {
            role,
            store,
            hpke,
            token,
            helper,
            loaded: Mutex::new(HashMap::new()),
            work: Mutex::new(()),
        })
    }

    /// Leader or helper.
    pub fn role(&self) -> AggregatorRole {
        self.role
    }

    /// Installs a study on this running aggregator (what `study add` does
    /// with the server stopped), over the server's own `schemas` store.
    pub fn install(
        &self,
        schemas: &dyn crate::store::Store,
        bytes: &[u8],
        clock: &crate::Clock,
    ) -> Result<(StoredStudy, AggregatorRole), crate::ServeError> {
        admin::add_study_in(schemas, self.store.as_ref(), &self.hpke.public_key(), bytes, clock)
    }

    /// This aggregator's HPKE public key.
    pub fn hpke_public_key(&self) -> medrelay_crypto::hpke::HpkePublicKey {
        self.hpke.public_key()
    }

    pub(crate) fn store(&self) -> &Arc<dyn StudyStore> {
        &self.store
    }

    pub(crate) fn work(&self) -> Result<MutexGuard<'_, ()>, ApiError> {
        self.work.lock().map_err(|_| ApiError::Internal("study work lock poisoned".into()))
    }

    /// The study `name` if this aggregator serves it (in its role), loaded
    /// once. `None`: not installed here or installed for the other role.
    pub(crate) fn load(
        &self,
        schemas: &dyn crate::store::Store,
        name: &str,
    ) -> Result<Option<Arc<LoadedStudy>>, ApiError> {
        if let Some(l) =
            self.loaded.lock().map_err(|_| ApiError::Internal("study cache poisoned".into()))?.get(name)
        {
            return Ok(Some(Arc::clone(l)));
        }
        let Some(stored) = self.store.get_study(name)? else { return Ok(None) };
        let def = StudyDefinition::from_json(&stored.json)
            .map_err(|e| ApiError::Internal(format!("stored study: {e}")))?;
        let own = *self.hpke.public_key().as_bytes();
        let slot = match self.role {
            AggregatorRole::Leader => &def.aggregators().leader,
            AggregatorRole::Helper => &def.aggregators().helper,
        };
        if slot.public_key_bytes().ok() != Some(own) {
            return Ok(None);
        }
        let schema_row = schemas
            .get_schema(def.schema())?
            .ok_or(ApiError::Internal("a study's schema is missing".into()))?;
        let schema = Schema::from_json(&schema_row.json)
            .map_err(|e| ApiError::Internal(format!("stored schema: {e}")))?;
        let encoding = StudyEncoding::new(&schema, &def)
            .map_err(|e| ApiError::Internal(format!("stored study: {e}")))?;
        let vdaf = StudyVdaf::new(&encoding).map_err(|e| ApiError::Internal(format!("study Prio3: {e}")))?;
        let noise =
            StudyNoise::plan(&encoding).map_err(|e| ApiError::Internal(format!("study noise: {e}")))?;
        let verify_key = self.token.verify_key(encoding.study_sha256());
        let loaded = Arc::new(LoadedStudy { stored, def, encoding, vdaf, noise, verify_key });
        self.loaded
            .lock()
            .map_err(|_| ApiError::Internal("study cache poisoned".into()))?
            .insert(name.to_owned(), Arc::clone(&loaded));
        Ok(Some(loaded))
    }
}

/// `f` over `items` on up to as many threads as the machine has cores (at
/// most 8), in order. Preparation is CPU-bound and independent per report.
pub(crate) fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 8);
    if threads == 1 || items.len() < 32 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<U>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// Checks a study name from a path: 1-64 characters from `[a-z0-9_-]`.
pub(crate) fn check_study_name(name: &str) -> Result<(), ApiError> {
    if medrelay_dp::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidParameter("study name must be 1-64 characters from [a-z0-9_-]".into()))
    }
}

/// The routes of both roles under `/v1` (each answers `not_found` on a
/// server that does not play its role).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    leader::routes(cfg);
    helper::routes(cfg);
}

/// A helper serves nothing but `/healthz` and `/v1/aggregator/…`.
pub(crate) async fn mode_filter(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let helper = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.study_service())
        .is_some_and(|s| s.role() == AggregatorRole::Helper);
    let path = req.path();
    if helper && path != "/healthz" && !path.starts_with("/v1/aggregator/") {
        let resp = ApiError::NotFound("route").error_response();
        return Ok(req.into_response(resp).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Starts the leader's preparation driver on the current actix system
/// (nothing for a helper or a server without studies).
pub fn spawn_driver(state: AppState) -> Option<actix_web::rt::task::JoinHandle<()>> {
    let svc = state.study_service()?;
    if svc.role() != AggregatorRole::Leader {
        return None;
    }
    Some(actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(DRIVER_INTERVAL);
        loop {
            ticker.tick().await;
            let st = state.clone();
            match web::block(move || driver::drive_all(&st)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "study preparation: will retry"),
                Err(e) => tracing::error!(error = %e, "study preparation task failed"),
            }
        }
    }))
}
