//! Who may talk to a local app, checked on every request by one middleware
//! ([`guard`]) before any handler runs.
//!
//! - **Loopback only.** The listener is bound to `127.0.0.1`; nothing else
//!   on the network can connect.
//! - **Host header.** Only `127.0.0.1:<port>` and `localhost:<port>` are
//!   served, so a web page that re-points its own DNS name at 127.0.0.1
//!   (DNS rebinding) gets `421 Misdirected Request`, never a page.
//! - **One-time launch token.** The process prints (and opens) a URL
//!   carrying 256 random bits; `GET /launch?token=…` redeems it once for a
//!   session cookie (`HttpOnly; SameSite=Strict; Path=/`, named after the
//!   role and port so two apps on one machine do not overwrite each other)
//!   and forgets it. There is one session per process; it ends after
//!   [`IDLE_TIMEOUT`] without a request or when the user quits.
//! - **CSRF.** Every request other than `GET`/`HEAD` must carry the
//!   session's CSRF token (the `csrf` query parameter every form's action
//!   carries, or an `X-CSRF-Token` header), compared in constant time; an
//!   `Origin` or `Sec-Fetch-Site` header, when the browser sends one, must
//!   name this origin.
//! - **Headers.** Every response, refusals included, carries a strict
//!   Content-Security-Policy (`default-src 'none'`; scripts, styles and
//!   images from this origin only; no framing), `no-store`, `nosniff`,
//!   `Referrer-Policy: same-origin` (the launch URL never leaks to another
//!   site through a Referer, while form posts keep their `Origin`) and
//!   same-origin isolation headers.
//!
//! Tokens are kept only as SHA-256 digests, compared with `subtle`, and
//! never logged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, HttpResponse};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The Content-Security-Policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The header a script may send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A random 256-bit token, hex.
fn random_token() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

/// What a signed-in request carries for its handlers: the CSRF token to
/// put into forms.
#[derive(Clone)]
pub(crate) struct SessionView {
    pub(crate) csrf: Zeroizing<String>,
}

impl std::fmt::Debug for SessionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionView(..)")
    }
}

struct Session {
    cookie: [u8; 32],
    csrf: Zeroizing<String>,
    last_seen: Instant,
}

/// The gate of one app: allowed hosts and origins, the launch token and
/// the one session.
pub(crate) struct Gate {
    hosts: [String; 2],
    origins: [String; 2],
    cookie_name: String,
    launch: Mutex<Option<[u8; 32]>>,
    session: Mutex<Option<Session>>,
    idle: Duration,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("hosts", &self.hosts).finish_non_exhaustive()
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The Host header is not this app's.
    WrongHost,
    /// No valid session cookie.
    NoSession,
    /// A state-changing request without the right CSRF token, or from
    /// another origin.
    Csrf,
    /// The launch token is wrong or was used already.
    BadLaunch,
}

impl Refusal {
    /// A short code for the terminal's log line.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::WrongHost => "wrong Host header",
            Refusal::NoSession => "no session",
            Refusal::Csrf => "missing or wrong CSRF token, or another origin",
            Refusal::BadLaunch => "launch token wrong or used",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::WrongHost => StatusCode::MISDIRECTED_REQUEST,
            Refusal::NoSession => StatusCode::UNAUTHORIZED,
            Refusal::Csrf | Refusal::BadLaunch => StatusCode::FORBIDDEN,
        }
    }

    /// The one line shown to the person.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::WrongHost => "This app answers only at 127.0.0.1 or localhost on its own port.",
            Refusal::NoSession => {
                "This browser is not signed in to the app. Open the link the app printed in its terminal \
                 (it works once), or restart the app for a new one."
            }
            Refusal::Csrf => {
                "The request did not carry this page's security token, or came from another site. \
                 Nothing was changed. Reload the page and try again."
            }
            Refusal::BadLaunch => {
                "This sign-in link was already used or is wrong. Restart the app for a new link."
            }
        }
    }
}

