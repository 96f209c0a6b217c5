//! Every refusal on the record, without letting refusals flood it.
//!
//! Every request an authenticated principal is refused (another principal's
//! object, the wrong role, an expired or revoked grant, a bad signature) is
//! a `request refused` or `access denied` log entry that names the
//! principal, what was asked for and why. Repeating one refusal must not
//! grow the log (and the history of the patient it names) without bound, so
//! identical refusals are coalesced per time window:
//!
//! - two refusals are *identical* when their events are equal except for
//!   the time and the count: same principal, same object, same reason (and
//!   for an access denial the same record and patient);
//! - the first refusal of a kind is appended at once, durably, before the
//!   answer is sent (count 1), and opens a window of
//!   [`REFUSAL_WINDOW_SECS`] seconds on the server's clock;
//! - identical refusals inside the window are answered the same way but only
//!   counted, in memory;
//! - when the window has ended, its count (if any) is appended as one entry
//!   with `count` = the number of refusals it stands for and `at` = the last
//!   of them. Closed windows are written by the next refusal, by the
//!   periodic sweep ([`crate::sweep_expired`]) and at shutdown;
//! - so one kind of refusal adds at most two entries per window however
//!   often it is repeated (64 copies in one batch are refused earlier, as a
//!   request error).
//!
//! At most [`MAX_OPEN_WINDOWS`] windows are open; when they are all in use,
//! a new kind of refusal is logged at once without a window (coalescing is
//! an economy, never a reason to drop an entry). The one loss: counts not
//! yet written when the process dies (a crash, not a shutdown) are lost;
//! the first refusal of each window is always on disk.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, ResponseError as _};
use medrelay_crypto::Timestamp;
use medrelay_policy::{LogEvent, Operation, RefusalReason, RefusedObject};

use crate::log::events;
use crate::policy::auth::Auth;
use crate::store::{Store, StoreError};
use crate::{ApiError, AppState};

/// Default length of a coalescing window, in seconds.
pub const REFUSAL_WINDOW_SECS: u64 = 60;
/// Most coalescing windows open at once.
pub const MAX_OPEN_WINDOWS: usize = 10_000;

#[derive(Debug)]
struct Window {
    opened: Timestamp,
    last: Timestamp,
    /// Refusals counted since the logged first one.
    pending: u32,
    /// The first refusal (count 1).
    event: LogEvent,
}

/// What [`RefusalCoalescer::observe`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Observed {
    /// Log this refusal now.
    First,
    /// Counted in an open window; nothing to write now.
    Counted,
}

/// The open coalescing windows (see the module docs).
#[derive(Debug)]
pub struct RefusalCoalescer {
    window_secs: u64,
    open: Mutex<HashMap<Vec<u8>, Window>>,
}

impl RefusalCoalescer {
    /// Windows of `window_secs` seconds (0: no coalescing, every refusal is
    /// logged).
    pub fn new(window_secs: u64) -> Self {
        Self { window_secs, open: Mutex::new(HashMap::new()) }
    }

