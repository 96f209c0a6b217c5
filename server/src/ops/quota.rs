//! Quotas: rate limits per source address, per principal and overall,
//! answered with `429 rate_limited` and a `Retry-After` header.
//!
//! | quota | keyed by | applies to | default |
//! | --- | --- | --- | --- |
//! | registrations per source | source address | `POST /v1/principals` | 10/h |
//! | registrations overall | — | `POST /v1/principals` | 300/h |
//! | logins per source | source address | `POST /v1/auth/challenge`, `POST /v1/auth/token` | 120/min |
//! | requests per principal | authenticated principal | every bearer-authenticated request | 1200/min |
//!
//! Each quota is a token bucket: `N/period` allows a burst of N and refills
//! N per period. A refused request costs a hash lookup: it is answered
//! before its body is read and before anything touches the store.
//!
//! # Threat model
//!
//! Anonymous registration stores ~0.9 MiB (a patient's eight PRE public
//! keys) and a login challenge is a store write, so both were free disk
//! for anyone (20 registrations in 5 s, 3,400 challenges/s). The per-source
//! quotas bound one address; the overall registration quota bounds what
//! many addresses together can add (300/h ≈ 260 MiB/h at most), at the
//! price that a flood can delay legitimate registrations (they get 429 and
//! `Retry-After`, never an error that changes state). Challenges are no
//! longer flushed on their own (see `Store::put_challenge`) and expire in
//! two minutes, so what one address can leave on disk is bounded too.
//!
//! The source is the TCP peer address, IPv6 grouped by /64 (one host owns a
//! whole /64). Behind a reverse proxy every client shares the proxy's
//! address: raise the per-source quotas there and rate-limit at the proxy.
//! Requests with no peer address (the in-process test harness, never a TCP
//! connection) are not limited per source.
//!
//! State lives in memory only and is bounded whatever the attacker sends:
//! each keyed limiter holds at most [`MAX_TRACKED_KEYS`] buckets in two
//! generations; when the current generation is full it becomes the old one
//! and the previous old one is dropped (a dropped bucket is as if full
//! again, so an attacker must cycle through ~65,000 addresses to reset its
//! own, and the overall quota still holds).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError as _};
use medrelay_crypto::PrincipalId;

use crate::{ApiError, AppState};

/// Most buckets one keyed limiter keeps (two generations of half each).
pub const MAX_TRACKED_KEYS: usize = 131_072;

/// A rate: a burst of `count` requests, refilled at `count` per `period`,
/// or no limit. Written `N/s`, `N/min`, `N/h`, `N/d`, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    /// At most `count` per `period_secs`.
    Per {
        /// Burst and refill per period (at least 1).
        count: u32,
        /// The period in seconds (at least 1).
        period_secs: u32,
    },
}

impl Rate {
    /// `count` per `period_secs` (both at least 1), else `None`.
    pub fn per(count: u32, period_secs: u32) -> Option<Self> {
        (count > 0 && period_secs > 0).then_some(Rate::Per { count, period_secs })
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Rate::Off);
        }
        let bad = || format!("{s:?}: expected N/s, N/min, N/h, N/d (N >= 1) or off");
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let period_secs = match unit.trim() {
            "s" => 1,
            "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        Rate::per(count, period_secs).ok_or_else(bad)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Off => f.write_str("off"),
            Rate::Per { count, period_secs } => {
                let unit = match period_secs {
                    1 => "s".to_owned(),
                    60 => "min".to_owned(),
                    3600 => "h".to_owned(),
                    86_400 => "d".to_owned(),
                    other => return write!(f, "{count} per {other} s"),
                };
                write!(f, "{count}/{unit}")
            }
        }
    }
}

/// The configurable quotas (see the module documentation for what each
/// one covers and why).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Registrations per source address.
    pub register_per_source: Rate,
    /// Registrations overall.
    pub register_total: Rate,
    /// Login challenges and token requests per source address.
    pub login_per_source: Rate,
    /// Requests per authenticated principal.
    pub requests_per_principal: Rate,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            register_per_source: Rate::Per { count: 10, period_secs: 3600 },
            register_total: Rate::Per { count: 300, period_secs: 3600 },
            login_per_source: Rate::Per { count: 120, period_secs: 60 },
            requests_per_principal: Rate::Per { count: 1200, period_secs: 60 },
        }
    }
}

