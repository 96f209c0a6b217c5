//! The operator's admin socket: live enrollment and suspension while the
//! server runs.
//!
//! sled admits one process, so while `serve` runs, the offline
//! `enroll-doctor --data DIR` cannot open the database. `serve` therefore
//! also listens on a Unix-domain socket, `DATA/admin/admin.sock`, and
//! `medrelay-server enroll-doctor` / `enroll` talk to it when a server is
//! running (and open the database directly when none is).
//!
//! # Threat model
//!
//! Issuing an enrollment token lets its holder register a doctor, analyst
//! or auditor, so this is an operator-only capability. It is not reachable
//! from the network at all: the admin app is a separate actix `App` served
//! only on the socket, and the public listener has no `/admin` routes (a
//! test checks it). Who may connect is decided by the file system, the
//! mechanism hospital IT already audits for the data directory itself: the
//! socket lives in a directory created with mode 0700 (re-tightened at each
//! start, which fails unless the server's user owns it) and the socket file
//! is 0600, so only the server's own user (and root) can connect. That is
//! exactly who could already run the offline enrollment, which needs write
//! access to the database: the socket adds no new principal and no new
//! secret to manage (unlike a loopback TCP port, which every local user can
//! reach and which would need its own credential). The operations are
//! "issue a one-time token for a non-patient role" and "suspend or
//! reinstate a non-patient principal" (`POST /admin/v1/suspensions
//! {principal}`, `DELETE /admin/v1/suspensions/{id}`; see
//! [`crate::policy::suspend`]); the request is strict,
//! small-bodied JSON, the token is returned once and stored only as its
//! SHA-256, and the server log records the role, never the token or name.
//! `--no-admin-socket` turns the socket off.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpResponse};
use medrelay_crypto::{PrincipalId, Timestamp};
use medrelay_wire::{ErrorBody, Role};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::policy::directory::validate_name;
use crate::policy::suspend::{set_suspended_in, SuspensionReceipt};
use crate::serve::{issue_enrollment, ServeError};
use crate::{ApiError, AppState};

/// Largest admin request body, in bytes.
const MAX_ADMIN_BODY: usize = 4096;
/// Largest admin response read by the client, in bytes.
const MAX_ADMIN_RESPONSE: u64 = 64 * 1024;
/// Client timeout for connecting, writing and reading.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The enrollment route of the admin app.
pub const ENROLL_PATH: &str = "/admin/v1/enrollments";
/// The suspension routes of the admin app (`POST` here, `DELETE` on
/// `SUSPENSIONS_PATH/{id}`).
pub const SUSPENSIONS_PATH: &str = "/admin/v1/suspensions";

/// `POST /admin/v1/suspensions` on the admin socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSuspendRequest {
    /// The doctor, analyst or auditor to suspend.
    pub principal: PrincipalId,
}

/// `POST /admin/v1/enrollments` on the admin socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminEnrollRequest {
    /// doctor, analyst or auditor.
    pub role: Role,
    /// The principal's name, as for the offline command.
    pub name: String,
}

/// Answer to [`AdminEnrollRequest`]: the one-time token, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminEnrollResponse {
    /// The one-time enrollment token (a secret: give it to the principal
    /// over a trusted channel).
    pub token: String,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for AdminEnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminEnrollResponse")
            .field("token", &"..")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The admin socket of a data directory: `DATA/admin/admin.sock`.
pub fn admin_socket_path(data: &Path) -> PathBuf {
    data.join("admin").join("admin.sock")
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

async fn enroll(
    state: web::Data<AppState>,
    req: web::Json<AdminEnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let AdminEnrollRequest { role, name } = req.into_inner();
    if role == Role::Patient {
        return Err(ApiError::field("role", "patients self-register; no token needed"));
    }
    validate_name(&name)?;
    let clock = state.clock().clone();
    let (token, expires_at) = state.with_store(move |s| issue_enrollment(s, role, &name, &clock)).await?;
    tracing::info!(principal.role = %role, "enrollment token issued on the admin socket");
    Ok(HttpResponse::Created().json(AdminEnrollResponse { token: token.to_string(), expires_at }))
}

async fn suspend(
    state: web::Data<AppState>,
    req: web::Json<AdminSuspendRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = req.into_inner().principal;
    let clock = state.clock().clone();
    let r = state.with_store(move |s| Ok(set_suspended_in(s, principal, true, &clock))).await??;
    Ok(HttpResponse::Created().json(r))
}

async fn reinstate(
    state: web::Data<AppState>,
    principal: web::Path<PrincipalId>,
) -> Result<HttpResponse, ApiError> {
    let principal = principal.into_inner();
    let clock = state.clock().clone();
    let r = state.with_store(move |s| Ok(set_suspended_in(s, principal, false, &clock))).await??;
    Ok(HttpResponse::Ok().json(r))
}

/// The admin application (served only on the admin socket).
pub fn admin_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json = crate::error::json_config(MAX_ADMIN_BODY);
    let path =
        web::PathConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into());
    App::new()
        .app_data(web::Data::new(state))
        .app_data(json)
        .app_data(path)
        .route(ENROLL_PATH, web::post().to(enroll))
        .route(SUSPENSIONS_PATH, web::post().to(suspend))
        .route(&format!("{SUSPENSIONS_PATH}/{{id}}"), web::delete().to(reinstate))
        .default_service(web::to(not_found))
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let context = context.into();
    move |error| ServeError::Io { context, error }
}

