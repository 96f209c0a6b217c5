//! Request metrics (Prometheus text format) and the health check.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use medrelay_wire::Health;

use crate::{ApiError, AppState};

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
struct RouteStats {
    count: u64,
    sum_secs: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route pattern, status) → count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, RouteStats>>,
    reencryptions: AtomicU64,
    denials: AtomicU64,
    refusals: AtomicU64,
    coalesced: AtomicU64,
    rekey_cache_hits: AtomicU64,
    rekey_cache_misses: AtomicU64,
    expired_removed: AtomicU64,
    rate_limited: AtomicU64,
    body_timeouts: AtomicU64,
    dp_abandoned: AtomicU64,
    dp_busy: AtomicU64,
    suspended_refusals: AtomicU64,
}

impl Metrics {
    fn observe(&self, route: &str, status: u16, secs: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let s = m.entry(route.to_owned()).or_default();
            s.count += 1;
            s.sum_secs += secs;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    s.buckets[i] += 1;
                }
            }
        }
    }

    /// Counts one re-encryption served.
    pub fn reencryption_served(&self) {
        self.reencryptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one access denied.
    pub fn access_denied(&self) {
        self.denials.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused submission (logged as `request refused`).
    pub fn request_refused(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refusal counted into an open coalescing window instead
    /// of being logged on its own.
    pub fn refusal_coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one re-encryption key lookup answered from memory (`hit`) or
    /// decoded from the store.
    pub fn rekey_cache_lookup(&self, hit: bool) {
        let c = if hit { &self.rekey_cache_hits } else { &self.rekey_cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts expired sessions, challenges and enrollment tokens removed.
    pub fn expired_removed(&self, n: u64) {
        self.expired_removed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one request refused by a quota (429).
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request cut off because its body did not arrive in time.
    pub fn body_timeout(&self) {
        self.body_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one DP answer abandoned at its deadline (nothing charged).
    pub fn dp_abandoned(&self) {
        self.dp_abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one DP query refused because every DP slot stayed busy.
    pub fn dp_busy(&self) {
        self.dp_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request of a suspended principal refused.
    pub fn suspended_refusal(&self) {
        self.suspended_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP medrelay_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE medrelay_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "medrelay_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP medrelay_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE medrelay_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, s) in m.iter() {
                for (b, n) in BUCKETS.iter().zip(s.buckets) {
                    let _ = writeln!(
                        out,
                        "medrelay_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "medrelay_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    s.count
                );
                let _ = writeln!(
                    out,
                    "medrelay_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    s.sum_secs
                );
                let _ = writeln!(
                    out,
                    "medrelay_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    s.count
                );
            }
        }
        out.push_str("# HELP medrelay_reencryptions_total Re-encryptions served.\n");
        out.push_str("# TYPE medrelay_reencryptions_total counter\n");
        let _ = writeln!(out, "medrelay_reencryptions_total {}", self.reencryptions.load(Ordering::Relaxed));
        out.push_str("# HELP medrelay_access_denials_total Record reads (re-encryption, envelope) denied.\n");
        out.push_str("# TYPE medrelay_access_denials_total counter\n");
        let _ = writeln!(out, "medrelay_access_denials_total {}", self.denials.load(Ordering::Relaxed));
        let counters = [
            (
                "medrelay_requests_refused_total",
                "Requests refused: bad signature or owner, not entitled, wrong role, no grant in force (logged, coalesced).",
                &self.refusals,
            ),
            (
                "medrelay_refusals_coalesced_total",
                "Refusals counted into an open coalescing window instead of an entry of their own.",
                &self.coalesced,
            ),
            (
                "medrelay_rekey_cache_hits_total",
                "Re-encryption keys found prepared in memory.",
                &self.rekey_cache_hits,
            ),
            (
                "medrelay_rekey_cache_misses_total",
                "Re-encryption keys decoded from the store.",
                &self.rekey_cache_misses,
            ),
            (
                "medrelay_expired_removed_total",
                "Expired sessions, challenges and enrollment tokens removed.",
                &self.expired_removed,
            ),
            ("medrelay_rate_limited_total", "Requests refused by a quota (429).", &self.rate_limited),
            (
                "medrelay_body_timeouts_total",
                "Requests cut off because the body did not arrive in time (408).",
                &self.body_timeouts,
            ),
            (
                "medrelay_dp_abandoned_total",
                "DP answers abandoned at their deadline, nothing charged.",
                &self.dp_abandoned,
            ),
            (
                "medrelay_dp_busy_total",
                "DP queries refused because every DP slot stayed busy.",
                &self.dp_busy,
            ),
            (
                "medrelay_suspended_refusals_total",
                "Requests of suspended principals refused.",
                &self.suspended_refusals,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Middleware: counts every request by matched route pattern (never the raw
/// path, which holds ids) and status, and records its latency.
pub(crate) async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await;
    if let Some(state) = state {
        let status = match &res {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        state.metrics().observe(&route, status, start.elapsed().as_secs_f64());
    }
    res
}

pub(crate) async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let log_size = state.with_store(|s| s.log_size()).await?;
    Ok(HttpResponse::Ok().json(Health { status: "ok".into(), log_size }))
}

pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.metrics().render();
    let cache = state.rekey_cache();
    let _ = writeln!(
        body,
        "# HELP medrelay_rekey_cache_keys Re-encryption keys held in memory.\n# TYPE medrelay_rekey_cache_keys gauge\nmedrelay_rekey_cache_keys {}\n# HELP medrelay_rekey_cache_capacity_keys Capacity of the re-encryption key cache.\n# TYPE medrelay_rekey_cache_capacity_keys gauge\nmedrelay_rekey_cache_capacity_keys {}",
        cache.len(),
        cache.capacity()
    );
    let dp = state.dp_cache();
    let _ = writeln!(
        body,
        "# HELP medrelay_dp_cache_rows Validated DP summaries held in memory.\n# TYPE medrelay_dp_cache_rows gauge\nmedrelay_dp_cache_rows {}\n# HELP medrelay_dp_cache_capacity_rows Capacity of the DP summary cache.\n# TYPE medrelay_dp_cache_capacity_rows gauge\nmedrelay_dp_cache_capacity_rows {}\n# HELP medrelay_dp_cache_loads_total DP summary loads from the store (cache misses).\n# TYPE medrelay_dp_cache_loads_total counter\nmedrelay_dp_cache_loads_total {}",
        dp.rows(),
        dp.capacity(),
        dp.loads()
    );
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
