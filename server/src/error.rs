//! The one API error type and its exhaustive mapping to HTTP statuses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use medrelay_wire::ErrorBody;

use crate::store::StoreError;

/// Every error a request can end in. Each variant maps to exactly one status
/// and one stable code; the JSON body is always [`ErrorBody`]. A 5xx body is
/// generic: the detail is logged (with ids only), never sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The JSON body could not be parsed (syntax, unknown field, bad base64,
    /// wrong type).
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// A field is malformed or out of its limit; names the field.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A path or query parameter is malformed.
    #[error("invalid path or query: {0}")]
    InvalidParameter(String),
    /// The body is larger than the documented limit.
    #[error("request body too large (limit {limit} bytes)")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Wrong or missing content type.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// Authentication failed. Deliberately opaque: missing, unknown, expired
    /// and forged tokens, replayed or wrong challenges and bad signatures all
    /// look the same to the client.
    #[error("authentication failed")]
    Unauthorized,
    /// Authenticated but the role may not do this.
    #[error("this operation needs the {needed} role")]
    WrongRole {
        /// The role needed.
        needed: &'static str,
    },
    /// A signature over a submitted object (header, grant, revocation,
    /// registration) does not verify.
    #[error("signature on the {0} does not verify")]
    BadSignature(&'static str),
    /// Authorization denied by policy; `reason` is the policy's reason code.
    #[error("access denied: {reason}")]
    Denied {
        /// Reason code (e.g. `no_grant`, `revoked`, `expired`).
        reason: &'static str,
    },
    /// The authenticated principal may not act on this object.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The enrollment token is unknown, used, expired or for another role.
    #[error("invalid or used enrollment token")]
    InvalidEnrollment,
    /// Unknown object.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The object exists already or conflicts with stored state.
    #[error("{0}")]
    Conflict(&'static str),
    /// A DP query does not fit the analyst's privacy budget; nothing was
    /// spent. The message gives the requested cost, the total and δ.
    #[error("{0}")]
    BudgetExceeded(String),
    /// The analyst has no privacy budget for this schema (none set by the
    /// operator and no default configured).
    #[error("no privacy budget for this schema: the operator must set one")]
    NoBudget,
    /// The request's body did not arrive before the body-read deadline
    /// (headers came, the body stalled); the connection is closed.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// A quota is exhausted; nothing was done. Retry after `retry_after`
    /// seconds (also sent as `Retry-After`).
    #[error("rate limited ({quota}): retry after {retry_after} s")]
    RateLimited {
        /// Which quota.
        quota: &'static str,
        /// Seconds until one more request is allowed.
        retry_after: u64,
    },
    /// The path exists but not with this method (`Allow` lists those it has).
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The allowed methods, comma-separated.
        allow: String,
    },
    /// The operator suspended this principal; every request is refused.
    #[error("this principal is suspended by the operator")]
    Suspended,
    /// The DP planner refused a well-formed query (privacy parameter below
    /// its floor, noise or sampler work past the bounds); nothing was spent.
    #[error("{0}")]
    PlanRefused(medrelay_dp::PlanRefusal),
    /// The service cannot take this request now (every DP slot busy, or the
    /// answer's deadline passed); nothing was done or spent. Retry after
    /// `retry_after` seconds (also sent as `Retry-After`).
    #[error("{message}")]
    Unavailable {
        /// Stable code (`dp_busy`, `dp_deadline`).
        code: &'static str,
        /// What happened.
        message: &'static str,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A private-study request refused for a stated reason with its own
    /// stable code (`batch_too_small`, `already_released`, `batch_collected`,
    /// `batch_mismatch`, `study_mismatch`, …); nothing changed.
    #[error("{message}")]
    Refused {
        /// The code sent as `error`.
        code: &'static str,
        /// What happened (names and counts only).
        message: String,
    },
    /// Server-side failure; the detail stays in the log.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The stable error code sent in the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::WrongRole { .. } => "wrong_role",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::Denied { reason } => reason,
            ApiError::Forbidden(_) => "forbidden",
            ApiError::InvalidEnrollment => "invalid_enrollment",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::BudgetExceeded(_) => "budget_exceeded",
            ApiError::NoBudget => "no_budget",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Suspended => "suspended",
            ApiError::PlanRefused(r) => r.code(),
            ApiError::Unavailable { code, .. } => code,
            ApiError::Refused { code, .. } => code,
            ApiError::Internal(_) => "internal",
        }
    }

    /// Shorthand for [`ApiError::InvalidField`].
    pub fn field(field: &'static str, reason: impl ToString) -> Self {
        ApiError::InvalidField { field, reason: reason.to_string() }
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        ErrorBody { error: self.code().to_owned(), message }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidParameter(_)
            | ApiError::BadSignature(_)
            | ApiError::PlanRefused(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized | ApiError::InvalidEnrollment => StatusCode::UNAUTHORIZED,
            ApiError::WrongRole { .. }
            | ApiError::Denied { .. }
            | ApiError::Forbidden(_)
            | ApiError::BudgetExceeded(_)
            | ApiError::NoBudget
            | ApiError::Suspended => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(error.detail = %detail, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::RateLimited { retry_after, .. } | ApiError::Unavailable { retry_after, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            // The rest of a stalled body may still come: drop the connection.
            ApiError::BodyTimeout => {
                res.force_close();
            }
            _ => {}
        }
        res.json(self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => ApiError::Conflict(match what {
                "principal" => "principal already registered",
                "record" => "record id already stored",
                "grant" => "grant id already stored",
                "schema" => "a schema with this name is already installed",
                "suspension" => "the principal is already suspended",
                "study" => "a study with this name is already installed",
                _ => "already exists",
            }),
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::InvalidEnrollment => ApiError::InvalidEnrollment,
            StoreError::OutOfRange(m) => ApiError::InvalidParameter(m),
            StoreError::AlreadyRevoked => ApiError::Conflict("grant already revoked"),
            StoreError::Overspend(o) => ApiError::BudgetExceeded(o.to_string()),
            StoreError::NoBudget => ApiError::NoBudget,
            e @ (StoreError::Corrupt(_) | StoreError::Backend(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(format!("blocking task failed: {e}"))
    }
}

/// The JSON extractor configuration of a route whose body may be at most
/// `limit` bytes: over it is `413 payload_too_large`, before the body is
/// read when `Content-Length` announces it.
pub(crate) fn json_config(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default().limit(limit).error_handler(move |e, _| json_error(e, limit).into())
}

/// Maps actix's JSON extractor errors to [`ApiError`] (strict 400/413/415
/// JSON bodies instead of actix's plain-text defaults).
pub(crate) fn json_error(err: actix_web::error::JsonPayloadError, limit: usize) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::PayloadTooLarge { limit },
        E::ContentType => ApiError::UnsupportedMediaType,
        E::Deserialize(e) => ApiError::InvalidJson(e.to_string()),
        E::Payload(actix_web::error::PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            ApiError::BodyTimeout
        }
        other => ApiError::InvalidJson(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::Internal("sled: disk /secret/path broke".into());
        let b = e.body();
        assert_eq!(b.error, "internal");
        assert!(!b.message.contains("secret"));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn denials_carry_their_reason_code() {
        let e = ApiError::Denied { reason: "revoked" };
        assert_eq!(e.body().error, "revoked");
        assert_eq!(e.status_code(), StatusCode::FORBIDDEN);
    }
}