impl Gate {
    /// A gate for an app on `port`; returns it and the launch token.
    pub(crate) fn new(role: &str, port: u16, idle: Duration) -> (Self, Zeroizing<String>) {
        let token = random_token();
        let gate = Self {
            hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            origins: [format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")],
            cookie_name: format!("medrelay-{role}-{port}"),
            launch: Mutex::new(Some(digest(&token))),
            session: Mutex::new(None),
            idle,
        };
        (gate, token)
    }

    /// The session cookie's name.
    pub(crate) fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    pub(crate) fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)))
    }

    fn origin_ok(&self, origin: &str) -> bool {
        self.origins.iter().any(|ok| ok.eq_ignore_ascii_case(origin))
    }

    /// Redeems the launch token (once): a new session, returned as the
    /// cookie value.
    pub(crate) fn redeem(&self, token: &str) -> Option<Zeroizing<String>> {
        let mut launch = self.launch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let expected = (*launch)?;
        if !same(&expected, &digest(token)) {
            return None;
        }
        *launch = None;
        let cookie = random_token();
        let session = Session { cookie: digest(&cookie), csrf: random_token(), last_seen: Instant::now() };
        *self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(session);
        Some(cookie)
    }

    /// The session a cookie value opens, if it is the live one (and marks
    /// it used now).
    pub(crate) fn session(&self, cookie: Option<&str>) -> Option<SessionView> {
        let cookie = cookie?;
        let mut guard = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = guard.as_mut()?;
        if !same(&s.cookie, &digest(cookie)) {
            return None;
        }
        if s.last_seen.elapsed() > self.idle {
            *guard = None;
            return None;
        }
        s.last_seen = Instant::now();
        Some(SessionView { csrf: s.csrf.clone() })
    }

    /// Ends the session (quit).
    pub(crate) fn end(&self) {
        *self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *self.launch.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Checks a state-changing request: origin and CSRF token.
    fn check_unsafe(&self, req: &ServiceRequest, session: &SessionView) -> bool {
        let headers = req.headers();
        if let Some(origin) = headers.get(header::ORIGIN) {
            if !origin.to_str().is_ok_and(|o| self.origin_ok(o)) {
                return false;
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if !site.to_str().is_ok_and(|s| s == "same-origin") {
                return false;
            }
        }
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .or_else(|| query_param(req.query_string(), "csrf"));
        presented.is_some_and(|p| same(&digest(&p), &digest(&session.csrf)))
    }
}

/// One query parameter's value (the first), percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query)?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn serde_urlencoded_pairs(query: &str) -> Option<Vec<(String, String)>> {
    web::Query::<Vec<(String, String)>>::from_query(query).ok().map(web::Query::into_inner)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie_value(headers: &actix_web::http::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// A `Set-Cookie` value for the session cookie (`HttpOnly`,
/// `SameSite=Strict`, `Path=/`; expired at once when `value` is empty).
pub(crate) fn session_cookie(name: &str, value: &str) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if value.is_empty() {
        c.push_str("; Max-Age=0");
    }
    c
}

/// Sets the security headers on a response.
pub(crate) fn harden(headers: &mut actix_web::http::header::HeaderMap) {
    let set = |headers: &mut actix_web::http::header::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cache-control", "no-store");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(headers, "permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()");
}

/// A refusal page (plain, self-contained, no session needed).
pub(crate) fn refusal_response(refusal: Refusal) -> HttpResponse {
    let page = crate::page::RefusalPage { status: refusal.status().as_u16(), message: refusal.message() };
    crate::page::html(refusal.status(), &page)
}

/// The middleware every request passes through (see the module docs).
pub(crate) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(gate) = req.app_data::<web::Data<Gate>>().cloned() else {
        return Ok(req.into_response(HttpResponse::InternalServerError().finish()));
    };
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let refused = if !gate.host_ok(host) {
        Some(Refusal::WrongHost)
    } else if req.path() == "/launch" || req.path().starts_with("/static/") {
        // The launch handler checks its token; static assets hold no data.
        if req.method() != Method::GET && req.method() != Method::HEAD {
            Some(Refusal::Csrf)
        } else {
            None
        }
    } else {
        let cookie = cookie_value(req.headers(), gate.cookie_name());
        match gate.session(cookie.as_deref()) {
            None => Some(Refusal::NoSession),
            Some(session) => {
                let safe = req.method() == Method::GET || req.method() == Method::HEAD;
                if !safe && !gate.check_unsafe(&req, &session) {
                    Some(Refusal::Csrf)
                } else {
                    req.extensions_mut().insert(session);
                    None
                }
            }
        }
    };
    let mut res = match refused {
        Some(r) => {
            // The path only: the query may carry a token.
            eprintln!("refused {} {}: {}", req.method(), req.path().escape_debug(), r.code());
            req.into_response(refusal_response(r))
        }
        None => next.call(req).await?.map_into_boxed_body(),
    };
    harden(res.headers_mut());
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launch_token_works_once_and_only_exactly() {
        let (gate, token) = Gate::new("patient", 4321, IDLE_TIMEOUT);
        assert!(gate.redeem("0".repeat(64).as_str()).is_none());
        assert!(gate.redeem(&token[..63]).is_none());
        let cookie = gate.redeem(&token).expect("first use");
        assert!(gate.redeem(&token).is_none(), "a launch token is single use");
        assert!(gate.session(Some(&cookie)).is_some());
        assert!(gate.session(Some("wrong")).is_none());
        assert!(gate.session(None).is_none());
        gate.end();
        assert!(gate.session(Some(&cookie)).is_none(), "quit ends the session");
    }

    #[test]
    fn an_idle_session_expires() {
        let (gate, token) = Gate::new("doctor", 1, Duration::from_millis(0));
        let cookie = gate.redeem(&token).expect("redeem");
        std::thread::sleep(Duration::from_millis(5));
        assert!(gate.session(Some(&cookie)).is_none());
    }

    #[test]
    fn only_this_apps_host_is_served() {
        let (gate, _) = Gate::new("auditor", 8080, IDLE_TIMEOUT);
        assert!(gate.host_ok(Some("127.0.0.1:8080")));
        assert!(gate.host_ok(Some("LOCALHOST:8080")));
        for bad in
            ["127.0.0.1", "127.0.0.1:8081", "evil.example:8080", "10.0.0.1:8080", "127.0.0.1:8080.evil"]
        {
            assert!(!gate.host_ok(Some(bad)), "{bad}");
        }
        assert!(!gate.host_ok(None));
        assert_eq!(gate.cookie_name(), "medrelay-auditor-8080");
    }

    #[test]
    fn cookies_are_read_and_written_strictly() {
        let mut h = actix_web::http::header::HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; medrelay-patient-1=abc; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie_value(&h, "medrelay-patient-1").as_deref(), Some("abc"));
        assert_eq!(cookie_value(&h, "c").as_deref(), Some("3"));
        assert_eq!(cookie_value(&h, "medrelay-patient"), None);
        assert_eq!(session_cookie("n", "v"), "n=v; Path=/; HttpOnly; SameSite=Strict");
        assert!(session_cookie("n", "").ends_with("; Max-Age=0"));
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(query_param("a=1&csrf=ab%20c", "csrf").as_deref(), Some("ab c"));
        assert_eq!(query_param("a=1", "csrf"), None);
        assert_eq!(query_param("", "csrf"), None);
    }
}
