#!/usr/bin/env python3
"""Build the cleaned training corpus of the bundled default model (stdlib only).

Input: what tools/train/get_corpus.sh unpacked into .devcarry/ (Debian packages).
Output: .devcarry/corpus/train.jsonl and valid.jsonl, one document per line as
{"src": SOURCE, "id": DOC_ID, "text": TEXT}, plus corpus/stats.json (sizes, sha256).

Documents:
  kjv       one per Bible chapter: "Genesis 1" header line, blank line, one verse per line
  fortune   one per fortune cookie (files of `fortunes` and `fortunes-min`; a few files
            are left out: ASCII art, and the `ethnic` and `men-women` joke files)
  devil     one per entry of The Devil's Dictionary (split with the dictd index)
  jargon    one per Jargon File entry (glossary) or chapter/appendix (prose), reflowed

Held-out split: a document goes to valid.jsonl when crc32("src/id") % 50 == 0 (about 2%),
so the split is fixed and does not depend on document order.

Cleaning: overstrike sequences ("X\\b_") resolved, control characters dropped, tabs
expanded, trailing spaces stripped, typographic quotes and dashes mapped to ASCII,
box-drawing lines dropped, the Jargon File's {cross-reference} braces removed.
"""
import argparse
import hashlib
import json
import os
import re
import sys
import zlib

KJV_BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah",
    "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians",
    "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "1 Thessalonians",
    "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews", "James",
    "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
]

FORTUNE_SKIP = {"art", "ascii-art", "ethnic", "men-women", "translate-me"}

TYPO = {
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'", "\u201a": "'",
    "\u2014": "--", "\u2013": "-", "\u2026": "...", "\u00b7": "-", "\u00a0": " ",
    "\u2010": "-", "\u2011": "-", "\u2212": "-", "\u2022": "*",
}


def clean(s):
    s = re.sub(r".\x08", "", s)                    # overstrike: keep the later character
    s = "".join(TYPO.get(c, c) for c in s)
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = "\n".join(line.expandtabs(8).rstrip() for line in s.split("\n"))
    s = "".join(c for c in s if c == "\n" or ord(c) >= 32 and c != "\x7f")
    s = "\n".join(l for l in s.split("\n") if not re.search("[\u2500-\u257f]", l))
    s = re.sub(r"\n{3,}", "\n\n", s)
    return s.strip("\n")


