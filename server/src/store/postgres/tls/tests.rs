//! `sslmode` and `sslrootcert`: how URLs are read (no database), then
//! connections to a throwaway cluster serving TLS with a certificate from
//! a CA made here, and to the shared cluster, which has no TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr as _;
use std::sync::OnceLock;
use std::time::Duration;

use medrelay_policy::{EventSalt, LeafOpening};

use super::*;
use crate::store::postgres::testing::{available, fresh_database, ClusterOptions, ServerTls, TestCluster};
use crate::store::postgres::PgStore;
use crate::store::{LogAppend, Store as _};

/// In every URL below: no error may show it.
const PASSWORD: &str = "pw-N0t-in-any-error";
/// The only name in the TLS cluster's certificate.
const SERVER_NAME: &str = "db.medrelay.test";

fn split(url: &str) -> (Policy, Config) {
    let s = split_ssl_options(url).unwrap();
    let c = Config::from_str(&s.rest).unwrap();
    (policy(s.sslmode.as_deref(), s.sslrootcert.as_deref(), &c).unwrap(), c)
}

/// A root file (the test CA, made once).
fn root_file() -> &'static str {
    static FILE: OnceLock<(tempfile::TempDir, String)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ca.pem");
            std::fs::write(&path, ca("a CA").0.pem()).unwrap();
            let shown = path.to_str().unwrap().to_owned();
            (dir, shown)
        })
        .1
}

fn configure_err(url: &str) -> String {
    let err = configure(url).unwrap_err().to_string();
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    err
}

#[test]
fn sslmode_defaults_to_prefer_and_every_libpq_mode_is_read() {
    let (p, c) = split("postgres://u@db.example/d");
    assert_eq!((p.mode, p.roots, p.local_socket), (SslMode::Prefer, None, false));
    assert_eq!(c.get_ssl_mode(), PgSslMode::Prefer);
    for (mode, want, driver) in [
        ("disable", SslMode::Disable, PgSslMode::Disable),
        ("prefer", SslMode::Prefer, PgSslMode::Prefer),
        ("require", SslMode::Require, PgSslMode::Require),
        ("verify-ca", SslMode::VerifyCa, PgSslMode::Require),
        ("verify-full", SslMode::VerifyFull, PgSslMode::Require),
    ] {
        let url = format!("postgres://u@db.example/d?sslmode={mode}&sslrootcert=system");
        let url = if want == SslMode::VerifyFull { url } else { url.replace("&sslrootcert=system", "") };
        let url = if want == SslMode::VerifyCa { format!("{url}&sslrootcert={}", root_file()) } else { url };
        let (p, _) = split(&url);
        assert_eq!(p.mode, want);
        // What the driver is told (it knows no verify-*; TLS is required).
        let (config, link) = configure(&url).unwrap();
        assert_eq!(config.get_ssl_mode(), driver, "{mode}");
        assert_eq!(link.policy.mode, want);
    }
}

#[test]
fn verify_full_without_sslrootcert_trusts_the_system_store_and_weaker_modes_check_nothing() {
    let file = |url: &str| split(url).0.roots;
    assert_eq!(file("postgres://h/d?sslmode=verify-full"), Some(Roots::System));
    assert_eq!(
        file("postgres://h/d?sslmode=verify-ca&sslrootcert=/ca.pem"),
        Some(Roots::File("/ca.pem".into()))
    );
    assert_eq!(file("postgres://h/d?sslmode=require"), None);
    assert_eq!(file("postgres://h/d?sslmode=prefer"), None);
    // As libpq: a root file makes require (and prefer) check the chain.
    assert_eq!(
        file("postgres://h/d?sslmode=require&sslrootcert=/ca.pem"),
        Some(Roots::File("/ca.pem".into()))
    );
    assert_eq!(file("postgres://h/d?sslmode=disable&sslrootcert=/ca.pem"), None);
    // sslrootcert=system alone means verify-full (libpq 16).
    let (p, _) = split("postgres://h/d?sslrootcert=system");
    assert_eq!((p.mode, p.roots), (SslMode::VerifyFull, Some(Roots::System)));
}

