#!/usr/bin/env python3
"""Check that every environment variable the code or the tests read is documented in
docs/DESIGN.md ("Process-wide state and environment variables"; CTest `env_doc`).

Looks for getenv("NAME") in src/ and tests/ (C, CUDA) and process.env.NAME in tests/node/ and
tools/ (JavaScript, not node_modules/). Each NAME must appear in DESIGN.md as `NAME`. A few
variables of the system itself (TMPDIR, HOME, PATH) need no entry.

Usage: check-env-doc.py [repo root]   (default: the folder above this script)
Exit status 0 when every variable is documented, 1 with one line per missing one.
"""
import os
import re
import sys

SYSTEM = {"TMPDIR", "HOME", "PATH", "USER"}
C_RE = re.compile(r'getenv\("([A-Za-z_][A-Za-z0-9_]*)"\)')
JS_RE = re.compile(r"process\.env\.([A-Za-z_][A-Za-z0-9_]*)")


def scan(root, top, exts, pattern, found):
    for dirpath, dirnames, files in os.walk(os.path.join(root, top)):
        dirnames[:] = sorted(d for d in dirnames if d != "node_modules" and not d.startswith("."))
        for f in sorted(files):
            if not f.endswith(exts):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root)
            with open(path, encoding="utf-8", errors="replace") as fh:
                for m in pattern.finditer(fh.read()):
                    found.setdefault(m.group(1), rel)


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..")
    found = {}
    for top in ("src", "tests"):
        scan(root, top, (".c", ".h", ".cu", ".cuh"), C_RE, found)
    for top in ("tests", "tools"):
        scan(root, top, (".mjs", ".js"), JS_RE, found)
    with open(os.path.join(root, "docs", "DESIGN.md"), encoding="utf-8") as fh:
        design = fh.read()
    missing = [(n, where) for n, where in sorted(found.items())
               if n not in SYSTEM and f"`{n}`" not in design]
    for n, where in missing:
        print(f"{where}: reads ${n}, which docs/DESIGN.md does not list "
              "(\"Process-wide state and environment variables\")")
    if missing:
        print(f"check-env-doc: {len(missing)} undocumented environment variable(s)")
        return 1
    print(f"check-env-doc: all {len(found)} environment variables read are documented")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
