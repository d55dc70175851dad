#!/usr/bin/env python3
"""Reference encodings from Hugging Face `tokenizers` for the pkg/tokenizer parity tests.

Usage (on a machine with the `tokenizers` Python package; no network needed):

    python3 tools/refgen/tokenizers.py --src testdata/cache/tokenizers \
        --corpus testdata/tokenizers/corpus.jsonl --out OUTDIR
    python3 tools/refgen/tokenizers.py --src testdata/cache/tokenizers \
        --corpus testdata/tokenizers/corpus.jsonl --bench [--bench-mb 10] [--out OUTDIR]

Generate mode writes OUTDIR/<name>.expected.jsonl for every directory <name> under --src that holds a
tokenizer.json. Each file is JSON lines:

  line 1    {"meta": {...}}  tool versions, sha256 of tokenizer.json and of the corpus file
  corpus    {"id", "text", "ids", "tokens", "ids_special",
             "decode": {"keep", "skip"},          # decode(ids, skip_special_tokens=False/True)
             "decode_special": {"keep", "skip"},  # decode(ids_special, ...)
             "stream": {"keep": [...], "skip": [...]} or absent}
                                                  # DecodeStream.step(id) over ids_special, one entry
                                                  # per id (null when it emitted nothing)
  decode    {"decode_case", "ids", "keep", "skip"}  id sequences that are not whole encodings: slices
                                                  that cut multi-byte characters, every added token,
                                                  random ids, out-of-range ids
  optional  "transformers": {"ids", "ids_special"} per corpus line, from transformers.AutoTokenizer when
            transformers is importable and loads the directory (informational; tests compare the
            `tokenizers` fields)

One tokenizer failing does not stop the others; a summary is printed and the exit status is 1 if any
failed. Bench mode measures single-threaded encode throughput (encode, never encode_batch; RAYON and
TOKENIZERS_PARALLELISM pinned to one thread) over the corpus joined with "\n" and repeated to at least
--bench-mb MB, and prints a table (and OUTDIR/bench.json when --out is given).

Stdlib + tokenizers (+ transformers, optional) only.
"""
import os

# Pin to one thread before tokenizers (Rust/rayon) is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import hashlib
import json
import platform
import random
import sys
import time
import traceback

# This file is itself named tokenizers.py: drop its directory from the import path so that
# `import tokenizers` finds the Hugging Face package, not this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_corpus(path):
    """Corpus lines as a list of (id, text). Split on b"\\n" only: text may hold U+2028 or U+0085."""
    rows = []
    with open(path, "rb") as f:
        data = f.read()
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        obj = json.loads(line.decode("utf-8"))
        if not isinstance(obj.get("text"), str):
            raise ValueError("%s:%d: no string field \"text\"" % (path, n))
        rows.append((obj.get("id", len(rows)), obj["text"]))
    if not rows:
        raise ValueError("%s: empty corpus" % path)
    return rows


def tokenizer_dirs(src):
    names = []
    for name in sorted(os.listdir(src)):
        d = os.path.join(src, name)
        if os.path.isdir(d) and os.path.isfile(os.path.join(d, "tokenizer.json")):
            names.append(name)
    return names


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def stream_decode(tokenizers_mod, tok, ids, skip):
    """DecodeStream.step over ids; None when this tokenizers version has no DecodeStream."""
    decoders = getattr(tokenizers_mod, "decoders", None)
    cls = getattr(decoders, "DecodeStream", None) if decoders else None
    if cls is None:
        return None
    ds = cls(skip_special_tokens=skip)
    return [ds.step(tok, i) for i in ids]


def decode_cases(tok, encodings, seed):
    """Id sequences that exercise Decode beyond whole encodings."""
    rng = random.Random(seed)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    cases = []
    # Slices of real encodings: they cut multi-byte characters and byte-fallback runs.
    long_encs = [e for e in encodings if len(e) >= 3]
    for _ in range(120):
        if not long_encs:
            break
        e = rng.choice(long_encs)
        a = rng.randrange(0, len(e) - 1)
        b = rng.randrange(a + 1, min(len(e), a + 12) + 1)
        cases.append(list(e[a:b]))
    # Single tokens from across the vocabulary (covers byte tokens and partial characters).
    for _ in range(120):
        cases.append([rng.randrange(0, vocab)])
    # Random sequences.
    for _ in range(60):
        cases.append([rng.randrange(0, vocab) for _ in range(rng.randint(1, 16))])
    # Every added token, alone and next to plain text tokens.
    added = sorted(tok.get_added_tokens_decoder().keys()) if hasattr(tok, "get_added_tokens_decoder") else []
    if len(added) > 400:  # Gemma has thousands of <unusedN>: keep a deterministic sample
        added = added[:200] + sorted(rng.sample(added[200:], 200))
    plain = tok.encode("Hello world", add_special_tokens=False).ids
    for a in added:
        cases.append([a])
        cases.append(plain + [a] + plain)
    # Out-of-range ids (HF drops ids it cannot map).
    cases.append([vocab])
    cases.append(plain + [vocab + 7] + plain)
    cases.append([2**31 - 1] + plain)
    # The empty sequence.
    cases.append([])
    return cases