#[test]
fn ssl_options_are_taken_out_of_a_url_and_the_rest_is_left_to_the_driver() {
    let s = split_ssl_options(
        "postgres://u:p%26w@h:5433/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fmy%20ca.pem\
         &connect_timeout=5",
    )
    .unwrap();
    assert_eq!(s.rest.as_str(), "postgres://u:p%26w@h:5433/db?application_name=x&connect_timeout=5");
    assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
    assert_eq!(s.sslrootcert.as_deref(), Some("/etc/my ca.pem"));
    let c = Config::from_str(&s.rest).unwrap();
    assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(5)));
    assert_eq!(c.get_password(), Some(&b"p&w"[..]));
    // A '?' in the password is part of it, as the driver reads it.
    let s = split_ssl_options("postgres://u:p?w@h/db?sslmode=require").unwrap();
    assert_eq!((s.rest.as_str(), s.sslmode.as_deref()), ("postgres://u:p?w@h/db", Some("require")));
    // Nothing but ssl options: no dangling '?'.
    let s = split_ssl_options("postgresql://h/db?sslmode=disable&sslrootcert=/x").unwrap();
    assert_eq!(s.rest.as_str(), "postgresql://h/db");
    // No query at all.
    let s = split_ssl_options("postgres://h/db").unwrap();
    assert_eq!((s.rest.as_str(), s.sslmode, s.sslrootcert), ("postgres://h/db", None, None));
    // The driver's own ssl option stays.
    let s = split_ssl_options("postgres://h/db?sslnegotiation=direct&sslmode=require").unwrap();
    assert_eq!(s.rest.as_str(), "postgres://h/db?sslnegotiation=direct");
}

#[test]
fn key_value_strings_take_quoted_and_escaped_ssl_options() {
    let s = split_ssl_options(
        r"host=h dbname=d password='a b\'c'  sslmode = verify-ca sslrootcert='/etc/my ca.pem' port=5433",
    )
    .unwrap();
    assert_eq!(s.rest.as_str(), r"host=h dbname=d password='a b\'c' port=5433");
    assert_eq!(s.sslmode.as_deref(), Some("verify-ca"));
    assert_eq!(s.sslrootcert.as_deref(), Some("/etc/my ca.pem"));
    let c = Config::from_str(&s.rest).unwrap();
    assert_eq!(c.get_password(), Some(&b"a b'c"[..]));
    assert_eq!(c.get_ports(), &[5433]);
    let s = split_ssl_options(r"host=h sslrootcert=/a\ b.pem").unwrap();
    assert_eq!((s.rest.as_str(), s.sslrootcert.as_deref()), ("host=h", Some("/a b.pem")));
}

