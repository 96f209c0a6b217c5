//! Errors: a whole file refused ([`FhirError`]), or one entry of it
//! ([`EntryProblem`]), each naming where.

use std::fmt;

use crate::json::EntryPath;

/// Where in a file a resource is: an NDJSON line and/or the path of
/// Bundle entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// 1-based NDJSON line, for `.ndjson` files.
    pub line: Option<usize>,
    /// Bundle entries, outermost first.
    pub path: EntryPath,
}

impl Location {
    pub(crate) fn entry(&self, i: usize) -> Self {
        Self { line: self.line, path: self.path.child(i) }
    }
}

impl fmt::Display for Location {
    /// `file`, `entry 4`, `entry 3 > entry 0`, `line 7`, `line 7 > entry 2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            None => self.path.fmt(f),
            Some(l) if self.path.indexes().is_empty() => write!(f, "line {l}"),
            Some(l) => write!(f, "line {l} > {}", self.path),
        }
    }
}

/// Why a whole file was refused: nothing from it is imported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The file is larger than the importer's limit.
    #[error("file too large ({size} bytes; the limit is {limit})")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not acceptable JSON (syntax, invalid UTF-8, duplicate key, nesting
    /// too deep, too many entries), with the entry it failed in.
    #[error("{at}: not acceptable JSON: {reason}")]
    Json {
        /// Where (`file`, `entry 12`, `line 3`).
        at: String,
        /// What.
        reason: String,
    },
    /// An NDJSON file with more lines than the entry limit.
    #[error("more than {limit} lines")]
    TooManyLines {
        /// The limit.
        limit: usize,
    },
    /// Bundles inside Bundles inside Bundles, beyond the limit.
    #[error("{at}: Bundles nested more than {limit} deep")]
    BundleNesting {
        /// Where.
        at: String,
        /// The limit.
        limit: usize,
    },
    /// The file holds no FHIR resource at all (an empty Bundle or NDJSON
    /// file).
    #[error("no FHIR resource in the file")]
    Empty,
    /// `--strict`: some entries had problems, so the file is refused whole.
    #[error("refused whole (strict): {count} bad entr{}; the first: {first}", if *count == 1 { "y" } else { "ies" })]
    Strict {
        /// How many entries had problems.
        count: usize,
        /// The first of them.
        first: Box<EntryProblem>,
    },
}

/// One entry that could not be imported; the rest of its file can be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct EntryProblem {
    /// Where.
    pub at: Location,
    /// What.
    pub kind: ProblemKind,
}

/// What is wrong with one entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// An NDJSON line that is not acceptable JSON.
    #[error("not acceptable JSON: {0}")]
    Json(String),
    /// Not a JSON object with a string `resourceType`.
    #[error("not a FHIR resource (no \"resourceType\")")]
    NotAResource,
    /// A `resourceType` FHIR R4 does not define.
    #[error("unknown resourceType {0:?} (not a FHIR R4 resource type)")]
    UnknownType(String),
    /// An `id` that is not a FHIR id (1-64 of `[A-Za-z0-9.-]`).
    #[error("{resource_type} has an invalid \"id\" {id:?} (FHIR ids are 1-64 characters of [A-Za-z0-9.-])")]
    InvalidId {
        /// Type.
        resource_type: String,
        /// The id, cut to 80 characters.
        id: String,
    },
    /// Larger than one record may be.
    #[error("{resource_type} is {size} bytes, more than a record may hold ({limit})")]
    TooLarge {
        /// Type.
        resource_type: String,
        /// Size of its compact JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Bundle entry that is not an object, or a `fullUrl` that is not a
    /// string.
    #[error("malformed Bundle entry: {0}")]
    MalformedEntry(&'static str),
}
