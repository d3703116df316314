#!/usr/bin/env python3
"""Check that every #include under src/ follows the layer graph (CTest `layers`).

Layers are folders of src/ (backend/cpu/ and backend/cuda/ are layers of their own: the CPU
kernels and the CUDA code are internals of one backend each). A file may include any header
of its own layer; across layers only along an arrow of ALLOWED below, and only a header the
target layer offers to others (PUBLIC). docs/ARCHITECTURE.md draws the same graph: change both
together. Also checks that every folder of src/ is a known layer, is in the README's layout
table and in the architecture diagram, and that every top-level folder has a layout row.

Usage: check-layers.py [repo root]   (default: the folder above this script)
       check-layers.py --print       print the allowed graph
Exit status 0 when clean, 1 with one line per violation. Python 3 standard library only.
"""
import os
import re
import subprocess
import sys

# Layer -> the layers its files may include directly (arrows point down).
# include/ is include/pagellm.h: the public API's types (status codes, parameters).
ALLOWED = {
    "util": {"include"},  # error.h returns pagellm.h's status codes
    "plan": set(),  # step_plan.h: the per-step seam, depends on nothing
    "backend": {"plan", "util"},
    "backend/cpu": {"backend", "plan", "util"},  # implements backend.h's op table
    "backend/cuda": {"backend", "plan", "util"},
    "core": {"plan", "util", "include"},
    "model": {"backend", "plan", "util"},
    "tokenizer": {"model", "util"},  # only model/gguf.h (EDGE_ONLY)
    "template": {"util"},
    "grammar": {"tokenizer", "util"},  # token masks need the vocabulary
    "engine": {"core", "model", "backend", "plan", "tokenizer", "template", "grammar", "util",
               "include"},
    "server": {"engine", "tokenizer", "grammar", "util", "include"},
    # The CLI's tools (info, bench, model-gen, tokenize, template) use the layers below directly.
    "cli": {"server", "engine", "model", "backend", "tokenizer", "template", "grammar", "util",
            "include"},
}

# Headers a layer offers to other layers (None: every header). Others are its internals.
PUBLIC = {
    "util": None,
    "plan": None,
    "include": None,
    "backend": {"backend.h", "tensor.h", "weight_rand.h"},
    "backend/cpu": set(),  # reached only through backend.h / tensor.h
    "backend/cuda": set(),
    "core": {"block_pool.h", "kv_cache.h", "kv_snapshot.h", "scheduler.h"},
    "model": {"model.h", "runner.h", "gguf.h", "gguf_write.h", "model_preset.h",
              "synth_vocab.h"},
    "tokenizer": {"tokenizer.h", "detok.h", "stop_matcher.h"},
    "template": {"chat_template.h", "chat_msg.h"},
    "grammar": {"grammar.h"},
    "engine": {"engine_access.h"},  # beside include/pagellm.h
    "server": {"server.h"},
    "cli": set(),
}

# Arrows that allow fewer headers than the target's PUBLIC set.
EDGE_ONLY = {
    ("tokenizer", "model"): {"gguf.h"},  # GGUF metadata of the vocabulary
}

# What to do instead, printed with a violation into these layers.
HINT = {
    "backend/cpu": "the CPU backend's internals: use backend/backend.h or backend/tensor.h",
    "backend/cuda": "the CUDA backend's internals: use backend/backend.h",
    "engine": "use include/pagellm.h or engine/engine_access.h",
}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
SOURCE_EXT = (".c", ".h", ".cu", ".cuh")


def layer_of(rel):
    """Layer of a repository-relative path, or None outside src/ and include/."""
    parts = rel.split("/")
    if parts[0] == "include":
        return "include"
    if parts[0] != "src" or len(parts) < 3:
        return None
    if parts[1] == "backend" and len(parts) > 3 and parts[2] in ("cpu", "cuda"):
        return "backend/" + parts[2]
    return parts[1]


def resolve(root, src_rel, inc):
    """The repository-relative path of a quoted include (the including file's folder first,
    then the include path: src/ and include/, as CMake sets it), or None."""
    for base in (os.path.dirname(src_rel), "src", "include"):
        cand = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(os.path.join(root, cand)):
            return cand.replace(os.sep, "/")
    return None


