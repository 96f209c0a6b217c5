//! The CLIs over https: a server with a certificate from a private CA is
//! reachable with `--ca-cert` (and `MEDRELAY_CA_CERT`), and refused
//! without it, as one clear line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// A private CA and a server certificate for 127.0.0.1, as PEM files.
fn private_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf_params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}

#[test]
fn https_with_a_private_ca() {
    let root = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_pki(root.path());
    let mut server = Server::init();
    server.start_with(&["--tls-cert".as_ref(), cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str()]);
    let url = server.https_url();
    let patient = User::new("medrelay-patient", root.path(), "patient");

    // Without the CA the certificate is not trusted, and no profile is made.
    let err = patient.run(&["init", "--server", &url]).fails_with(&format!("cannot reach server at {url}"));
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");
    assert!(!patient.profile.join("profile.json").exists());

    let ca = ca.to_str().unwrap();
    patient.run(&["init", "--server", &url, "--ca-cert", ca]).ok();
    let who = patient.run(&["whoami", "--json"]).json();
    assert_eq!(who["server"], url.as_str());
    patient.run(&["import", "--ca-cert", ca, data("fhir-patient-charlie.json").to_str().unwrap()]).ok();
    let records = patient.run(&["records", "--ca-cert", ca, "--json"]).json();
    assert_eq!(records.as_array().unwrap().len(), 7);
    // A CA file that holds no certificate is refused before connecting.
    let bogus = root.path().join("bogus.pem");
    std::fs::write(&bogus, "no certificate here").unwrap();
    patient.run(&["records", "--ca-cert", bogus.to_str().unwrap()]).fails_with("no PEM certificate");
}
