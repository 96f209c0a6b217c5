#!/usr/bin/env python3
"""Downloads one npm package tarball from registry.npmjs.org, checks its
sha512 integrity against the value given (from the registry's metadata,
pinned by the caller), and unpacks it into DEST (which must not exist yet;
the unpacking goes to a temporary sibling that is renamed at the end, so an
interrupted run leaves nothing half-made).

Usage: fetch_npm_package.py NAME VERSION SHA512_BASE64 DEST
"""

import base64
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request


def main():
    name, version, integrity, dest = sys.argv[1:5]
    url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        tgz = os.path.join(tmp, "package.tgz")
        with urllib.request.urlopen(url, timeout=120) as r, open(tgz, "wb") as f:
            shutil.copyfileobj(r, f)
        with open(tgz, "rb") as f:
            digest = base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
        if digest != integrity:
            sys.exit(f"{url}: sha512 {digest} is not the pinned {integrity}")
        out = os.path.join(tmp, "unpacked")
        with tarfile.open(tgz) as t:
            # The "data" filter refuses absolute paths, links out of the
            # tree and device files.
            t.extractall(out, filter="data")
        os.rename(out, dest)
    print(f"fetched {url} into {dest}")


if __name__ == "__main__":
    main()
