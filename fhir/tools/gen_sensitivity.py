#!/usr/bin/env python3
"""Generates medrelay's sensitivity table (fhir/data/sensitivity.csv and
fhir/data/value-sets.csv).

Reads the openly licensed value sets in ../shared/valuesets/ (see its
SOURCES.md) and writes one CSV row per (code system, code, label,
provenance) to sensitivity.csv, where provenance is the key of a value set
described in value-sets.csv (its source, name, VSAC OID where known, and the
category it is filed under). The sources are:

* SAMHSA Consent2Share Value Set Service sample data
  (c2s-vss/vss_db_sample.sql, Apache-2.0, see fhir/data/NOTICE-C2S);
* the ONC LEAP Security Labeling Service rule table
  (leap-sls/sens-codes.csv, GPL-3.0).

What is left out, on purpose:

* CPT rows (codes and descriptors are (c) AMA), including the HCPCS-looking
  H/S codes LEAP files under CPT-4, and the CPT Category II codes (NNNNF)
  that C2S files under HCPCS: only HCPCS Level II codes ([A-V]NNNN) are kept;
* tobacco as substance use: every code of the C2S "Tobacco Use Disorders"
  value sets, and ICD-10-CM F17.* / ICD-9-CM 305.1* wherever they appear
  (C2S also files F17.200 and 305.1 under "Inhalants");
* categories medrelay has no label for (LEAP's "SICKLE CELL" and "ACS");
* every description: only codes are shipped (SNOMED CT descriptions are
  licensed separately).

Labels: C2S ETH -> substance-use, PSY -> mental-health, HIV and SEX ->
sexual-health; LEAP's drug and alcohol categories -> substance-use, its
HIV/AIDS category -> sexual-health. C2S files its "Other Psychoactive
Substance Use Disorder" value sets under PSY; those rows also get
substance-use (42 CFR Part 2 covers them), with that noted in provenance.

Usage:
  gen_sensitivity.py [--valuesets DIR] [--out-dir DIR | --stdout]

The output is deterministic (sorted, LF line ends), so a test can compare it
with the committed file.
"""

import argparse
import csv
import io
import os
import re
import sys

# Short code-system names used in the table; fhir/src/sls.rs maps FHIR system
# URIs (and their OIDs) to these.
SNOMED, ICD9, ICD10, RXNORM, LOINC, HCPCS, CPT = "snomed", "icd-9-cm", "icd-10-cm", "rxnorm", "loinc", "hcpcs", "cpt"

# C2S code_system_version ids 1..7 (SOURCES.md: in code_system order).
C2S_SYSTEMS = {1: SNOMED, 2: ICD9, 3: RXNORM, 4: ICD10, 5: LOINC, 6: HCPCS, 7: CPT}
C2S_LABELS = {"ETH": "substance-use", "PSY": "mental-health", "HIV": "sexual-health", "SEX": "sexual-health"}

LEAP_SYSTEMS = {
    "SNOMED-Clinical Terms": SNOMED,
    "ICD-9-Clinical Modification": ICD9,
    "ICD-9-CM": ICD9,
    "ICD-10-Clinical Modification": ICD10,
    "RxNorm": RXNORM,
    "LOINC": LOINC,
    "HCPCS": HCPCS,
    "CPT-4": CPT,
}
LEAP_LABELS = {
    "Drug abuse information sensitivity": "substance-use",
    "Alcohol Abuse and Alcoholism Information": "substance-use",
    "HIV/AIDS information sensitivity": "sexual-health",
}
# LEAP categories with no medrelay label (dropped, documented).
LEAP_DROPPED = {"SICKLE CELL", "ACS"}

HCPCS_LEVEL_II = re.compile(r"^[A-V][0-9]{4}$")
SQL_STRING = r"'((?:[^'\\]|\\.|'')*)'"


def is_tobacco_code(system, code):
    return (system == ICD10 and code.upper().startswith("F17")) or (system == ICD9 and code.startswith("305.1"))


def section(sql, start, end):
    i = sql.index(start)
    j = sql.index(end, i) if end else len(sql)
    return sql[i:j]


