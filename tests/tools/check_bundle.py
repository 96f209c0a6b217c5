#!/usr/bin/env python3
"""Loads a FHIR R4 Bundle with an independent FHIR library (the Python
`fhir.resources` package, R4 4.0.1 models) and resolves its references
with an implementation written here, separately from medrelay's.

Usage: check_bundle.py BUNDLE.json
Prints one JSON object: {"fhir_version", "entries", "types", "references",
"unresolved": [{"entry", "reference"}]}. Exits non-zero if the Bundle does
not parse as an R4 Bundle.
"""

import json
import re
import sys
from collections import Counter

import fhir.resources
from fhir.resources.bundle import Bundle

TYPE_ID = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def references(value):
    if isinstance(value, dict):
        r = value.get("reference")
        if isinstance(r, str):
            yield r
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def main():
    path = sys.argv[1]
    if fhir.resources.__fhir_version__ != "4.0.1":
        sys.exit(f"fhir.resources models FHIR {fhir.resources.__fhir_version__}, not R4 4.0.1")
    # Structure, element names and types, against the R4 models.
    Bundle.parse_file(path)
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    entries = bundle.get("entry", [])
    urls = {e.get("fullUrl") for e in entries}
    type_ids = {(e["resource"]["resourceType"], e["resource"].get("id")) for e in entries}
    unresolved = []
    total = 0
    for i, e in enumerate(entries):
        res = e["resource"]
        full = e.get("fullUrl", "")
        contained = {c.get("id") for c in res.get("contained", [])}
        for ref in references(res):
            total += 1
            if ref.startswith("#"):
                ok = ref == "#" or ref[1:] in contained
            elif ref.startswith("urn:") or "://" in ref:
                m = TYPE_ID.match(ref)
                ok = ref in urls or (not ref.startswith("urn:") and m is not None and m.groups() in type_ids)
            else:
                m = TYPE_ID.match(ref)
                base = None
                if full.startswith("http://") or full.startswith("https://"):
                    fm = TYPE_ID.match(full)
                    if fm:
                        base = full[: full.rfind(fm.group(1) + "/" + fm.group(2))]
                ok = (base is not None and base + ref in urls) or (m is not None and m.groups() in type_ids)
            if not ok:
                unresolved.append({"entry": i, "reference": ref})
    print(json.dumps({
        "fhir_version": fhir.resources.__fhir_version__,
        "entries": len(entries),
        "types": Counter(e["resource"]["resourceType"] for e in entries),
        "references": total,
        "unresolved": unresolved,
    }))


if __name__ == "__main__":
    main()
