//! The client's one error type. Every variant prints as one line a person can
//! act on; none carries a secret (passphrases, tokens and plaintext never
//! reach an error message).

use std::path::PathBuf;

use medrelay_crypto::RecordId;

use medrelay_fhir::FhirError;

/// Everything a client operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached (DNS, refused connection, TLS
    /// handshake, timeout).
    #[error("cannot reach server at {url}: {reason}")]
    Unreachable {
        /// The server base URL.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The server answered with an error body.
    #[error("server refused ({status} {code}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The stable error code (`no_grant`, `unauthorized`, …).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server answered something that is not the documented protocol
    /// (bad JSON, oversized body, wrong ids).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A server URL that is not `http://` or `https://` with a host.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The extra CA certificate file could not be used.
    #[error("CA certificate {path}: {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The passphrase does not open the key file (or the file was altered).
    #[error("wrong passphrase (or the key file was altered)")]
    WrongPassphrase,
    /// No passphrase could be obtained, or it is unusable.
    #[error("passphrase: {0}")]
    Passphrase(String),
    /// A profile directory problem (missing, already initialized, corrupt,
    /// permissions too open).
    #[error("profile {path}: {reason}")]
    Profile {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A FHIR file could not be imported.
    #[error("{path}: {source}")]
    Fhir {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: FhirError,
    },
    /// An import stopped part-way (the server became unreachable, or
    /// refused an upload). What was uploaded stays; running the import
    /// again uploads only the rest.
    #[error("import interrupted after {uploaded} of {total} records: {source}; run the same import again to resume")]
    Interrupted {
        /// Records uploaded before the failure.
        uploaded: usize,
        /// Records that were to be uploaded.
        total: usize,
        /// The failure.
        #[source]
        source: Box<ClientError>,
    },
    /// Something the server sent does not verify: a signature, a
    /// registration, a log proof or checkpoint. The server may be faulty or
    /// malicious.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The audit log the server serves contradicts what this client saw
    /// before (a rewritten or forked history).
    #[error("LOG INTEGRITY FAILURE: {0}")]
    LogIntegrity(String),
    /// A record did not decrypt or its owner signature or capsule proofs
    /// failed (one opaque failure, as the crypto crate reports it).
    #[error("record {0} failed decryption or its signature/proof checks")]
    Decryption(RecordId),
    /// A bad argument (scope text, duration, id, category).
    #[error("{0}")]
    Invalid(String),
    /// The server has no DP summary schema of this name.
    #[error("unknown schema {0:?}: list the installed ones with `schemas`")]
    UnknownSchema(String),
    /// The patient has no summary stored for this schema.
    #[error("you have no summary stored for schema {0:?}")]
    NoSummary(String),
    /// A DP query would spend more than the analyst's remaining budget. The
    /// server refused it and spent nothing.
    #[error("{0} (refused: nothing was spent)")]
    BudgetExceeded(String),
    /// A summary could not be derived from the patient's records, or does
    /// not fit its schema.
    #[error("summary for schema {schema:?}: {reason}")]
    Summary {
        /// The schema.
        schema: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::Io { path, source }
    }

    pub(crate) fn profile(path: impl Into<PathBuf>, reason: impl Into<String>) -> ClientError {
        ClientError::Profile { path: path.into(), reason: reason.into() }
    }

    /// The server's error code, if this is a server refusal.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}