    /// The window length, in seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Windows open now.
    pub fn open_windows(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The identity of a refusal: its encoding with time and count fixed.
    fn identity(event: &LogEvent) -> Option<Vec<u8>> {
        let normal = match event.clone() {
            LogEvent::AccessDenied { doctor, record, patient, reason, .. } => {
                LogEvent::AccessDenied { at: Timestamp(0), doctor, record, patient, reason, count: 1 }
            }
            LogEvent::RequestRefused { principal, what, reason, .. } => {
                LogEvent::RequestRefused { at: Timestamp(0), principal, what, reason, count: 1 }
            }
            _ => return None,
        };
        normal.to_bytes().ok()
    }

    /// Takes the windows that ended by `now` (their coalesced entries are
    /// returned, to be written first), then counts `event` in its open
    /// window or opens one for it. One lock, one `now`: no count is lost
    /// between closing a window and reopening it.
    fn observe(&self, event: &LogEvent, now: Timestamp) -> (Observed, Vec<LogEvent>) {
        let Ok(mut open) = self.open.lock() else { return (Observed::First, Vec::new()) };
        let closed = self.take_closed_in(&mut open, Some(now));
        let Some(key) = Self::identity(event) else { return (Observed::First, closed) };
        if self.window_secs == 0 {
            return (Observed::First, closed);
        }
        if let Some(w) = open.get_mut(&key) {
            w.pending = w.pending.saturating_add(1);
            w.last = w.last.max(now);
            return (Observed::Counted, closed);
        }
        if open.len() < MAX_OPEN_WINDOWS {
            open.insert(key, Window { opened: now, last: now, pending: 0, event: event.clone() });
        }
        (Observed::First, closed)
    }

    /// Removes the windows that ended by `now` (every window if `now` is
    /// `None`) and returns one coalesced event per window that counted
    /// refusals.
    fn take_closed(&self, now: Option<Timestamp>) -> Vec<LogEvent> {
        match self.open.lock() {
            Ok(mut open) => self.take_closed_in(&mut open, now),
            Err(_) => Vec::new(),
        }
    }

    fn take_closed_in(&self, open: &mut HashMap<Vec<u8>, Window>, now: Option<Timestamp>) -> Vec<LogEvent> {
        let window = self.window_secs;
        let closed: Vec<Vec<u8>> = open
            .iter()
            .filter(|(_, w)| now.is_none_or(|t| t >= w.opened.plus_seconds(window)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in closed {
            let Some(w) = open.remove(&k) else { continue };
            if w.pending == 0 {
                continue;
            }
            let coalesced = match w.event {
                LogEvent::AccessDenied { doctor, record, patient, reason, .. } => {
                    LogEvent::AccessDenied { at: w.last, doctor, record, patient, reason, count: w.pending }
                }
                LogEvent::RequestRefused { principal, what, reason, .. } => {
                    LogEvent::RequestRefused { at: w.last, principal, what, reason, count: w.pending }
                }
                _ => continue,
            };
            out.push(coalesced);
        }
        // Log order follows time.
        out.sort_by_key(LogEvent::timestamp);
        out
    }
}

impl Default for RefusalCoalescer {
    fn default() -> Self {
        Self::new(REFUSAL_WINDOW_SECS)
    }
}

fn append_all(store: &dyn Store, events: &[LogEvent]) -> Result<u64, StoreError> {
    let mut n = 0;
    for ev in events {
        let append = events::append(ev).map_err(|e| StoreError::Backend(e.to_string()))?;
        store.append_log(&append)?;
        n += 1;
    }
    Ok(n)
}

/// Writes the coalesced entries of every window that has ended by the
/// state's clock. Returns how many entries were written.
pub(crate) async fn flush_closed(state: &AppState) -> Result<u64, ApiError> {
    let closed = state.refusals().take_closed(Some(state.clock().now()));
    if closed.is_empty() {
        return Ok(0);
    }
    state.with_store(move |s| append_all(s, &closed)).await
}

/// Writes the counts of every open window, ended or not (at shutdown, after
/// the last request). Returns how many entries were written.
pub fn flush_all_refusals(state: &AppState) -> Result<u64, StoreError> {
    let closed = state.refusals().take_closed(None);
    append_all(state.store().as_ref(), &closed)
}

/// Puts a refusal (an `access denied` or `request refused` event, count one)
/// on the record: writes the windows that have ended, then appends this one
/// durably unless an identical one opened a window that is still open.
/// Returns the new entry's index, or `None` if it was counted. A failed
/// append fails the request.
pub(crate) async fn record(state: &AppState, event: LogEvent) -> Result<Option<u64>, ApiError> {
    let (observed, closed) = state.refusals().observe(&event, state.clock().now());
    let first = match observed {
        Observed::Counted => {
            state.metrics().refusal_coalesced();
            None
        }
        Observed::First => Some(events::append(&event)?),
    };
    if closed.is_empty() && first.is_none() {
        return Ok(None);
    }
    state
        .with_store(move |s| {
            append_all(s, &closed)?;
            first.map(|a| s.append_log(&a)).transpose()
        })
        .await
}

/// Middleware: puts every `wrong_role` answer to an authenticated caller on
/// the record as `request refused` (the operation's method and route
/// template, reason `wrong_role`). The role extractors refuse before any
/// handler runs, so this is the one place that sees every such refusal,
/// whichever module's route it was. If the refusal cannot be logged, the
/// answer becomes a 500 (the audit log is always on).
pub(crate) async fn log_wrong_role(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let operation = req.match_pattern().map(|route| format!("{} {route}", req.method()));
    let res = next.call(req).await?;
    let wrong_role = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .is_some_and(|e| matches!(e, ApiError::WrongRole { .. }));
    let auth = res.request().extensions().get::<Auth>().copied();
    let (true, Some(auth), Some(state), Some(operation)) = (wrong_role, auth, state, operation) else {
        return Ok(res.map_into_boxed_body());
    };
    let what = match Operation::new(operation) {
        Ok(op) => RefusedObject::Operation(op),
        Err(e) => {
            let (req, _) = res.into_parts();
            let error = ApiError::Internal(format!("route name: {e}"));
            return Ok(ServiceResponse::new(req, error.error_response()).map_into_boxed_body());
        }
    };
    let event = LogEvent::RequestRefused {
        at: state.clock().now(),
        principal: auth.principal,
        what,
        reason: RefusalReason::WrongRole,
        count: 1,
    };
    match record(&state, event).await {
        Ok(idx) => {
            state.metrics().request_refused();
            tracing::info!(principal.id = %auth.principal, principal.role = %auth.role, log.index = ?idx, "wrong role refused");
            Ok(res.map_into_boxed_body())
        }
        Err(e) => {
            let (req, _) = res.into_parts();
            Ok(ServiceResponse::new(req, e.error_response()).map_into_boxed_body())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use medrelay_crypto::{PrincipalId, RecordId};
    use medrelay_policy::{Denial, RefusalReason, RefusedObject};

    fn denied(at: u64, record: u8) -> LogEvent {
        LogEvent::AccessDenied {
            at: Timestamp(at),
            doctor: PrincipalId::from_bytes([1; 32]),
            record: RecordId::from_bytes([record; 16]),
            patient: Some(PrincipalId::from_bytes([2; 32])),
            reason: Denial::Revoked,
            count: 1,
        }
    }

    #[test]
    fn identical_refusals_are_counted_per_window_and_others_are_not() {
        let c = RefusalCoalescer::new(60);
        let seen = |e: &LogEvent, t: u64| c.observe(e, Timestamp(t)).0;
        assert_eq!(seen(&denied(100, 1), 100), Observed::First);
        for t in 100..110 {
            assert_eq!(seen(&denied(t, 1), t), Observed::Counted);
        }
        // Another record, another reason, another principal: new windows.
        assert_eq!(seen(&denied(105, 2), 105), Observed::First);
        let other = LogEvent::RequestRefused {
            at: Timestamp(105),
            principal: PrincipalId::from_bytes([1; 32]),
            what: RefusedObject::Envelope(RecordId::from_bytes([1; 16])),
            reason: RefusalReason::NotEntitled,
            count: 1,
        };
        assert_eq!(seen(&other, 105), Observed::First);
        assert_eq!(c.open_windows(), 3);
        // Nothing has ended at 159.
        assert!(c.take_closed(Some(Timestamp(159))).is_empty());
        // At 160 the first window ends: one entry counting its 10 repeats,
        // dated at the last one. The windows of record 2 and the envelope
        // counted nothing and close silently at 165.
        let closed = c.take_closed(Some(Timestamp(160)));
        assert_eq!(closed.len(), 1);
        let LogEvent::AccessDenied { at, count, record, .. } = &closed[0] else { panic!() };
        assert_eq!((*at, *count, *record), (Timestamp(109), 10, RecordId::from_bytes([1; 16])));
        assert!(c.take_closed(Some(Timestamp(165))).is_empty());
        assert_eq!(c.open_windows(), 0);
        // After the window, the same refusal is logged again.
        assert_eq!(seen(&denied(170, 1), 170), Observed::First);
        assert_eq!(seen(&denied(171, 1), 171), Observed::Counted);
        // A refusal after the window ended hands back the ended window's
        // count to write first, and is logged itself.
        let (o, closed) = c.observe(&denied(300, 1), Timestamp(300));
        assert_eq!(o, Observed::First);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].count(), closed[0].timestamp()), (1, Timestamp(171)));
        assert_eq!(seen(&denied(301, 1), 301), Observed::Counted);
        // Shutdown writes open windows too.
        let all = c.take_closed(None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].count(), 1);
    }

    #[test]
    fn a_zero_window_logs_everything_and_a_full_table_does_not_drop() {
        let off = RefusalCoalescer::new(0);
        for t in 0..3 {
            assert_eq!(off.observe(&denied(t, 1), Timestamp(t)).0, Observed::First);
        }
        assert_eq!(off.open_windows(), 0);
        let c = RefusalCoalescer::new(60);
        {
            let mut open = c.open.lock().unwrap();
            for i in 0..MAX_OPEN_WINDOWS {
                open.insert(
                    i.to_be_bytes().to_vec(),
                    Window { opened: Timestamp(0), last: Timestamp(0), pending: 0, event: denied(0, 0) },
                );
            }
        }
        // Full: a new kind is logged, every time, and never dropped.
        assert_eq!(c.observe(&denied(1, 9), Timestamp(1)).0, Observed::First);
        assert_eq!(c.observe(&denied(2, 9), Timestamp(2)).0, Observed::First);
        // Events that are not refusals are never coalesced.
        let schema = LogEvent::SchemaAdded { at: Timestamp(1), schema: "s".into(), schema_sha256: [0; 32] };
        assert_eq!(RefusalCoalescer::identity(&schema), None);
    }
}