impl Quotas {
    /// No quota at all (benchmarks of raw throughput).
    pub fn off() -> Self {
        Self {
            register_per_source: Rate::Off,
            register_total: Rate::Off,
            login_per_source: Rate::Off,
            requests_per_principal: Rate::Off,
        }
    }
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(count: u32, now: Instant) -> Self {
        Self { tokens: f64::from(count), at: now }
    }

    /// Takes one token, or says in how many seconds one will be there.
    fn take(&mut self, count: u32, period_secs: u32, now: Instant) -> Result<(), u64> {
        let per_sec = f64::from(count) / f64::from(period_secs);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(count));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "at most one period")]
            let wait = ((1.0 - self.tokens) / per_sec).ceil().max(1.0) as u64;
            Err(wait)
        }
    }
}

/// Buckets per key, bounded (two generations).
#[derive(Debug)]
struct Keyed<K> {
    current: HashMap<K, Bucket>,
    old: HashMap<K, Bucket>,
}

/// A rate limiter per key with bounded memory.
#[derive(Debug)]
pub(crate) struct KeyedLimiter<K> {
    rate: Rate,
    half: usize,
    inner: Mutex<Keyed<K>>,
}

impl<K: Hash + Eq + Copy> KeyedLimiter<K> {
    fn new(rate: Rate, max_keys: usize) -> Self {
        let half = (max_keys / 2).max(1);
        Self { rate, half, inner: Mutex::new(Keyed { current: HashMap::new(), old: HashMap::new() }) }
    }

    /// Counts one request of `key` at `now`; `Err(seconds)` if over quota.
    pub(crate) fn check(&self, key: K, now: Instant) -> Result<(), u64> {
        let Rate::Per { count, period_secs } = self.rate else {
            return Ok(());
        };
        // A poisoned lock only means another thread panicked mid-update of
        // a bucket; the buckets stay usable.
        let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let g = &mut *g;
        if !g.current.contains_key(&key) {
            let bucket = g.old.remove(&key).unwrap_or_else(|| Bucket::full(count, now));
            if g.current.len() >= self.half {
                g.old = std::mem::take(&mut g.current);
            }
            g.current.insert(key, bucket);
        }
        match g.current.get_mut(&key) {
            Some(b) => b.take(count, period_secs, now),
            None => Ok(()),
        }
    }

    /// Buckets held (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.current.len() + g.old.len()
    }
}

/// One bucket for everybody.
#[derive(Debug)]
struct GlobalLimiter {
    rate: Rate,
    bucket: Mutex<Option<Bucket>>,
}

impl GlobalLimiter {
    fn check(&self, now: Instant) -> Result<(), u64> {
        let Rate::Per { count, period_secs } = self.rate else {
            return Ok(());
        };
        let mut g = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.get_or_insert_with(|| Bucket::full(count, now)).take(count, period_secs, now)
    }
}

/// The running limiters of one server.
#[derive(Debug)]
pub struct Limiters {
    quotas: Quotas,
    register_source: KeyedLimiter<IpAddr>,
    register_total: GlobalLimiter,
    login_source: KeyedLimiter<IpAddr>,
    principal: KeyedLimiter<PrincipalId>,
    /// When a refusal of each suspended principal was last logged.
    suspended_logged: Mutex<HashMap<PrincipalId, Instant>>,
}

/// A suspended principal's refusals are logged at most this often.
pub const SUSPENDED_LOG_INTERVAL: Duration = Duration::from_secs(60);

