//! TLS on the link to PostgreSQL: libpq's `sslmode` and `sslrootcert`,
//! over rustls (`ring`).
//!
//! The database URL (`postgres://…?sslmode=verify-full&sslrootcert=/etc/medrelay/db-ca.pem`,
//! or `host=… sslmode=… sslrootcert=…`) chooses what the link protects:
//!
//! | `sslmode` | encrypted | server authenticated |
//! | --- | --- | --- |
//! | `disable` | no | no |
//! | `prefer` (libpq's default, and ours) | if the server offers TLS | no (chain only with `sslrootcert`) |
//! | `require` | yes | no (chain only with `sslrootcert`) |
//! | `verify-ca` | yes | its certificate chains to a trusted root; any host name |
//! | `verify-full` | yes | chains to a trusted root *and* names the host in the URL |
//!
//! As in libpq, `require` (and `prefer`) encrypt without checking who
//! answers: an attacker on the path can pose as the database. Only
//! `verify-full` authenticates the server; [`Link::log_choice`] warns when a
//! non-loopback host is used with anything less. Also as in libpq, giving
//! `sslrootcert` to `prefer` or `require` adds the chain check of
//! `verify-ca`.
//!
//! `prefer` falls back to plaintext only when the server answers that it
//! does not do TLS (the `SSLRequest` is refused); a TLS handshake that
//! fails (an unknown CA, a broken handshake) is an error, never a silent
//! downgrade (tokio-postgres's `connect_tls` behaves so).
//!
//! # Trusted roots
//! `sslrootcert=/path/ca.pem` trusts the PEM certificates in that file
//! (the provider's or the hospital's CA). Without `sslrootcert`,
//! `verify-full` trusts the system's store (`rustls-native-certs`:
//! `/etc/ssl/certs` on Debian), as libpq 16 does for `sslrootcert=system`
//! (also accepted, and, as in libpq, only with `verify-full`: public roots
//! vouch for host names, so without the name check any server holding any
//! public certificate would pass). For the same reason `verify-ca` needs
//! `sslrootcert`. Not libpq's `~/.postgresql/root.crt`: the server runs
//! as a service account whose home directory is nobody's configuration,
//! while the system store is what operators already manage (a hospital's
//! internal CA is added with `update-ca-certificates`) and already holds the
//! public roots of managed services whose certificates chain to one. The
//! system store rather than a compiled-in list (`webpki-roots`) for the
//! same reason: an internal CA cannot be added to a compiled-in list.
//!
//! Not supported (an error naming the option, rather than ignored):
//! client certificates (`sslcert`, `sslkey`, `sslpassword`), revocation
//! lists (`sslcrl`, `sslcrldir`) and the other `ssl*` options. As in libpq,
//! a Unix-socket host never uses TLS whatever `sslmode` says.
//!
//! The URL may hold a password: nothing here puts the URL, or any part of
//! it but host names and the `sslrootcert` path, in an error or a log line.

use std::error::Error as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use postgres::config::{Host, SslMode as PgSslMode};
use postgres::Config;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;
use zeroize::Zeroizing;

use crate::store::StoreError;

/// Largest `sslrootcert` file read (a bundle of a few hundred roots fits).
const MAX_ROOT_FILE: u64 = 4 << 20;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it.
    Prefer,
    /// TLS, server not authenticated.
    Require,
    /// TLS, the server's chain checked, not its name.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// `sslrootcert=PATH`: the PEM certificates in that file.
    File(PathBuf),
    /// `sslrootcert=system`, or `verify-full` without `sslrootcert`.
    System,
}

impl std::fmt::Display for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Roots::File(p) => write!(f, "sslrootcert={}", p.display()),
            Roots::System => f.write_str("the system's trusted roots"),
        }
    }
}

/// What the URL asks of the link: the mode and the roots it checks
/// against (`None`: the server's certificate is not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    mode: SslMode,
    roots: Option<Roots>,
    /// Every host is a Unix socket: no TLS, whatever `mode` says.
    local_socket: bool,
}

/// How connections to the database are secured; made once when the store
/// opens (so a bad `sslrootcert` fails there).
pub(super) struct Link {
    policy: Policy,
    connector: MakeRustlsConnect,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("policy", &self.policy).finish_non_exhaustive()
    }
}

fn url_err(what: &str) -> StoreError {
    StoreError::Backend(format!("the database URL {what}"))
}

