//! Errors of private studies: a refused definition, and why an aggregator
//! refused one report during preparation.

/// Why a study definition (or its encoding against a schema) was refused.
/// Messages name the offending field or parameter, never a patient value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StudyError {
    /// A name, field reference or parameter is invalid; says which and why.
    #[error("invalid study {what}: {reason}")]
    Invalid {
        /// What (e.g. `name`, `histograms`, `privacy`).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The study names another schema than the one given.
    #[error("the study is defined over schema {expected:?}, not {found:?}")]
    SchemaMismatch {
        /// The schema the study names.
        expected: String,
        /// The schema given.
        found: String,
    },
    /// The encoding would be larger than the limits allow.
    #[error("the study's measurement is too large: {what} {actual}, limit {limit}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// The size found.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// The Prio3 parameters were refused by the `prio` crate.
    #[error("Prio3: {0}")]
    Vdaf(String),
    /// A report or share failed to decode or encrypt.
    #[error("report: {0}")]
    Report(&'static str),
    /// A release or aggregate vector does not match the study's layout.
    #[error("release does not match the study: {0}")]
    Release(&'static str),
}

/// Why an aggregator did not aggregate one report. Each reason is counted
/// and logged; none says anything about the measurement beyond "invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum PrepError {
    /// The HPKE ciphertext did not open (wrong key, tampered, malformed).
    #[error("the encrypted share does not decrypt")]
    DecryptFailed,
    /// A share, public share or verifier message has the wrong length or
    /// does not decode.
    #[error("a share is malformed or has the wrong length")]
    Malformed,
    /// The validity proof failed: the measurement is out of range (or the
    /// shares are inconsistent).
    #[error("the validity proof does not verify")]
    InvalidProof,
    /// The report id was aggregated before.
    #[error("the report id was seen before")]
    Replayed,
    /// The report's time is outside the study's collection window.
    #[error("the report's time is outside the study's collection window")]
    OutsideWindow,
}

impl PrepError {
    /// Every reason, in the order of [`PrepError::code`]'s byte.
    pub const ALL: [PrepError; 5] = [
        PrepError::DecryptFailed,
        PrepError::Malformed,
        PrepError::InvalidProof,
        PrepError::Replayed,
        PrepError::OutsideWindow,
    ];

    /// Stable code (API, logs, counts).
    pub fn code(self) -> &'static str {
        match self {
            PrepError::DecryptFailed => "decrypt_failed",
            PrepError::Malformed => "malformed_share",
            PrepError::InvalidProof => "invalid_proof",
            PrepError::Replayed => "replayed",
            PrepError::OutsideWindow => "outside_window",
        }
    }

    /// One byte for storage and the leader↔helper protocol.
    pub fn byte(self) -> u8 {
        match self {
            PrepError::DecryptFailed => 1,
            PrepError::Malformed => 2,
            PrepError::InvalidProof => 3,
            PrepError::Replayed => 4,
            PrepError::OutsideWindow => 5,
        }
    }

    /// The reason of [`PrepError::byte`].
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.byte() == b)
    }

    /// Its position in [`PrepError::ALL`] (for count arrays).
    pub fn index(self) -> usize {
        usize::from(self.byte() - 1)
    }
}
