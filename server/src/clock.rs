//! The server's only clock read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use medrelay_crypto::Timestamp;

/// Where the server reads the time from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A settable clock, for tests of expiry.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock starting at `secs`.
    pub fn manual(secs: u64) -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(secs)))
    }

    /// Advances a manual clock (no effect on the system clock).
    pub fn advance(&self, secs: u64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(secs, Ordering::SeqCst);
        }
    }

    /// Now, in whole seconds since the epoch.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => {
                Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
            }
            Clock::Manual(t) => Timestamp(t.load(Ordering::SeqCst)),
        }
    }
}