def check_includes(root):
    errors = []
    for dirpath, dirnames, files in os.walk(os.path.join(root, "src")):
        dirnames.sort()
        for f in sorted(files):
            if not f.endswith(SOURCE_EXT):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            a = layer_of(rel)
            if a not in ALLOWED:
                errors.append(f"{rel}: folder src/{a}/ is not a layer of scripts/check-layers.py;"
                              " add it to ALLOWED and PUBLIC there and to docs/ARCHITECTURE.md")
                continue
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
                for lineno, line in enumerate(fh, 1):
                    m = INCLUDE_RE.match(line)
                    if not m:
                        continue
                    inc = m.group(1)
                    tgt = resolve(root, rel, inc)
                    if tgt is None:
                        # Generated or misspelt: only an error when it names a layer folder.
                        if inc.split("/")[0] in {l.split("/")[0] for l in ALLOWED}:
                            errors.append(f"{rel}:{lineno}: #include \"{inc}\" names no file")
                        continue
                    b = layer_of(tgt)
                    if b is None or b == a:
                        continue
                    where = f"{rel}:{lineno}: {a}/ includes {tgt}"
                    name = os.path.basename(tgt)
                    if b not in ALLOWED[a]:
                        ok = ", ".join(f"{x}/" for x in sorted(ALLOWED[a])) or "nothing"
                        hint = f"; {HINT[b]}" if b in HINT else ""
                        errors.append(f"{where}, but {a}/ may not use {b}/ (it may use: {ok}){hint}")
                        continue
                    only = EDGE_ONLY.get((a, b), PUBLIC.get(b))
                    if only is not None and name not in only:
                        pub = ", ".join(sorted(only)) or "no header (use the layer above it)"
                        errors.append(f"{where}, an internal header of {b}/; "
                                      f"{a}/ may include from {b}/ only: {pub}")
    return errors


def top_folders(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True,
                             check=True).stdout
        return {f.split("/")[0] for f in out.splitlines() if "/" in f and not f.startswith(".")}
    except (OSError, subprocess.CalledProcessError):
        return {d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and
                not d.startswith((".", "build"))}


def check_docs(root):
    """Every src/ folder is a layer, a row of the README's layout table and in the diagram."""
    errors = []
    src = os.path.join(root, "src")
    folders = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    arch = open(os.path.join(root, "docs", "ARCHITECTURE.md"), encoding="utf-8").read()
    m = re.search(r"## Layout\s*```(.*?)```", readme, re.S)
    table = m.group(1) if m else ""
    rows = set(re.findall(r"^src/([a-z_]+)/", table, re.M))
    m = re.search(r"```(.*?)```", arch, re.S)  # the first code block: the layer diagram
    diagram = m.group(1) if m else ""
    for d in folders:
        if d not in ALLOWED:
            errors.append(f"src/{d}/ is not a layer of scripts/check-layers.py")
        if d not in rows:
            errors.append(f"README.md's layout table has no row for src/{d}/")
        if not re.search(r"(?<![\w/])" + re.escape(d) + r"/", diagram):
            errors.append(f"docs/ARCHITECTURE.md's layer diagram does not show {d}/")
    for r in sorted(rows - set(folders)):
        errors.append(f"README.md's layout table lists src/{r}/, which does not exist")
    # Top-level folders have a row too: the ones git tracks (a stray local folder is not the
    # project's), or without git every folder but hidden and build ones.
    top = set(re.findall(r"^([a-z][\w-]*)/", table, re.M))
    for d in sorted(top_folders(root) - {"src"} - top):
        errors.append(f"README.md's layout table has no row for {d}/")
    return errors


def main(argv):
    if len(argv) > 1 and argv[1] == "--print":
        for a in ALLOWED:
            print(f"{a + '/':14} -> " + ", ".join(f"{b}/" for b in sorted(ALLOWED[a])))
        return 0
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..")
    errors = check_includes(root) + check_docs(root)
    for e in errors:
        print(e)
    if errors:
        print(f"check-layers: {len(errors)} problem(s) with the layer graph "
              "(scripts/check-layers.py, docs/ARCHITECTURE.md)")
        return 1
    print("check-layers: every #include under src/ follows the layer graph")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