impl Limiters {
    /// Fresh limiters for `quotas`.
    pub fn new(quotas: Quotas) -> Self {
        Self {
            quotas,
            register_source: KeyedLimiter::new(quotas.register_per_source, MAX_TRACKED_KEYS),
            register_total: GlobalLimiter { rate: quotas.register_total, bucket: Mutex::new(None) },
            login_source: KeyedLimiter::new(quotas.login_per_source, MAX_TRACKED_KEYS),
            principal: KeyedLimiter::new(quotas.requests_per_principal, MAX_TRACKED_KEYS),
            suspended_logged: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log (in the audit log) this refusal of `principal`, which
    /// the store says is suspended: yes unless one was logged in the last
    /// [`SUSPENDED_LOG_INTERVAL`]. Only suspended principals (chosen by the
    /// operator) are keys here, never attacker input; the map is cleared
    /// if it ever passes [`MAX_TRACKED_KEYS`] all the same.
    pub(crate) fn log_suspended_refusal(&self, principal: PrincipalId, now: Instant) -> bool {
        let mut g = self.suspended_logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.len() >= MAX_TRACKED_KEYS {
            g.clear();
        }
        match g.get(&principal) {
            Some(last) if now.saturating_duration_since(*last) < SUSPENDED_LOG_INTERVAL => false,
            _ => {
                g.insert(principal, now);
                true
            }
        }
    }

    /// The quotas enforced.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Counts one authenticated request of `principal`.
    pub(crate) fn principal(&self, principal: PrincipalId) -> Result<(), ApiError> {
        self.principal
            .check(principal, Instant::now())
            .map_err(|retry_after| ApiError::RateLimited { quota: "requests per principal", retry_after })
    }
}

/// The rate-limit key of a peer address: IPv4 as is (and IPv4-mapped IPv6
/// as IPv4), other IPv6 by its /64 prefix.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// Middleware: the anonymous quotas (registration, login), checked before
/// the body is read or the store touched.
pub(crate) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.method() == Method::POST {
        let class = match req.match_pattern().as_deref() {
            Some("/v1/principals") => Some(true),
            Some("/v1/auth/challenge" | "/v1/auth/token") => Some(false),
            _ => None,
        };
        if let (Some(register), Some(state)) = (class, req.app_data::<web::Data<AppState>>()) {
            let l = state.limiters();
            let now = Instant::now();
            let source = req.peer_addr().map(|a| source_key(a.ip()));
            let verdict = if register {
                source
                    .map_or(Ok(()), |s| l.register_source.check(s, now))
                    .map_err(|s| ("registrations per source address", s))
                    .and_then(|()| l.register_total.check(now).map_err(|s| ("registrations overall", s)))
            } else {
                source
                    .map_or(Ok(()), |s| l.login_source.check(s, now))
                    .map_err(|s| ("logins per source address", s))
            };
            if let Err((quota, retry_after)) = verdict {
                state.metrics().rate_limited();
                tracing::info!(quota, retry_after, "rate limited");
                let answer = ApiError::RateLimited { quota, retry_after }.error_response();
                return Ok(req.into_response(answer).map_into_right_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!("10/h".parse::<Rate>().unwrap(), Rate::Per { count: 10, period_secs: 3600 });
        assert_eq!("120/min".parse::<Rate>().unwrap(), Rate::Per { count: 120, period_secs: 60 });
        assert_eq!("off".parse::<Rate>().unwrap(), Rate::Off);
        for bad in ["", "10", "0/h", "-1/h", "10/week", "x/s", "10/"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        for s in ["10/h", "120/min", "5/s", "3/d", "off"] {
            assert_eq!(s.parse::<Rate>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = KeyedLimiter::new(Rate::per(3, 60).unwrap(), 16);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check(1u8, t0).unwrap();
        }
        // One token every 20 s: the fourth waits 20 s.
        assert_eq!(l.check(1u8, t0), Err(20));
        assert_eq!(l.check(1u8, t0 + Duration::from_secs(5)), Err(15));
        l.check(1u8, t0 + Duration::from_secs(20)).unwrap();
        // Other keys are unaffected; `off` never limits.
        l.check(2u8, t0).unwrap();
        let off = KeyedLimiter::new(Rate::Off, 16);
        for _ in 0..1000 {
            off.check(1u8, t0).unwrap();
        }
    }

    #[test]
    fn keyed_state_stays_bounded_under_many_keys() {
        let l = KeyedLimiter::new(Rate::per(1, 3600).unwrap(), 1000);
        let t0 = Instant::now();
        for k in 0..100_000u32 {
            l.check(k, t0).unwrap();
            assert!(l.tracked() <= 1000);
        }
        // A recent key is still limited.
        assert!(l.check(99_999u32, t0).is_err());
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