/// Parses `url` into the driver's configuration and the link's security.
pub(super) fn configure(url: &str) -> Result<(Config, Link), StoreError> {
    let split = split_ssl_options(url)?;
    let mut config = Config::from_str(&split.rest)
        // The parser's message may quote the URL (and a password in it).
        .map_err(|_| {
            url_err(
                "does not parse (expected postgres://user@host:port/dbname?sslmode=verify-full or \
                 host=… dbname=…)",
            )
        })?;
    let policy = policy(split.sslmode.as_deref(), split.sslrootcert.as_deref(), &config)?;
    config.ssl_mode(match policy.mode {
        _ if policy.local_socket => PgSslMode::Disable,
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let connector = MakeRustlsConnect::new(client_config(&policy)?);
    Ok((config, Link { policy, connector }))
}

/// The mode and roots `sslmode` and `sslrootcert` (as libpq reads them)
/// ask for on `config`'s hosts.
fn policy(sslmode: Option<&str>, sslrootcert: Option<&str>, config: &Config) -> Result<Policy, StoreError> {
    let roots = match sslrootcert {
        None => None,
        Some("") => return Err(url_err("has an empty sslrootcert")),
        Some("system") => Some(Roots::System),
        Some(path) => Some(Roots::File(PathBuf::from(path))),
    };
    let mode = match sslmode {
        Some(s) => SslMode::parse(s).ok_or_else(|| {
            url_err("has an sslmode that is not one of disable, prefer, require, verify-ca, verify-full")
        })?,
        // libpq: the system store is only trusted with host name checks.
        None if roots == Some(Roots::System) => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if roots == Some(Roots::System) && mode != SslMode::VerifyFull {
        return Err(StoreError::Backend(format!(
            "sslrootcert=system needs sslmode=verify-full (not {mode}): the system's roots vouch for \
             host names, so only the host name check makes them mean anything"
        )));
    }
    let roots = match (mode, roots) {
        (SslMode::Disable, _) => None,
        (SslMode::VerifyFull, None) => Some(Roots::System),
        (SslMode::VerifyCa, None) => {
            return Err(StoreError::Backend(
                "sslmode=verify-ca needs sslrootcert=/path/ca.pem, a CA that issues certificates only \
                 for the database: with the system's public roots it would accept any server holding \
                 any public certificate"
                    .into(),
            ))
        }
        (_, roots) => roots,
    };
    let hosts = config.get_hosts();
    let local_socket = !hosts.is_empty()
        && config.get_hostaddrs().is_empty()
        && hosts.iter().all(|h| !matches!(h, Host::Tcp(_)));
    let roots = if local_socket { None } else { roots };
    Ok(Policy { mode, roots, local_socket })
}

/// A URL with libpq's `sslmode` and `sslrootcert` taken out (the driver
/// knows neither `verify-*` nor `sslrootcert`).
struct SplitUrl {
    /// The rest, for the driver (it may hold a password).
    rest: Zeroizing<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// `ssl*` options the driver handles itself.
const DRIVER_SSL_OPTIONS: &[&str] = &["sslnegotiation"];

/// The options taken out of a URL for this module.
#[derive(Clone, Copy)]
enum SslOption {
    Mode,
    RootCert,
}

/// Which of this module's options `key` is (`None`: the driver's), or an
/// error for the `ssl*` options nothing here implements (naming the
/// option, never its value).
fn ssl_option(key: &str) -> Result<Option<SslOption>, StoreError> {
    match key {
        "sslmode" => Ok(Some(SslOption::Mode)),
        "sslrootcert" => Ok(Some(SslOption::RootCert)),
        k if k.starts_with("ssl") && !DRIVER_SSL_OPTIONS.contains(&k) => Err(StoreError::Backend(format!(
            "the database URL's {k} is not supported (only sslmode, sslrootcert and sslnegotiation)"
        ))),
        _ => Ok(None),
    }
}

impl SplitUrl {
    fn set(&mut self, option: SslOption, value: String) {
        match option {
            SslOption::Mode => self.sslmode = Some(value),
            SslOption::RootCert => self.sslrootcert = Some(value),
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query or
/// a `key=value` string.
fn split_ssl_options(url: &str) -> Result<SplitUrl, StoreError> {
    let mut out = SplitUrl { rest: Zeroizing::new(String::new()), sslmode: None, sslrootcert: None };
    let Some(after) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) else {
        for pair in key_value_pairs(url)? {
            match ssl_option(pair.key)? {
                Some(option) => out.set(option, pair.value.to_string()),
                None => {
                    if !out.rest.is_empty() {
                        out.rest.push(' ');
                    }
                    out.rest.push_str(pair.text);
                }
            }
        }
        return Ok(out);
    };
    // As the driver reads a URL: the credentials run to the first '@', and
    // the query starts at the first '?' after them.
    let creds_end = after.find('@').map_or(0, |i| i + 1);
    let Some(q) = after[creds_end..].find('?') else {
        out.rest.push_str(url);
        return Ok(out);
    };
    let query_start = (url.len() - after.len()) + creds_end + q + 1;
    out.rest.push_str(&url[..query_start]);
    let mut kept = 0;
    for pair in url[query_start..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match ssl_option(&percent_decode(k, "an option name")?)? {
            Some(option) => out.set(option, percent_decode(v, "an ssl option value")?),
            None => {
                if kept > 0 {
                    out.rest.push('&');
                }
                out.rest.push_str(pair);
                kept += 1;
            }
        }
    }
    if kept == 0 {
        out.rest.pop(); // the '?'
    }
    Ok(out)
}

fn percent_decode(s: &str, what: &str) -> Result<String, StoreError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| url_err(&format!("has {what} that is not UTF-8 once decoded")))
}

/// One `key = value` pair of a libpq keyword/value string.
struct Pair<'a> {
    key: &'a str,
    /// Unquoted and unescaped.
    value: Zeroizing<String>,
    /// The pair as written.
    text: &'a str,
}

/// The `key = value` pairs of a libpq keyword/value string, as the driver
/// reads them (values bare or in single quotes, `\` escaping the next
/// character).
fn key_value_pairs(s: &str) -> Result<Vec<Pair<'_>>, StoreError> {
    let mut pairs = Vec::new();
    let mut it = s.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut it);
        let Some(&(start, _)) = it.peek() else { break };
        while it.next_if(|&(_, c)| !c.is_whitespace() && c != '=').is_some() {}
        let key_end = it.peek().map_or(s.len(), |&(i, _)| i);
        skip_ws(&mut it);
        if it.next().map(|(_, c)| c) != Some('=') {
            return Err(url_err("does not parse (expected key=value pairs)"));
        }
        skip_ws(&mut it);
        let mut value = Zeroizing::new(String::new());
        let quoted = it.next_if(|&(_, c)| c == '\'').is_some();
        let mut closed = !quoted;
        while let Some((_, c)) = it.next_if(|&(_, c)| quoted || !c.is_whitespace()) {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = it.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    closed = true;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            return Err(url_err("has an unterminated quoted value"));
        }
        let end = it.peek().map_or(s.len(), |&(i, _)| i);
        pairs.push(Pair { key: &s[start..key_end], value, text: &s[start..end] });
    }
    Ok(pairs)
}