def kjv_docs(path):
    verses = open(path, encoding="utf-8").read().splitlines()
    docs, abbrs = [], []
    cur_key, cur = None, []
    for line in verses:
        m = re.match(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not m:
            raise SystemExit("unexpected KJV line: %r" % line[:80])
        ab, ch, text = m.group(1), int(m.group(2)), m.group(4)
        if not abbrs or abbrs[-1] != ab:
            abbrs.append(ab)
        key = (len(abbrs) - 1, ch)
        if key != cur_key:
            if cur:
                docs.append(cur_key_doc(cur_key, cur))
            cur_key, cur = key, []
        cur.append(text.strip())
    if cur:
        docs.append(cur_key_doc(cur_key, cur))
    if len(abbrs) != 66:
        raise SystemExit("expected 66 books, got %d" % len(abbrs))
    return docs


def cur_key_doc(key, verses):
    book, ch = KJV_BOOKS[key[0]], key[1]
    return ("kjv", "%s %d" % (book, ch), clean("%s %d\n\n%s" % (book, ch, "\n".join(verses))))


def fortune_docs(dirs):
    docs = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if name.endswith((".dat", ".u8")) or os.path.islink(p) or name in FORTUNE_SKIP:
                continue
            raw = open(p, "rb").read()
            try:
                txt = raw.decode("utf-8")
            except UnicodeDecodeError:
                txt = raw.decode("latin-1")
            for i, f in enumerate(re.split(r"^%\n", txt, flags=re.M)):
                f = clean(f)
                if len(f) >= 20:
                    docs.append(("fortune", "%s/%d" % (name, i), f))
    return docs


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    v = 0
    for ch in s:
        v = v * 64 + B64.index(ch)
    return v


def devil_docs(dict_txt, index):
    data = open(dict_txt, "rb").read()
    docs = []
    for line in open(index, encoding="utf-8").read().splitlines():
        head, off, n = line.split("\t")
        if head.startswith("00database"):
            continue
        text = clean(data[b64num(off):b64num(off) + b64num(n)].decode("utf-8", "replace"))
        if text:
            docs.append(("devil", head, text))
    return docs


def reflow(lines):
    """Jargon File body text: 3-space base indent; join plain paragraphs, keep indented ones."""
    out, para = [], []

    def flush():
        if not para:
            return
        if all(re.match(r"^   \S", l) for l in para):
            out.append(" ".join(l.strip() for l in para))
        else:
            out.append("\n".join(l[3:] if l.startswith("   ") else l.lstrip() for l in para))
        para.clear()

    for l in lines:
        if l.strip():
            para.append(l.rstrip())
        else:
            flush()
    flush()
    return "\n\n".join(out)


def jargon_docs(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    docs = []
    heads = [i for i, l in enumerate(lines)
             if re.match(r"^(Chapter \d+\.|Appendix [A-C]\.|Bibliography|Glossary)", l)]
    heads.append(len(lines))
    for a, b in zip(heads, heads[1:]):
        title = lines[a].strip()
        body = lines[a + 1:b]
        if title.startswith("Glossary"):
            # Entries start with "   :word: ..." ; everything before the first is the index.
            starts = [i for i, l in enumerate(body) if re.match(r"^   :[^:].*?:", l)]
            starts.append(len(body))
            for s, e in zip(starts, starts[1:]):
                m = re.match(r"^   :(.+?):\s*(.*)$", body[s])
                head = m.group(1) + ": " + m.group(2) if m.group(2) else m.group(1) + ":"
                text = head + "\n\n" + reflow(body[s + 1:e])
                text = clean(re.sub(r"\{([^{}]*)\}", r"\1", text))
                if len(text) > 20:
                    docs.append(("jargon", m.group(1), text))
        elif title.startswith("Bibliography"):
            continue
        else:
            text = clean(re.sub(r"\{([^{}]*)\}", r"\1", title + "\n\n" + reflow(body)))
            docs.append(("jargon", title, text))
    return docs


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser()
    ap.add_argument("--devcarry", default=os.path.join(root, ".devcarry"))
    args = ap.parse_args()
    dc = args.devcarry
    pkg = os.path.join(dc, "pkg")
    docs = []
    docs += kjv_docs(os.path.join(dc, "kjv_raw.txt"))
    docs += fortune_docs([os.path.join(pkg, "fortunes/usr/share/games/fortunes"),
                          os.path.join(pkg, "fortunes-min/usr/share/games/fortunes")])
    docs += devil_docs(os.path.join(dc, "devil.txt"),
                       os.path.join(pkg, "dict-devil/usr/share/dictd/devil.index"))
    docs += jargon_docs(os.path.join(dc, "jargon.txt"))

    seen, uniq = set(), []
    for d in docs:                       # drop exact duplicate texts (some fortunes repeat)
        if d[2] in seen:
            continue
        seen.add(d[2])
        uniq.append(d)
    out = os.path.join(dc, "corpus")
    os.makedirs(out, exist_ok=True)
    stats = {"sources": {}}
    fs = {s: open(os.path.join(out, s + ".jsonl"), "w", encoding="utf-8") for s in ("train", "valid")}
    for src, did, text in uniq:
        split = "valid" if zlib.crc32(("%s/%s" % (src, did)).encode()) % 50 == 0 else "train"
        fs[split].write(json.dumps({"src": src, "id": did, "text": text}, ensure_ascii=False) + "\n")
        st = stats["sources"].setdefault(src, {"train_docs": 0, "valid_docs": 0,
                                               "train_bytes": 0, "valid_bytes": 0})
        st[split + "_docs"] += 1
        st[split + "_bytes"] += len(text.encode("utf-8"))
    for f in fs.values():
        f.close()
    for s in ("train", "valid"):
        p = os.path.join(out, s + ".jsonl")
        stats[s + "_sha256"] = hashlib.sha256(open(p, "rb").read()).hexdigest()
        stats[s + "_file_bytes"] = os.path.getsize(p)
    json.dump(stats, open(os.path.join(out, "stats.json"), "w"), indent=1)
    json.dump(stats, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
