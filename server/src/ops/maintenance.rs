//! Periodic maintenance: removes expired bearer-token sessions,
//! authentication challenges and enrollment tokens from the store, drops
//! expired grants' keys from the re-encryption key cache, and gives back
//! the store's unreferenced space (`Store::reclaim_space`).
//!
//! # Threat model
//!
//! Expired secrets are already refused on use (every lookup compares the
//! expiry with the clock), so the sweep is about not keeping what is no
//! longer needed: it bounds the store's session and challenge tables by the
//! logins of one token lifetime instead of all time, and keeps stale token
//! hashes out of backups. Challenges that were never answered (anyone may
//! ask for one for a registered principal) are bounded the same way: each
//! lives at most `CHALLENGE_TTL_SECS` plus one sweep interval.

use std::time::Duration;

use crate::store::Swept;
use crate::{ApiError, AppState};

/// Default time between two sweeps.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// One sweep, now: removes every session, challenge and enrollment token
/// that has expired by the state's clock, drops expired grants' keys from
/// the re-encryption key cache, and writes the counts of refusal windows
/// that have ended (see [`RefusalCoalescer`](crate::RefusalCoalescer)). Returns what the store removed.
pub async fn sweep_expired(state: &AppState) -> Result<Swept, ApiError> {
    let coalesced = crate::log::refusals::flush_closed(state).await?;
    if coalesced > 0 {
        tracing::info!(entries = coalesced, "coalesced refusals logged");
    }
    let now = state.clock().now();
    let swept = state.with_store(move |s| s.remove_expired(now)).await?;
    let grants = state.rekey_cache().0.evict_expired(now);
    // Space no longer referenced (a revoked grant's keys): given back once
    // there is enough of it (sled); a failure is logged, not fatal.
    match state.with_store(|s| s.reclaim_space()).await {
        Ok(0) => {}
        Ok(bytes) => tracing::info!(bytes, "store space reclaimed"),
        Err(e) => tracing::warn!(error = ?e, "reclaiming store space failed"),
    }
    state.metrics().expired_removed(swept.total());
    if swept.total() > 0 || grants > 0 {
        tracing::info!(
            sessions = swept.sessions,
            challenges = swept.challenges,
            enrollments = swept.enrollments,
            cached_grants = grants,
            "expired entries removed"
        );
    }
    Ok(swept)
}

/// Spawns [`sweep_expired`] every `every` on the current actix runtime (the
/// first run after one interval). Stops with the runtime. A failed sweep is
/// logged and retried at the next interval.
pub fn spawn_sweeper(state: AppState, every: Duration) -> actix_web::rt::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(e) = sweep_expired(&state).await {
                tracing::warn!(error = ?e, "expiry sweep failed");
            }
        }
    })
}