/// Creates (or re-tightens) the private directory and binds the socket with
/// mode 0600. A stale socket left by a crash is replaced; anything else at
/// that path, or a socket a live process answers on, is an error.
#[cfg(unix)]
pub(crate) fn bind_admin_socket(data: &Path) -> Result<std::os::unix::net::UnixListener, ServeError> {
    use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
    use std::os::unix::net::{UnixListener, UnixStream};

    let path = admin_socket_path(data);
    let dir = path.parent().ok_or_else(|| ServeError::Argument("admin socket path".into()))?;
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ServeError::Argument(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o700).create(dir).map_err(io_err("creating the admin directory"))?;
        }
        Err(e) => return Err(io_err("checking the admin directory")(e)),
    }
    // Fails unless this user owns the directory: nobody else can have
    // loosened it for us.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("restricting the admin directory to mode 0700"))?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(&path).is_ok() {
                return Err(ServeError::Argument(format!(
                    "{} is in use by a running server",
                    path.display()
                )));
            }
            fs::remove_file(&path).map_err(io_err("removing a stale admin socket"))?;
        }
        Ok(_) => {
            return Err(ServeError::Argument(format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("checking the admin socket")(e)),
    }
    let listener = UnixListener::bind(&path).map_err(io_err(format!("binding {}", path.display())))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(io_err("restricting the admin socket to mode 0600"))?;
    Ok(listener)
}

/// Whether a server answers on `socket` (a stale socket file from a crash
/// refuses connections).
#[cfg(unix)]
pub fn admin_socket_live(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// The admin socket an operator command goes through: `socket` if given,
/// else `DATA`'s when a server answers on it; `None` means "change the
/// database directly" (no server is running). A given socket needs Unix.
pub fn operator_socket(data: &Path, socket: Option<&Path>) -> Result<Option<PathBuf>, ServeError> {
    #[cfg(unix)]
    {
        let default = admin_socket_path(data);
        Ok(match socket {
            Some(s) => Some(s.to_path_buf()),
            None => admin_socket_live(&default).then_some(default),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = data;
        match socket {
            Some(_) => Err(ServeError::Argument("admin sockets need a Unix system".into())),
            None => Ok(None),
        }
    }
}

/// One request to the admin socket; the raw answer (status line, headers
/// and body), which may hold a secret.
#[cfg(unix)]
fn admin_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ServeError> {
    use std::os::unix::net::UnixStream;

    let mut s = UnixStream::connect(socket).map_err(io_err(format!("connecting to {}", socket.display())))?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .map_err(io_err("setting socket timeouts"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(io_err("writing to the admin socket"))?;
    let mut raw = Zeroizing::new(Vec::new());
    s.take(MAX_ADMIN_RESPONSE).read_to_end(&mut raw).map_err(io_err("reading from the admin socket"))?;
    Ok(raw)
}

/// The body of an answer with status `want`, or the server's error.
fn expect_answer(raw: &[u8], want: u16) -> Result<&[u8], ServeError> {
    let (status, body) = parse_response(raw)?;
    if status == want {
        return Ok(body);
    }
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!("{}: {}", e.error, e.message),
        Err(_) => "malformed error answer".into(),
    };
    Err(ServeError::Admin { status, message })
}

/// Asks the running server behind `socket` for a one-time enrollment token.
#[cfg(unix)]
pub fn enroll_via_socket(socket: &Path, role: Role, name: &str) -> Result<Zeroizing<String>, ServeError> {
    let body = serde_json::to_vec(&AdminEnrollRequest { role, name: name.to_owned() })
        .map_err(|e| ServeError::Argument(e.to_string()))?;
    let raw = admin_request(socket, "POST", ENROLL_PATH, &body)?;
    let body = expect_answer(&raw, 201)?;
    let r: AdminEnrollResponse = serde_json::from_slice(body)
        .map_err(|_| ServeError::Admin { status: 201, message: "malformed answer".into() })?;
    Ok(Zeroizing::new(r.token))
}

/// Asks the running server behind `socket` to suspend (or reinstate)
/// `principal`.
#[cfg(unix)]
pub fn set_suspended_via_socket(
    socket: &Path,
    principal: PrincipalId,
    suspend: bool,
) -> Result<SuspensionReceipt, ServeError> {
    let raw = if suspend {
        let body = serde_json::to_vec(&AdminSuspendRequest { principal })
            .map_err(|e| ServeError::Argument(e.to_string()))?;
        admin_request(socket, "POST", SUSPENSIONS_PATH, &body)?
    } else {
        admin_request(socket, "DELETE", &format!("{SUSPENSIONS_PATH}/{principal}"), b"")?
    };
    let status = if suspend { 201 } else { 200 };
    serde_json::from_slice(expect_answer(&raw, status)?)
        .map_err(|_| ServeError::Admin { status, message: "malformed answer".into() })
}

/// Splits a `Connection: close` HTTP/1.1 answer with a `Content-Length`
/// body into status and body.
fn parse_response(raw: &[u8]) -> Result<(u16, &[u8]), ServeError> {
    let bad = || ServeError::Admin { status: 0, message: "malformed HTTP answer".into() };
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad())?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(bad)?;
    let body = raw.get(split + 4..split + 4 + length).ok_or_else(bad)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn answers_parse_strictly() {
        let ok = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
        assert_eq!(parse_response(ok).unwrap(), (201, &b"{}"[..]));
        for bad in [
            &b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\n{}"[..],
            b"HTTP/1.1 201 Created\r\n\r\n{}",
            b"HTTP/1.0 201 Created\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 2x1 Created\r\ncontent-length: 2\r\n\r\n{}",
            b"garbage",
            b"",
        ] {
            assert!(matches!(parse_response(bad), Err(ServeError::Admin { status: 0, .. })));
        }
    }

    #[test]
    fn the_response_debug_hides_the_token() {
        let r = AdminEnrollResponse { token: "s3cret".into(), expires_at: Timestamp(1) };
        assert!(!format!("{r:?}").contains("s3cret"));
    }
}