def read_c2s(path):
    """Returns ({value set id: (name, category code, oid)}, [(system, code, value set id)])."""
    with open(path, encoding="utf-8") as f:
        sql = f.read()
    cats = {}
    cat_sql = section(sql, "INSERT INTO `value_set_category`", "INSERT INTO `value_set`")
    for m in re.finditer(r"\((\d+), '([A-Z]+)', " + SQL_STRING, cat_sql):
        cats[int(m.group(1))] = m.group(2)
    value_sets = {}
    vs_sql = section(sql, "INSERT INTO `value_set`", "INSERT INTO coded_concept")
    s = SQL_STRING
    pattern = r"\((\d+), " + s + ", " + s + ", " + s + r", (\d+), " + s + ", " + s + r"\)"
    for m in re.finditer(pattern, vs_sql):
        value_sets[int(m.group(1))] = (m.group(3), cats[int(m.group(5))], m.group(7))
    concepts = {}
    cc_sql = section(sql, "INSERT INTO coded_concept", "INSERT INTO `coded_concept_value_set`")
    for m in re.finditer(r"\((\d+),\s*" + s + r",\s*" + s + r",\s*" + s + r",\s*(\d+)\)", cc_sql):
        concepts[int(m.group(1))] = (m.group(2).strip(), int(m.group(5)))
    links = re.findall(r"\((\d+),(\d+)\)", section(sql, "INSERT INTO `coded_concept_value_set`", None))
    # The counts SOURCES.md states: a changed file must not pass silently.
    if (len(value_sets), len(concepts), len(links)) != (57, 5361, 5704):
        sys.exit(f"unexpected C2S contents: {len(value_sets)} value sets, {len(concepts)} concepts, {len(links)} links")
    members = []
    for concept_id, vs_id in links:
        code, version = concepts[int(concept_id)]
        members.append((C2S_SYSTEMS[version], code, int(vs_id)))
    return value_sets, members


def read_leap(path):
    """Yields (system, code, category name, value set name)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header = ["CodeSystem Code", "CodeSystem Name", "Valueset Category Name", "Valueset Name", "Concept Code", "Concept Name"]
    if rows[0] != header or len(rows) != 3608:
        sys.exit(f"unexpected LEAP SLS header or row count ({len(rows) - 1})")
    for r in rows[1:]:
        yield LEAP_SYSTEMS[r[1]], r[4].strip(), r[2], r[3]


def build(valuesets):
    """Returns (table rows, value set rows)."""
    rows = set()
    used = {}
    value_sets, members = read_c2s(os.path.join(valuesets, "c2s-vss", "vss_db_sample.sql"))
    tobacco = {(sy, c) for sy, c, vs in members if "Tobacco" in value_sets[vs][0]}

    def keep(system, code):
        if system == CPT or (system == HCPCS and not HCPCS_LEVEL_II.match(code)):
            return False
        return (system, code) not in tobacco and not is_tobacco_code(system, code)

    for system, code, vs in members:
        if not keep(system, code):
            continue
        name, cat, oid = value_sets[vs]
        key = f"c2s-{vs}"
        labels = [C2S_LABELS[cat]]
        note = ""
        if cat == "PSY" and "Substance Use Disorder" in name:
            labels.append("substance-use")
            note = "filed under PSY; medrelay adds substance-use (42 CFR Part 2)"
        used[key] = ("SAMHSA Consent2Share VSS", name, oid, cat, note)
        for label in labels:
            rows.add((system, code, label, key))
    leap_keys = {}
    for system, code, cat, name in read_leap(os.path.join(valuesets, "leap-sls", "sens-codes.csv")):
        if cat in LEAP_DROPPED or not keep(system, code):
            continue
        key = leap_keys.setdefault(name, f"leap-{len(leap_keys) + 1}")
        used[key] = ("ONC LEAP SLS", name, "", cat, "")
        rows.add((system, code, LEAP_LABELS[cat], key))
    # Deterministic LEAP keys: numbered in order of first appearance in the
    # source file (stable as long as the file is).
    vs_rows = sorted(((k,) + v for k, v in used.items()), key=lambda r: (r[0].split("-")[0], int(r[0].split("-")[1])))
    return sorted(rows), vs_rows


def render(header, rows):
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--valuesets", default=os.path.join(repo, "..", "shared", "valuesets"))
    ap.add_argument("--out-dir", default=os.path.join(repo, "fhir", "data"), help="where to write both files")
    ap.add_argument("--stdout", action="store_true", help="print both files to stdout instead (for the test)")
    args = ap.parse_args()
    rows, vs_rows = build(args.valuesets)
    table = render(["system", "code", "label", "provenance"], rows)
    sets = render(["key", "source", "value_set", "oid", "category", "note"], vs_rows)
    if args.stdout:
        sys.stdout.write(table)
        sys.stdout.write("\f\n")
        sys.stdout.write(sets)
        return
    for name, text in (("sensitivity.csv", table), ("value-sets.csv", sets)):
        with open(os.path.join(args.out_dir, name), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)


if __name__ == "__main__":
    main()
