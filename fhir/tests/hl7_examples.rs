//! Acceptance: every example resource and Bundle of HL7's official R4
//! example package (npm `hl7.fhir.r4.examples` 4.0.1, CC0, 5,306 files)
//! either becomes records or is skipped with its reason; no file and no
//! entry fails.
//!
//! The package is fetched once from registry.npmjs.org, checked against
//! the sha512 the registry publishes for it (pinned here), and cached under
//! `target/test-cache/`. Without network it is skipped loudly, except in CI
//! (`CI=true`), where a failed download fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use medrelay_fhir::{plan_import, Format, ImportOptions, SkipReason, Source, StoredEntry};

const PACKAGE: &str = "hl7.fhir.r4.examples";
const VERSION: &str = "4.0.1";
const SHA512: &str =
    "DXBdIZOeQaSKIgCU7w6HOC7sw/6BzylmipLkBW4f//pT+Bc94x+8LImwTdvaNThPJoOzpBzvxAzNqjeu3X/zLw==";

/// The unpacked package directory, fetched if needed.
fn examples() -> Result<PathBuf, String> {
    let dest = target_dir().join("test-cache").join(format!("{PACKAGE}-{VERSION}"));
    if dest.join("package/package.json").is_file() {
        return Ok(dest.join("package"));
    }
    if !python3() {
        return Err("python3 is needed to fetch the package".into());
    }
    let script = workspace().join("fhir/tools/fetch_npm_package.py");
    let out = Command::new("python3")
        .arg(script)
        .args([PACKAGE, VERSION, SHA512])
        .arg(&dest)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("fetching {PACKAGE} {VERSION} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(dest.join("package"))
}

#[test]
fn every_hl7_r4_example_imports_or_is_skipped_with_its_reason() {
    let dir = match examples() {
        Ok(d) => d,
        Err(why) => return skip("every_hl7_r4_example_imports_or_is_skipped_with_its_reason", &why),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        // package.json is npm's manifest, not an example.
        .filter(|p| p.file_name().is_some_and(|n| n != "package.json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5300, "{} files", files.len());
    let mut records = 0usize;
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut record_types: BTreeMap<String, usize> = BTreeMap::new();
    let mut bundles = 0;
    let mut assigned = 0;
    let mut labelled = 0;
    let mut warnings = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("Bundle-") {
            bundles += 1;
        }
        let plan = plan_import(
            &[Source { name: &name, bytes: &bytes, format: Format::Json }],
            &ImportOptions::default(),
        );
        let f = &plan.files[0];
        assert!(f.error.is_none(), "{name}: {}", f.error.as_ref().unwrap());
        assert!(f.problems.is_empty(), "{name}: {}", f.problems[0]);
        assert!(f.resources > 0 || !f.skipped.is_empty(), "{name}: nothing found");
        for s in &f.skipped {
            let key = match &s.reason {
                SkipReason::NotPatientData(k) => k.as_str().to_owned(),
                SkipReason::NoResource { .. } => "entry without a resource".to_owned(),
            };
            *by_reason.entry(key).or_default() += 1;
        }
        warnings += f.warnings.len();
        for r in &plan.records {
            records += 1;
            *record_types.entry(r.resource_type.clone()).or_default() += 1;
            assigned += usize::from(r.assigned_id.is_some());
            labelled += usize::from(!r.category.sensitivity().is_empty());
            // Every body reads back, with a valid id.
            let e =
                StoredEntry::from_body(&r.body).unwrap_or_else(|e| panic!("{name} {}: {e}", r.reference()));
            assert_eq!(e.resource_type(), r.resource_type);
        }
    }
    eprintln!(
        "HL7 R4 examples: {} files ({bundles} Bundles): {records} records of {} types ({assigned} with an \
         assigned id, {labelled} labelled), skipped {by_reason:?}, {warnings} warnings",
        files.len(),
        record_types.len()
    );
    assert!(records > 700, "{records}");
    assert!(record_types.len() > 80, "{record_types:?}");
    assert!(by_reason.get("terminology resource").copied().unwrap_or(0) > 2000, "{by_reason:?}");
    assert!(by_reason.get("conformance resource").copied().unwrap_or(0) > 2000, "{by_reason:?}");
}