#[test]
fn bad_ssl_options_are_clear_errors_that_never_show_the_password() {
    let url = |q: &str| format!("postgres://medrelay:{PASSWORD}@db.example/d?{q}");
    let err = configure_err(&url("sslmode=verify"));
    assert!(
        err.contains("sslmode that is not one of disable, prefer, require, verify-ca, verify-full"),
        "{err}"
    );
    let err = configure_err(&url("sslmode=require&sslcert=/c.pem"));
    assert!(err.contains("sslcert is not supported"), "{err}");
    let err = configure_err(&url("sslcrl=/crl.pem"));
    assert!(err.contains("sslcrl is not supported"), "{err}");
    let err = configure_err(&url("sslmode=require&sslrootcert=system"));
    assert!(err.contains("sslrootcert=system needs sslmode=verify-full (not require)"), "{err}");
    // Public roots without the name check would vouch for anyone.
    let err = configure_err(&url("sslmode=verify-ca"));
    assert!(err.contains("sslmode=verify-ca needs sslrootcert"), "{err}");
    let err = configure_err(&url("sslmode=verify-ca&sslrootcert=system"));
    assert!(err.contains("sslrootcert=system needs sslmode=verify-full (not verify-ca)"), "{err}");
    let err = configure_err(&url("sslmode=verify-full&sslrootcert="));
    assert!(err.contains("empty sslrootcert"), "{err}");
    let err = configure_err(&format!("host=db.example password={PASSWORD} sslrootcert='/x"));
    assert!(err.contains("unterminated quoted value"), "{err}");
    let err = configure_err(&format!("host=db.example password={PASSWORD} sslmode"));
    assert!(err.contains("expected key=value pairs"), "{err}");
    let err = configure_err(&format!("postgres://medrelay:{PASSWORD}@[::1/d"));
    assert!(err.contains("does not parse"), "{err}");
    // Root files: missing, not PEM, no certificate in it.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = configure_err(&url(&format!("sslmode=verify-full&sslrootcert={}", missing.display())));
    assert!(err.contains(&format!("sslrootcert {}", missing.display())), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = configure_err(&url(&format!("sslmode=verify-ca&sslrootcert={}", empty.display())));
    assert!(err.contains("no PEM certificate in the file"), "{err}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let err = configure_err(&url(&format!("sslmode=verify-full&sslrootcert={}", garbage.display())));
    assert!(err.contains("is not a usable root"), "{err}");
}

#[test]
fn a_unix_socket_host_never_uses_tls() {
    let (p, _) = split("host=/var/run/postgresql dbname=d sslmode=verify-full");
    assert!(p.local_socket);
    assert_eq!(p.roots, None);
    let (config, _) = configure("host=/var/run/postgresql dbname=d sslmode=verify-full").unwrap();
    assert_eq!(config.get_ssl_mode(), PgSslMode::Disable);
    // A TCP host among them: TLS as asked.
    let (p, _) = split("host=/var/run/postgresql,db.example dbname=d sslmode=verify-full");
    assert!(!p.local_socket);
}

#[test]
fn only_hosts_off_this_machine_are_warned_about() {
    let remote = |url: &str| remote_hosts(&Config::from_str(url).unwrap());
    assert!(remote("postgres://u@127.0.0.1/d").is_empty());
    assert!(remote("postgres://u@localhost/d").is_empty());
    assert!(remote("postgres://u@[::1]:5432/d").is_empty());
    assert!(remote("host=/var/run/postgresql dbname=d").is_empty());
    assert_eq!(remote("postgres://u@db.example/d"), ["db.example"]);
    assert_eq!(remote("postgres://u@localhost,10.1.2.3/d"), ["10.1.2.3"]);
    // hostaddr decides where the connection goes.
    assert!(remote("postgres://u@db.example/d?hostaddr=127.0.0.1").is_empty());
    assert_eq!(remote("postgres://u@localhost/d?hostaddr=192.0.2.1"), ["localhost"]);
}

/// The TLS cluster and the root files the tests use, in its directory.
#[derive(Debug)]
struct Tls {
    cluster: TestCluster,
    /// The CA that issued the server's certificate.
    ca: PathBuf,
    /// Another CA.
    other_ca: PathBuf,
}

static TLS: OnceLock<Result<Tls, String>> = OnceLock::new();

fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    (p.self_signed(&key).unwrap(), key)
}

fn start_tls_cluster() -> Result<Tls, String> {
    let (ca_cert, ca_key) = ca("medrelay test CA");
    let (other_ca, _) = ca("some other CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, SERVER_NAME);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let tls = ServerTls { cert_chain_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()) };
    let cluster = TestCluster::start_with(ClusterOptions { durable: false, tls: Some(tls) })?;
    let (ca, other) = (cluster.dir().join("ca.pem"), cluster.dir().join("other-ca.pem"));
    std::fs::write(&ca, ca_cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(&other, other_ca.pem()).map_err(|e| e.to_string())?;
    Ok(Tls { cluster, ca, other_ca: other })
}

fn tls_cluster() -> Option<&'static Tls> {
    available(TLS.get_or_init(start_tls_cluster))
}

impl Tls {
    /// A URL of a fresh database, reached by `host` (the connection goes
    /// to 127.0.0.1 whatever the name), with `query` appended.
    fn url(&self, host: &str, query: &str) -> String {
        let created = self.cluster.create_database().unwrap();
        let db = created.rsplit('/').next().unwrap();
        let port = self.cluster.port();
        format!("postgres://medrelay:{PASSWORD}@{host}:{port}/{db}?hostaddr=127.0.0.1&{query}")
    }
}

/// Whether the store's connection is encrypted, as the server sees it.
fn encrypted(store: &PgStore) -> bool {
    store
        .run(|c| Ok(c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?.get(0)))
        .unwrap()
}

fn event(tag: u8) -> LogAppend {
    let opening = LeafOpening::from_parts(EventSalt::from_bytes([tag; 32]), vec![tag]).unwrap();
    LogAppend { opening, subjects: vec![] }
}

/// Opens, writes and reads.
fn store_works(url: &str) -> PgStore {
    let store = PgStore::open_with(url, 2).unwrap();
    assert_eq!(store.append_log(&event(1)).unwrap(), 0);
    assert_eq!(store.append_log(&event(2)).unwrap(), 1);
    assert_eq!(store.log_size().unwrap(), 2);
    store
}

fn open_err(url: &str) -> String {
    let err = PgStore::open_with(url, 1).unwrap_err().to_string();
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    err
}

#[test]
fn verify_full_with_the_right_ca_connects_encrypted_and_the_store_works() {
    let Some(tls) = tls_cluster() else { return };
    let url = tls.url(SERVER_NAME, &format!("sslmode=verify-full&sslrootcert={}", tls.ca.display()));
    let store = store_works(&url);
    assert!(encrypted(&store));
    // The same in libpq's keyword/value form.
    let created = tls.cluster.create_database().unwrap();
    let db = created.rsplit('/').next().unwrap();
    let kv = format!(
        "host={SERVER_NAME} hostaddr=127.0.0.1 port={} user=medrelay password={PASSWORD} dbname={db} \
         sslmode=verify-full sslrootcert='{}'",
        tls.cluster.port(),
        tls.ca.display()
    );
    assert!(encrypted(&store_works(&kv)));
}

#[test]
fn a_certificate_from_another_ca_is_refused_under_verify_full_and_verify_ca() {
    let Some(tls) = tls_cluster() else { return };
    for mode in ["verify-full", "verify-ca"] {
        let url = tls.url(SERVER_NAME, &format!("sslmode={mode}&sslrootcert={}", tls.other_ca.display()));
        let err = open_err(&url);
        assert!(err.contains(&format!("cannot connect with sslmode={mode}")), "{err}");
        assert!(err.contains("not issued by a trusted CA"), "{err}");
        assert!(err.contains(&format!("sslrootcert={}", tls.other_ca.display())), "{err}");
    }
    // Without sslrootcert the system's roots are used, and they do not
    // hold the test CA either.
    let err = open_err(&tls.url(SERVER_NAME, "sslmode=verify-full"));
    assert!(err.contains("not issued by a trusted CA (the system's trusted roots)"), "{err}");
}

#[test]
fn verify_full_refuses_a_host_name_the_certificate_lacks_and_verify_ca_does_not_check_it() {
    let Some(tls) = tls_cluster() else { return };
    let ca = tls.ca.display();
    let err = open_err(&tls.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")));
    assert!(err.contains("cannot connect with sslmode=verify-full"), "{err}");
    assert!(err.contains("not valid for the host name 127.0.0.1"), "{err}");
    assert!(err.contains(&format!("(it names {SERVER_NAME}")), "the names the certificate holds: {err}");
    assert!(!err.contains("DnsName"), "names as a person writes them: {err}");
    let store = store_works(&tls.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")));
    assert!(encrypted(&store));
}

#[test]
fn require_encrypts_without_authenticating_and_disable_stays_plaintext() {
    let Some(tls) = tls_cluster() else { return };
    // As libpq: no roots, no check; the link is encrypted all the same.
    assert!(encrypted(&store_works(&tls.url("127.0.0.1", "sslmode=require"))));
    // prefer takes the TLS the server offers.
    assert!(encrypted(&store_works(&tls.url("127.0.0.1", "sslmode=prefer"))));
    assert!(!encrypted(&store_works(&tls.url("127.0.0.1", "sslmode=disable"))));
    // With sslrootcert, require checks the chain (as libpq).
    let err =
        open_err(&tls.url("127.0.0.1", &format!("sslmode=require&sslrootcert={}", tls.other_ca.display())));
    assert!(err.contains("sslmode=require") && err.contains("not issued by a trusted CA"), "{err}");
}

#[test]
fn prefer_does_not_fall_back_to_plaintext_after_a_failed_handshake() {
    let Some(tls) = tls_cluster() else { return };
    let url = tls.url(SERVER_NAME, &format!("sslmode=prefer&sslrootcert={}", tls.other_ca.display()));
    let err = open_err(&url);
    assert!(err.contains("cannot connect with sslmode=prefer"), "{err}");
    assert!(err.contains("not issued by a trusted CA"), "{err}");
}

/// A URL of a fresh database on the shared cluster (no TLS), with the
/// password and `query`.
fn plain_url(query: &str) -> Option<String> {
    let url = fresh_database()?;
    let url = url.replacen("postgres://medrelay@", &format!("postgres://medrelay:{PASSWORD}@"), 1);
    Some(format!("{url}?{query}"))
}

#[test]
fn modes_that_need_tls_refuse_a_server_without_it() {
    let Some(url) = plain_url("sslmode=require") else { return };
    let err = open_err(&url);
    assert!(err.contains("cannot connect with sslmode=require"), "{err}");
    assert!(err.contains("the server does not accept TLS"), "{err}");
    let Some(url) = plain_url("sslmode=verify-full&sslrootcert=system") else { return };
    let err = open_err(&url);
    assert!(err.contains("sslmode=verify-full") && err.contains("does not accept TLS"), "{err}");
}

#[test]
fn disable_and_prefer_work_against_a_server_without_tls() {
    let Some(url) = plain_url("sslmode=disable") else { return };
    assert!(!encrypted(&store_works(&url)));
    // prefer: the server refused TLS, so plaintext (as libpq).
    let Some(url) = plain_url("sslmode=prefer") else { return };
    assert!(!encrypted(&store_works(&url)));
}

#[test]
fn a_connection_failure_says_why_without_the_password() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = open_err(&format!(
        "postgres://medrelay:{PASSWORD}@127.0.0.1:{port}/d?sslmode=disable&connect_timeout=5"
    ));
    assert!(err.contains("cannot connect with sslmode=disable: error connecting to server"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "the cause is shown: {err}");
}

#[test]
fn presented_names_read_as_written() {
    use super::presented_name;
    assert_eq!(presented_name("DnsName(\"db.example.org\")"), "db.example.org");
    assert_eq!(presented_name("IpAddress(10.0.0.5)"), "10.0.0.5");
    assert_eq!(presented_name("DirectoryName"), "DirectoryName");
    assert_eq!(presented_name("DnsName(\"unterminated"), "DnsName(\"unterminated");
}
