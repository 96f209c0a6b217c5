//! The committed sensitivity table is exactly what `tools/gen_sensitivity.py`
//! makes from `../shared/valuesets/` (when that is present), and it keeps
//! its licence files beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use medrelay_fhir::sls::{TABLE_CSV, VALUE_SETS_CSV};

#[test]
fn the_committed_table_is_what_the_script_generates() {
    let Some(shared) = shared() else {
        return skip("the_committed_table_is_what_the_script_generates", "../shared/ is not present");
    };
    if !python3() {
        return skip("the_committed_table_is_what_the_script_generates", "python3 is not installed");
    }
    let script = workspace().join("fhir/tools/gen_sensitivity.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--valuesets")
        .arg(shared.join("valuesets"))
        .arg("--stdout")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (table, sets) = text.split_once("\u{c}\n").expect("two files, separated by a form feed");
    assert!(
        table == TABLE_CSV,
        "fhir/data/sensitivity.csv differs from the script's output: run {}",
        script.display()
    );
    assert!(sets == VALUE_SETS_CSV, "fhir/data/value-sets.csv differs from the script's output");
}

#[test]
fn the_table_ships_codes_with_their_licences_and_without_cpt_or_descriptions() {
    let data = workspace().join("fhir/data");
    for f in ["LICENSE-C2S-Apache-2.0", "NOTICE-C2S", "LICENSE-LEAP-SLS-GPL-3.0", "README.md"] {
        assert!(data.join(f).is_file(), "{f} must travel with the derived data");
    }
    let notice = std::fs::read_to_string(data.join("NOTICE-C2S")).unwrap();
    assert!(notice.contains("Copyright (c) 2016 SAMHSA"));
    let mut lines = TABLE_CSV.lines();
    assert_eq!(lines.next(), Some("system,code,label,provenance"));
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4, "{line}");
        assert!(["snomed", "icd-10-cm", "icd-9-cm", "rxnorm", "loinc", "hcpcs"].contains(&f[0]), "{line}");
        // Codes only: no descriptions (no spaces or letters runs in SNOMED,
        // RxNorm or LOINC codes).
        assert!(!f[1].contains(' '), "{line}");
        if f[0] == "hcpcs" {
            // HCPCS Level II only (a letter and four digits); CPT is (c) AMA.
            let b = f[1].as_bytes();
            assert!(
                b.len() == 5 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit),
                "{line}"
            );
        }
        if f[0] == "icd-10-cm" {
            assert!(!f[1].starts_with("F17"), "tobacco: {line}");
        }
    }
    assert!(!VALUE_SETS_CSV.contains("Tobacco") && !VALUE_SETS_CSV.contains("CPT"));
}