impl Link {
    /// The connector every connection of the pool uses.
    pub(super) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// Logs what the link protects, and warns when a host that is not on
    /// this machine is reached without `verify-full`.
    pub(super) fn log_choice(&self, config: &Config) {
        let roots = self.policy.roots.as_ref().map_or_else(|| "none".to_owned(), Roots::to_string);
        tracing::info!(sslmode = %self.policy.mode, roots = %roots, "postgres link");
        let remote = remote_hosts(config);
        if self.policy.mode == SslMode::VerifyFull || remote.is_empty() {
            return;
        }
        let risk = match self.policy.mode {
            SslMode::Disable | SslMode::Prefer => {
                "the link may be plaintext and the server is not authenticated: anyone on the path can \
                 read and change what the server stores"
            }
            SslMode::Require => {
                "the link is encrypted but the server is not authenticated: anyone on the path can pose \
                 as the database"
            }
            SslMode::VerifyCa | SslMode::VerifyFull => {
                "the server's host name is not checked: any server holding a certificate from the \
                 trusted CA can pose as the database"
            }
        };
        tracing::warn!(
            sslmode = %self.policy.mode,
            hosts = %remote.join(","),
            "PostgreSQL on another host without sslmode=verify-full: {risk}"
        );
    }

    /// The error of a connection that failed: says the `sslmode` and, for a
    /// TLS failure, which check failed and why.
    pub(super) fn connect_error(&self, e: &postgres::Error) -> StoreError {
        let mode = self.policy.mode;
        let cause = self.tls_cause(e).unwrap_or_else(|| error_chain(e));
        StoreError::Backend(format!("postgres: cannot connect with sslmode={mode}: {cause}"))
    }

    fn tls_cause(&self, e: &postgres::Error) -> Option<String> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = next {
            let tls = err
                .downcast_ref::<rustls::Error>()
                .or_else(|| err.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>());
            if let Some(tls) = tls {
                return Some(self.describe_tls(tls));
            }
            // tokio-postgres's words for a server that refused the SSLRequest.
            if err.to_string() == "server does not support TLS" {
                return Some(
                    "the server does not accept TLS (its ssl setting is off): use a server with TLS, \
                     or sslmode=prefer or disable on a link that needs no protection"
                        .into(),
                );
            }
            next = err.source();
        }
        None
    }

    fn describe_tls(&self, e: &rustls::Error) -> String {
        let roots = self.policy.roots.as_ref().map_or_else(|| "no roots".to_owned(), Roots::to_string);
        match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                format!("the server's certificate is not issued by a trusted CA ({roots})")
            }
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                presented,
            }) => {
                format!(
                    "the server's certificate is not valid for the host name {} (it names {}): connect \
                     by a name the certificate holds, or use sslmode=verify-ca to check the CA only",
                    server_name(expected),
                    if presented.is_empty() {
                        "no host".to_owned()
                    } else {
                        presented.iter().map(|p| presented_name(p)).collect::<Vec<_>>().join(", ")
                    },
                )
            }
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                "the server's certificate is not valid for the host name in the URL: connect by a name \
                 the certificate holds, or use sslmode=verify-ca to check the CA only"
                    .into()
            }
            rustls::Error::InvalidCertificate(_) => {
                format!("the server's certificate is refused ({roots}): {e}")
            }
            other => format!("the TLS handshake failed: {other}"),
        }
    }
}