def generate_one(tokenizers_mod, name, d, corpus, corpus_sha, out_dir):
    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    load_s = time.perf_counter() - t0

    tf = None
    tf_error = None
    try:
        import transformers  # noqa: F401
        from transformers import AutoTokenizer

        tf = AutoTokenizer.from_pretrained(d, local_files_only=True)
    except Exception as e:  # informational only
        tf_error = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        tf = None

    meta = {
        "tokenizer": name,
        "tokenizers_version": getattr(tokenizers_mod, "__version__", "unknown"),
        "python": platform.python_version(),
        "tokenizer_json_sha256": sha256_file(os.path.join(d, "tokenizer.json")),
        "corpus_sha256": corpus_sha,
        "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
        "vocab_size": tok.get_vocab_size(with_added_tokens=False),
        "load_seconds": round(load_s, 3),
        "stream": hasattr(getattr(tokenizers_mod, "decoders", None), "DecodeStream"),
    }
    if tf is not None:
        import transformers

        meta["transformers_version"] = transformers.__version__
        meta["transformers_class"] = type(tf).__name__
    else:
        meta["transformers_error"] = tf_error

    lines = [dumps({"meta": meta})]
    encodings = []
    tf_mismatch = 0
    stream_error = None
    for cid, text in corpus:
        enc = tok.encode(text, add_special_tokens=False)
        enc_s = tok.encode(text, add_special_tokens=True)
        ids = list(enc.ids)
        ids_s = list(enc_s.ids)
        encodings.append(ids)
        row = {
            "id": cid,
            "text": text,
            "ids": ids,
            "tokens": list(enc.tokens),
            "ids_special": ids_s,
            "decode": {
                "keep": tok.decode(ids, skip_special_tokens=False),
                "skip": tok.decode(ids, skip_special_tokens=True),
            },
            "decode_special": {
                "keep": tok.decode(ids_s, skip_special_tokens=False),
                "skip": tok.decode(ids_s, skip_special_tokens=True),
            },
        }
        if stream_error is None:
            try:
                keep = stream_decode(tokenizers_mod, tok, ids_s, False)
                skip = stream_decode(tokenizers_mod, tok, ids_s, True)
                if keep is not None:
                    row["stream"] = {"keep": keep, "skip": skip}
            except Exception as e:
                stream_error = "%s: %s" % (type(e).__name__, e)
        if tf is not None:
            try:
                t_ids = list(tf(text, add_special_tokens=False)["input_ids"])
                t_ids_s = list(tf(text, add_special_tokens=True)["input_ids"])
                row["transformers"] = {"ids": t_ids, "ids_special": t_ids_s}
                if t_ids != ids or t_ids_s != ids_s:
                    tf_mismatch += 1
            except Exception as e:
                row["transformers"] = {"error": "%s: %s" % (type(e).__name__, e)}
                tf_mismatch += 1
        lines.append(dumps(row))

    ncases = 0
    for k, ids in enumerate(decode_cases(tok, encodings, seed=1000 + sum(map(ord, name)))):
        row = {"decode_case": k, "ids": ids}
        try:
            row["keep"] = tok.decode(ids, skip_special_tokens=False)
            row["skip"] = tok.decode(ids, skip_special_tokens=True)
        except Exception as e:  # recorded, so the Go side can check it rejects the same input
            row["error"] = "%s: %s" % (type(e).__name__, e)
        lines.append(dumps(row))
        ncases += 1

    path = os.path.join(out_dir, "%s.expected.jsonl" % name)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
    os.replace(tmp, path)
    note = "%d corpus lines, %d decode cases" % (len(corpus), ncases)
    if stream_error:
        note += "; DecodeStream failed (%s), no stream fields" % stream_error
    elif not meta["stream"]:
        note += "; no DecodeStream in this tokenizers version"
    if tf is not None:
        note += "; transformers %s differs on %d lines" % (meta["transformers_class"], tf_mismatch)
    else:
        note += "; transformers not used (%s)" % tf_error
    return path, note


