#!/usr/bin/env python3
"""Build the training corpus of mach's default model from the Python documentation sources.

Called by prepare_corpus.sh after it has unpacked the Debian package python3.11-doc; uses the
standard library only (any Python >= 3.8). Reads the reStructuredText sources that Sphinx ships
next to the HTML (usr/share/doc/python3.11/html/_sources/**/*.rst.txt), cleans them lightly,
derives question/answer chats from them, splits by document into train / val / test and writes

    OUT/train.jsonl.gz  OUT/val.jsonl.gz  OUT/test.jsonl.gz   one {"id","kind","src","text"} a line
    OUT/DATA_LICENSE.txt   copyright notice + PSF licence agreement + 0BSD text, from the package
    OUT/debian-copyright.txt   the package's own copyright file, verbatim
    OUT/manifest.json      package, version, sha256, licence, rules, sizes (written last)

Everything is deterministic (sorted inputs, hash-based split, gzip mtime 0), so a rerun on the
same .deb writes the same bytes.

Kinds: "doc" is one cleaned source document; "chat" is one ChatML conversation
(<|im_start|>user ... <|im_end|> <|im_start|>assistant ... <|im_end|>) built from a definition,
a FAQ entry, a glossary entry or a module synopsis of a document, and it belongs to the split of
that document, so nothing held out leaks into training.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys

RULES_VERSION = "mach-default-corpus-v1"
SPECIAL_STRINGS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")

# Documents that are not prose for the model: legal text, a table of contents, include fragments.
EXCLUDE_DOCS = {"license", "copyright", "contents"}
EXCLUDE_PREFIXES = ("includes/",)

# Directive blocks removed from the text (with their indented bodies): index entries, authoring
# metadata, navigation and build-only content.
DROP_DIRECTIVES = {
    "index", "highlight", "sectionauthor", "moduleauthor", "toctree", "tabularcolumns",
    "testsetup", "testcleanup", "only", "include", "literalinclude", "currentmodule", "module",
    "contents", "raw", "image", "figure", "role", "default-role", "audit-event-table",
    "limited-api-list",
}

# Sphinx roles rendered as plain text; every other role is rendered as ``literal``.
PLAIN_ROLES = {
    "ref", "doc", "term", "numref", "download", "abbr", "menuselection", "guilabel",
    "emphasis", "strong", "sup", "sub", "dfn", "title-reference", "newsgroup",
}
CALL_ROLES = {"func", "meth", "py:func", "py:meth", "c:func"}

ROLE_RE = re.compile(r":((?:[a-z]+:)?[a-z][a-z0-9-]*):`((?:[^`\\]|\\.)+)`")
LINK_RE = re.compile(r"(?<![`:\w])`([^`<]+?)\s*<[^>`]+>`_{1,2}(?!\w)")
NAMED_LINK_RE = re.compile(r"(?<![`:\w])`([^`]+)`_{1,2}(?!\w)")
EXPLICIT_RE = re.compile(r"^(\s*)\.\.(?:\s+(.*))?$")
DIRECTIVE_RE = re.compile(r"^([a-zA-Z][\w:-]*)::(?:\s+(.*))?$")
HEADING_CHARS = set("=-~^\"'`#*+:.<>_")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def is_underline(line, title):
    s = line.rstrip()
    return (len(s) >= 3 and len(set(s)) == 1 and s[0] in HEADING_CHARS
            and len(s) >= len(title.rstrip()) and title.strip() != "" and not title.startswith(" "))


def block_end(lines, i, base):
    """Index just past the explicit-markup block that starts at line i with indentation base:
    the block is every following line that is blank or indented deeper than base."""
    j = i + 1
    while j < len(lines) and (lines[j].strip() == "" or indent_of(lines[j]) > base):
        j += 1
    # Give trailing blank lines back to the text that follows.
    while j > i + 1 and lines[j - 1].strip() == "":
        j -= 1
    return j


def clean_role(role, content, version):
    role_l = role.lower()
    text = content.replace("\\", "")
    m = re.match(r"^(.*?)\s*<([^<>]+)>$", text, re.S)
    if m and m.group(1).strip():
        # Explicit title: Sphinx shows the title, which is prose even for code roles.
        return m.group(1).strip()
    if m:
        text = m.group(2)
    name = role_l.split(":")[-1]
    if name == "pep":
        return "PEP " + text.split("#")[0].strip()
    if name == "rfc":
        return "RFC " + text.split("#")[0].strip()
    if role_l in PLAIN_ROLES or name in PLAIN_ROLES:
        if name in ("ref", "doc", "numref"):
            return text.strip().lstrip("~!").replace("-", " ").replace("_", " ")
        return text.strip()
    text = text.strip()
    if text.startswith("!"):
        text = text[1:]
    if text.startswith("~"):
        text = text[1:].split(".")[-1]
    if role_l in CALL_ROLES and not text.endswith(")"):
        text += "()"
    return "``" + text + "``"


def clean_inline(s, version, release):
    s = ROLE_RE.sub(lambda m: clean_role(m.group(1), m.group(2), version), s)
    s = LINK_RE.sub(lambda m: m.group(1).strip(), s)
    s = NAMED_LINK_RE.sub(lambda m: m.group(1).strip(), s)
    s = s.replace("|version|", version).replace("|release|", release)
    s = s.replace("\\ ", "")
    return s


def clean_lines(lines, version, release):
    """Light clean-up of reStructuredText lines: drop the directive blocks in DROP_DIRECTIVES,
    comments, link targets and substitution definitions; render inline roles and links as
    text; collapse runs of blank lines. Structure (headings, lists, code blocks, notes) stays."""
    out = []
    i = 0
    n = len(lines)
    # File-level fields (":tocdepth: 2", ":orphan:") before the first heading.
    while i < n and (lines[i].strip() == "" or re.match(r"^:[a-z-]+:(\s|$)", lines[i])):
        i += 1
    while i < n:
        line = lines[i]
        m = EXPLICIT_RE.match(line)
        if m:
            base = len(m.group(1))
            rest = (m.group(2) or "").strip()
            d = DIRECTIVE_RE.match(rest)
            drop = False
            if d:
                drop = d.group(1).lower() in DROP_DIRECTIVES or d.group(1).lower().startswith("c:")
            elif rest.startswith("_") or rest.startswith("|"):
                drop = True  # hyperlink target or substitution definition
            elif rest.startswith("["):
                drop = False  # footnote / citation: keep its text
            else:
                drop = True  # comment
            if drop:
                i = block_end(lines, i, base)
                continue
        out.append(line)
        i += 1
    # Inline markup is rendered on the joined text: roles and links may span lines.
    text = clean_inline("\n".join(l.rstrip() for l in out), version, release)
    text = "\n".join(l.rstrip() for l in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text


def normalize(raw):
    text = raw.replace("\r\n", "\n").replace("\r", "\n").expandtabs(8)
    return [l.rstrip() for l in text.split("\n")]


def paragraphs(lines):
    """Split dedented lines into paragraphs (lists of lines) at blank lines."""
    paras, cur = [], []
    for l in lines:
        if l.strip() == "":
            if cur:
                paras.append(cur)
                cur = []
        else:
            cur.append(l)
    if cur:
        paras.append(cur)
    return paras


def dedent(lines):
    ind = [indent_of(l) for l in lines if l.strip()]
    k = min(ind) if ind else 0
    return [l[k:] if l.strip() else "" for l in lines]


def answer_from(body_lines, version, release, limit=900):
    """The first paragraphs of a block body, cleaned, up to about `limit` characters."""
    text = clean_lines(dedent(body_lines), version, release)
    if not text:
        return ""
    out = []
    size = 0
    for p in text.split("\n\n"):
        p = p.strip("\n")
        if not p.strip():
            continue
        if out and size + len(p) > limit:
            break
        out.append(p)
        size += len(p) + 2
    return "\n\n".join(out).strip()


def chat_text(question, answer):
    return ("<|im_start|>user\n" + question + "<|im_end|>\n"
            "<|im_start|>assistant\n" + answer + "<|im_end|>\n")


def pick(key, options):
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return options[h % len(options)]


QUESTIONS = {
    "function": ["What does {q}() do?", "Explain {q}() in Python.", "How do I use {q}()?"],
    "method": ["What does {q}() do?", "Explain the {q}() method."],
    "class": ["What is {q} in Python?", "Explain the {q} class."],
    "exception": ["When is {q} raised?", "What is the {q} exception?"],
    "module": ["What is the {q} module used for?", "What does the {q} module do?"],
    "glossary": ['What does "{q}" mean in Python?', 'Define "{q}".',
                 'In Python, what is meant by "{q}"?'],
}
DEF_KINDS = {
    "function": "function", "decorator": "function", "method": "method",
    "classmethod": "method", "staticmethod": "method", "class": "class", "exception": "exception",
}


def extract_chats(doc_id, lines, version, release):
    """Question/answer pairs drawn from one document: Python-domain definitions, module
    synopses, FAQ sections whose title is a question, glossary entries."""
    chats = []
    module = None
    class_stack = []  # (indent, class name)
    n = len(lines)
    i = 0
    # Module synopsis: the first heading of a library page plus its first body paragraph.
    synopsis = None
    while i < n:
        line = lines[i]
        m = EXPLICIT_RE.match(line)
        d = DIRECTIVE_RE.match((m.group(2) or "").strip()) if m else None
        if not d:
            i += 1
            continue
        base = len(m.group(1))
        name = d.group(1).lower()
        arg = (d.group(2) or "").strip()
        end = block_end(lines, i, base)
        while class_stack and class_stack[-1][0] >= base:
            class_stack.pop()
        if name in ("module", "currentmodule"):
            module = arg or None
            if module == "None":
                module = None
            if name == "module":
                for l in lines[i + 1:end]:
                    mm = re.match(r"^\s+:synopsis:\s*(.*)$", l)
                    if mm:
                        synopsis = clean_inline(mm.group(1).strip(), version, release)
        elif name in DEF_KINDS and doc_id.startswith("library/"):
            kind = DEF_KINDS[name]
            sig = arg
            sm = re.match(r"^([\w.]+)", sig)
            if sm:
                short = sm.group(1)
                if kind == "method" and "." not in short and class_stack:
                    qual = class_stack[-1][1] + "." + short
                elif kind in ("function", "class", "exception") and module and "." not in short \
                        and module != "builtins":
                    qual = module + "." + short
                else:
                    qual = short
                if name == "class":
                    class_stack.append((base, qual))
                # The description starts after the first blank line: before it come signature
                # continuation lines and options (:noindex:, :module: ...).
                block = lines[i + 1:end]
                first_blank = next((k for k, l in enumerate(block) if l.strip() == ""), len(block))
                desc = []
                for l in block[first_blank + 1:]:
                    em = EXPLICIT_RE.match(l)
                    if em and DIRECTIVE_RE.match((em.group(2) or "").strip()):
                        break  # only the text before the first nested directive
                    desc.append(l)
                ans = answer_from(desc, version, release, limit=700)
                if ans and len(ans) >= 30:
                    shown = qual + sig[len(short):]
                    q = pick(doc_id + ":" + qual, QUESTIONS[kind]).format(q=qual)
                    a = "``" + clean_inline(shown, version, release) + "``\n\n" + ans
                    chats.append((q, a))
            # Nested definitions (methods inside a class) are visited by continuing inside.
            i += 1
            continue
        elif name == "glossary":
            body = dedent(lines[i + 1:end])
            j = 0
            while j < len(body):
                term = body[j]
                if term.strip() and indent_of(term) == 0 and not EXPLICIT_RE.match(term):
                    k = j + 1
                    defn = []
                    while k < len(body) and (body[k].strip() == "" or indent_of(body[k]) > 0):
                        defn.append(body[k])
                        k += 1
                    t = clean_inline(term.strip(), version, release).strip("`")
                    ans = answer_from(defn, version, release, limit=800)
                    if ans and len(ans) >= 30:
                        q = pick("glossary:" + t, QUESTIONS["glossary"]).format(q=t)
                        chats.append((q, ans))
                    j = k
                else:
                    j += 1
            i = end
            continue
        i = end if name in DROP_DIRECTIVES else i + 1

    if synopsis and doc_id.startswith("library/") and module:
        body = _first_body_paragraphs(lines)
        ans = synopsis if not body else synopsis + "\n\n" + answer_from(body, version, release, 700)
        q = pick("module:" + module, QUESTIONS["module"]).format(q=module)
        chats.append((q, "The ``" + module + "`` module: " + ans))

    if doc_id.startswith("faq/"):
        chats.extend(_faq_chats(lines, version, release))
    return chats


def _first_body_paragraphs(lines):
    """Lines of the first prose paragraph after the page title, skipping the explicit markup
    (module directive, index entries), the "**Source code:**" line and the separator that
    library pages start with."""
    n = len(lines)
    i = next((k + 2 for k in range(n - 1) if is_underline(lines[k + 1], lines[k])), n)
    while i < n:
        l = lines[i]
        if EXPLICIT_RE.match(l):
            i = block_end(lines, i, indent_of(l))
        elif l.strip() == "" or indent_of(l) > 0 or l.startswith("**Source code:**") \
                or set(l.strip()) == {"-"}:
            i += 1
        else:
            j = i
            while j < n and lines[j].strip() != "":
                j += 1
            return lines[i:j]
    return []


def _faq_chats(lines, version, release):
    chats = []
    heads = [i for i in range(len(lines) - 1) if is_underline(lines[i + 1], lines[i])]
    for idx, h in enumerate(heads):
        title = lines[h].strip()
        if not title.endswith("?"):
            continue
        end = heads[idx + 1] if idx + 1 < len(heads) else len(lines)
        body = lines[h + 2:end]
        ans = answer_from(body, version, release, limit=1000)
        if ans and 20 <= len(ans) <= 2000:
            chats.append((clean_inline(title, version, release), ans))
    return chats


def split_docs(docs, frac_test, frac_val, max_frac):
    """Deterministic split by document. Documents are ordered by sha256(rules version + id);
    walking that order, a document of at least 2 kB and at most max_frac of all bytes goes to
    test until test holds frac_test of the bytes, then to val until val holds frac_val; every
    other document is train."""
    total = sum(len(t.encode("utf-8")) for _, t in docs)
    order = sorted(docs, key=lambda d: sha256_hex((RULES_VERSION + ":" + d[0]).encode("utf-8")))
    split = {}
    got = {"test": 0, "val": 0}
    for doc_id, text in order:
        size = len(text.encode("utf-8"))
        target = None
        if 2000 <= size <= max_frac * total:
            if got["test"] < frac_test * total:
                target = "test"
            elif got["val"] < frac_val * total:
                target = "val"
        if target:
            got[target] += size
            split[doc_id] = target
        else:
            split[doc_id] = "train"
    return split


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_jsonl_gz(path, records):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for r in records:
            gz.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
    data = buf.getvalue()
    write_atomic(path, data)
    return data


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def license_text(src, release, copyright_rst):
    """Copyright notice, PSF licence agreement and 0BSD text from license.rst, with
    |release| filled in."""
    lines = normalize(read_text(os.path.join(src, "license.rst.txt")))

    def section(label):
        start = next(i for i, l in enumerate(lines) if l.strip() == ".. _" + label + ":")
        j = start + 1
        while j < len(lines) and lines[j].strip() == "":
            j += 1
        # The section runs to the next heading (title + underline) after its own.
        k = j + 2
        while k < len(lines) - 1 and not is_underline(lines[k + 1], lines[k]) \
                and not lines[k].startswith(".. _"):
            k += 1
        body = []
        for l in lines[j:k]:
            if l.strip() == ".. parsed-literal::":
                continue
            body.append(l)
        return "\n".join(dedent(body)).replace("|release|", release).strip() + "\n"

    notice = "\n".join(l for l in normalize(copyright_rst) if "Copyright" in l or "reserved" in l)
    head = ("Training data licence of mach's default model\n"
            "=============================================\n\n"
            "The model was trained on text derived from the Python " + release + " documentation\n"
            "(Debian package python3.11-doc, directory usr/share/doc/python3.11/html/_sources).\n"
            "The documentation is licensed under the PSF License Agreement below; since Python\n"
            "3.8.6, examples, recipes and other code in it are dual licensed under the PSF License\n"
            "Agreement and the Zero-Clause BSD license below. Changes made: the sources were\n"
            "cleaned (index entries, comments and link targets removed, inline markup rendered\n"
            "as text), turned into question/answer chats, tokenized and used to train a neural\n"
            "network; no documentation text is shipped with the model.\n\n"
            "Python and its documentation are:\n\n" + notice + "\n\n")
    return head + section("PSF-license") + "\n" + section("BSD0")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help="the _sources directory")
    ap.add_argument("--copyright", required=True, help="usr/share/doc/python3.11-doc/copyright")
    ap.add_argument("--deb", required=True, help="the .deb the sources came from (for the manifest)")
    ap.add_argument("--version", required=True, help="the package version (dpkg-deb -f DEB Version)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--test-frac", type=float, default=0.02)
    ap.add_argument("--val-frac", type=float, default=0.02)
    args = ap.parse_args()

    upstream = args.version.split("-")[0]  # 3.11.2-6+deb12u9 -> 3.11.2
    version = ".".join(upstream.split(".")[:2])
    release = upstream

    files = []
    for root, _, names in os.walk(args.src):
        for name in names:
            if name.endswith(".rst.txt"):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, args.src).replace(os.sep, "/")
                files.append((rel[: -len(".rst.txt")], full))
    files.sort()
    if not files:
        sys.exit("prepare_corpus: no *.rst.txt under " + args.src)

    docs = []
    chats_by_doc = {}
    raw_bytes = 0
    skipped = []
    for doc_id, full in files:
        raw = read_text(full)
        raw_bytes += len(raw.encode("utf-8"))
        if doc_id in EXCLUDE_DOCS or doc_id.startswith(EXCLUDE_PREFIXES):
            skipped.append(doc_id)
            continue
        lines = normalize(raw)
        text = clean_lines(lines, version, release)
        if len(text) < 200:
            skipped.append(doc_id)
            continue
        for s in SPECIAL_STRINGS:
            if s in text:
                sys.exit("prepare_corpus: %s contains the special token string %s" % (doc_id, s))
        docs.append((doc_id, text))
        chats_by_doc[doc_id] = extract_chats(doc_id, lines, version, release)

    split = split_docs(docs, args.test_frac, args.val_frac, max_frac=0.01)
    records = {"train": [], "val": [], "test": []}
    for doc_id, text in docs:
        records[split[doc_id]].append({"id": doc_id, "kind": "doc", "src": doc_id, "text": text})
    for doc_id, _ in docs:
        for n, (q, a) in enumerate(chats_by_doc[doc_id]):
            records[split[doc_id]].append({
                "id": "chat:%s:%04d" % (doc_id, n), "kind": "chat", "src": doc_id,
                "text": chat_text(q, a)})

    os.makedirs(args.out, exist_ok=True)
    stats = {}
    for name in ("train", "val", "test"):
        recs = records[name]
        data = write_jsonl_gz(os.path.join(args.out, name + ".jsonl.gz"), recs)
        st = {"file": name + ".jsonl.gz", "file_bytes": len(data), "file_sha256": sha256_hex(data)}
        for kind in ("doc", "chat"):
            ks = [r for r in recs if r["kind"] == kind]
            st[kind + "s"] = len(ks)
            st[kind + "_text_bytes"] = sum(len(r["text"].encode("utf-8")) for r in ks)
        if name != "train":
            st["doc_ids"] = [r["id"] for r in recs if r["kind"] == "doc"]
        stats[name] = st

    copyright_rst = read_text(os.path.join(args.src, "copyright.rst.txt"))
    lic = license_text(args.src, release, copyright_rst).encode("utf-8")
    write_atomic(os.path.join(args.out, "DATA_LICENSE.txt"), lic)
    with open(args.copyright, "rb") as f:
        deb_copyright = f.read()
    write_atomic(os.path.join(args.out, "debian-copyright.txt"), deb_copyright)

    with open(args.deb, "rb") as f:
        deb_bytes = f.read()
    manifest = {
        "rules_version": RULES_VERSION,
        "package": "python3.11-doc",
        "package_version": args.version,
        "deb_file": os.path.basename(args.deb),
        "deb_sha256": sha256_hex(deb_bytes),
        "source_dir": "usr/share/doc/python3.11/html/_sources (*.rst.txt)",
        "licence": {
            "spdx": "PSF-2.0 (documentation text); PSF-2.0 OR 0BSD (code examples in it)",
            "summary": "Python documentation, (c) 2001-2023 Python Software Foundation; "
                       "PSF License Agreement; code examples also Zero-Clause BSD (Python >= 3.8.6). "
                       "Permissive: redistribution and derivative works allowed with the notice kept.",
            "files": ["DATA_LICENSE.txt", "debian-copyright.txt"],
        },
        "source_files": len(files),
        "source_bytes": raw_bytes,
        "documents": len(docs),
        "skipped_documents": skipped,
        "split_rule": "by document: order by sha256('%s:'+id); documents of 2 kB..1%% of all bytes "
                      "fill test to %.0f%% then val to %.0f%% of the bytes; the rest is train; chats "
                      "follow their source document" % (RULES_VERSION, args.test_frac * 100,
                                                         args.val_frac * 100),
        "cleaning": "directive blocks %s, comments, link targets and substitution definitions removed; "
                    "Sphinx roles rendered as text or ``literal``; links as their text; |version| "
                    "and |release| filled in; blank-line runs collapsed" % sorted(DROP_DIRECTIVES),
        "splits": stats,
    }
    write_atomic(os.path.join(args.out, "manifest.json"),
                 (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    print("%-6s %6s %7s %12s %12s %10s" % ("split", "docs", "chats", "doc bytes", "chat bytes", "gz bytes"))
    for name in ("train", "val", "test"):
        st = stats[name]
        print("%-6s %6d %7d %12d %12d %10d" % (name, st["docs"], st["chats"], st["doc_text_bytes"],
                                                st["chat_text_bytes"], st["file_bytes"]))
    print("source: %s %s, %d files, %d bytes; %d documents kept" % (
        manifest["package"], args.version, len(files), raw_bytes, len(docs)))


if __name__ == "__main__":
    main()