/// A name the certificate presents, as a person writes it: the TLS
/// library gives `DnsName("db.example")` and `IpAddress(10.0.0.5)`.
fn presented_name(p: &str) -> &str {
    p.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| p.strip_prefix("IpAddress(").and_then(|r| r.strip_suffix(')')))
        .unwrap_or(p)
}

fn server_name(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => "(unknown)".into(),
    }
}

/// `e` and its causes, joined (the driver's own `Display` omits them).
fn error_chain(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(err) = next {
        out.push_str(": ");
        out.push_str(&err.to_string());
        next = err.source();
    }
    out
}

/// The TCP hosts of `config` that are not this machine (by name or
/// address; a `hostaddr` decides where it is given).
fn remote_hosts(config: &Config) -> Vec<String> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    (0..hosts.len().max(addrs.len()))
        .filter_map(|i| {
            let is_local = match (addrs.get(i), hosts.get(i)) {
                (Some(addr), _) => addr.is_loopback(),
                (None, Some(Host::Tcp(name))) => {
                    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
                }
                (None, _) => true,
            };
            let shown = match (hosts.get(i), addrs.get(i)) {
                (Some(Host::Tcp(name)), _) => name.clone(),
                (_, Some(addr)) => addr.to_string(),
                _ => String::new(),
            };
            (!is_local).then_some(shown)
        })
        .collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration `policy` asks for.
fn client_config(policy: &Policy) -> Result<ClientConfig, StoreError> {
    let provider = provider();
    let tls_err = |e: rustls::Error| StoreError::Backend(format!("postgres TLS configuration: {e}"));
    let verifier: Arc<dyn ServerCertVerifier> = match (&policy.roots, policy.mode) {
        (None, _) => Arc::new(BelowVerifyFull { roots: None, provider: provider.clone() }),
        (Some(roots), SslMode::VerifyFull) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(roots)?), provider.clone())
                .build()
                .map_err(|e| StoreError::Backend(format!("postgres TLS roots ({roots}): {e}")))?
        }
        (Some(roots), _) => Arc::new(BelowVerifyFull {
            roots: Some(Arc::new(load_roots(roots)?)),
            provider: provider.clone(),
        }),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What libpq 17 sends; needed by servers that take TLS directly
    // (sslnegotiation=direct), ignored by the others.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The trusted roots `roots` names.
fn load_roots(roots: &Roots) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            for (i, cert) in read_pem_certificates(path)?.into_iter().enumerate() {
                store.add(cert).map_err(|e| {
                    StoreError::Backend(format!(
                        "sslrootcert {}: certificate {} is not a usable root: {e}",
                        path.display(),
                        i + 1
                    ))
                })?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system's trusted roots");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::warn!(ignored, "system roots that do not parse were skipped");
            }
            if added == 0 {
                return Err(StoreError::Backend(
                    "no trusted roots in the system store (install ca-certificates), and no sslrootcert: \
                     give the database's CA with sslrootcert=/path/ca.pem"
                        .into(),
                ));
            }
        }
    }
    Ok(store)
}

/// The PEM certificates in `path` (at least one).
fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let shown = path.display();
    let err = |what: String| StoreError::Backend(format!("sslrootcert {shown}: {what}"));
    let len = std::fs::metadata(path).map_err(|e| err(e.to_string()))?.len();
    if len > MAX_ROOT_FILE {
        return Err(err(format!("{len} bytes, more than a root bundle ({MAX_ROOT_FILE} bytes at most)")));
    }
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The verifier below `verify-full`: with `roots` (`verify-ca`, and
/// `prefer`/`require` with `sslrootcert`) the server's certificate must
/// chain to a trusted root, its names unchecked; without (`prefer` and
/// `require` without `sslrootcert`, as in libpq) any certificate is
/// accepted, so the link is encrypted but the server is not authenticated.
/// Either way the handshake's signatures are checked against the
/// certificate presented.
#[derive(Debug)]
struct BelowVerifyFull {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BelowVerifyFull {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