def bench_one(name, d, corpus, target_mb):
    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    load_s = time.perf_counter() - t0
    doc = "\n".join(text for _, text in corpus)
    doc_bytes = len(doc.encode("utf-8"))
    reps = max(1, -(-int(target_mb * 1e6) // doc_bytes))  # ceil
    tok.encode(doc, add_special_tokens=False)  # warm-up (also fills the BPE cache, as in Go)
    ntok = 0
    t0 = time.perf_counter()
    for _ in range(reps):
        ntok += len(tok.encode(doc, add_special_tokens=False).ids)
    dt = time.perf_counter() - t0
    total = reps * doc_bytes
    return {
        "tokenizer": name,
        "bytes": total,
        "doc_bytes": doc_bytes,
        "reps": reps,
        "tokens": ntok,
        "seconds": round(dt, 4),
        "mb_per_s": round(total / dt / 1e6, 3),
        "load_seconds": round(load_s, 3),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="directory holding <name>/tokenizer.json")
    ap.add_argument("--corpus", required=True, help="corpus.jsonl")
    ap.add_argument("--out", help="output directory (required unless --bench)")
    ap.add_argument("--bench", action="store_true", help="measure single-threaded encode MB/s")
    ap.add_argument("--bench-mb", type=float, default=10.0, help="bytes to encode per tokenizer, in MB")
    ap.add_argument("--only", action="append", default=[], help="restrict to this tokenizer (repeatable)")
    args = ap.parse_args(argv)

    if not args.bench and not args.out:
        ap.error("--out is required unless --bench")
    if not os.path.isdir(args.src):
        sys.exit("--src %s: not a directory (run `make fixtures` first)" % args.src)
    corpus = read_corpus(args.corpus)
    corpus_sha = sha256_file(args.corpus)
    names = tokenizer_dirs(args.src)
    if args.only:
        names = [n for n in names if n in args.only]
    if not names:
        sys.exit("--src %s: no <name>/tokenizer.json found (run `make fixtures` first)" % args.src)
    if args.out:
        os.makedirs(args.out, exist_ok=True)

    try:
        import tokenizers as tokenizers_mod
    except ImportError as e:
        sys.exit("cannot import tokenizers (%s): pip install tokenizers" % e)

    print("tokenizers %s, python %s, corpus %d strings (%s)" % (
        getattr(tokenizers_mod, "__version__", "?"), platform.python_version(), len(corpus), corpus_sha[:12]))
    failed = []
    if args.bench:
        results = []
        for name in names:
            try:
                results.append(bench_one(name, os.path.join(args.src, name), corpus, args.bench_mb))
            except Exception:
                failed.append(name)
                print("FAIL %s\n%s" % (name, traceback.format_exc()), file=sys.stderr)
        print()
        print("HF tokenizers %s, single thread, encode(add_special_tokens=False)" %
              getattr(tokenizers_mod, "__version__", "?"))
        print("%-12s %10s %6s %10s %9s %8s %7s" % ("tokenizer", "MB", "reps", "tokens", "seconds", "MB/s", "load_s"))
        for r in results:
            print("%-12s %10.2f %6d %10d %9.3f %8.2f %7.2f" % (
                r["tokenizer"], r["bytes"] / 1e6, r["reps"], r["tokens"], r["seconds"], r["mb_per_s"],
                r["load_seconds"]))
        if args.out:
            with open(os.path.join(args.out, "bench.json"), "w", encoding="utf-8") as f:
                json.dump({"tokenizers_version": getattr(tokenizers_mod, "__version__", "?"),
                           "machine": platform.platform(), "processor": platform.processor(),
                           "results": results}, f, indent=1)
                f.write("\n")
    else:
        for name in names:
            t0 = time.perf_counter()
            try:
                path, note = generate_one(tokenizers_mod, name, os.path.join(args.src, name), corpus,
                                          corpus_sha, args.out)
                print("ok   %-12s %s (%.1fs): %s" % (name, path, time.perf_counter() - t0, note))
            except Exception:
                failed.append(name)
                print("FAIL %-12s\n%s" % (name, traceback.format_exc()), file=sys.stderr)
    print()
    print("summary: %d ok, %d failed%s" % (len(names) - len(failed), len(failed),
                                          (" (" + ", ".join(failed) + ")") if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
