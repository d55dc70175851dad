#!/usr/bin/env python3
"""Reference chat-template renderings from Hugging Face transformers.

For every tokenizer directory under --src (qwen3, gptoss, gemma3, deepseek_v3, as `make fixtures`
lays them out) and every conversation in --conversations that applies to it, this renders the
chat template with `tokenizer.apply_chat_template(..., tokenize=False)` and records the string and
its ids. The ids are `tokenizer(text, add_special_tokens=False)["input_ids"]`, which is what
`apply_chat_template(tokenize=True)` does; the script checks that the two agree and records it.
It also records "ids_tokenizers": the same text encoded by the `tokenizers` library straight from
tokenizer.json (add_special_tokens=False). The two differ where transformers rebuilds the
pipeline from its tokenizer class instead of tokenizer.json (transformers 5 loads DeepSeek-V3 as
LlamaTokenizer, which encodes " " as no tokens at all); pkg/tokenizer follows tokenizer.json, so
the Go tests compare with "ids_tokenizers" and report how often transformers disagrees.

Extra templates (testdata/chat/templates/<name>.jinja: Qwen3.6, Gemma 4, DeepSeek-V3.2 DSML) are
rendered through the tokenizer of their family (EXTRAS below) with `chat_template=`; their ids
are not recorded, because that tokenizer is not theirs.

`strftime_now` is frozen to FIXED_NOW so that templates that print the date (gpt-oss) are
reproducible; every record carries the date string the template actually saw ("now").

A conversation that a template rejects records the exception instead of stopping the run.

Usage (stdlib + transformers; jinja2 comes with transformers):
    python3 tools/refgen/chat.py --src testdata/cache/tokenizers \
        --conversations testdata/chat/conversations.jsonl --out OUTDIR

writes OUTDIR/<name>.expected.jsonl and prints a summary. `--local-jinja` renders with jinja2
alone, configured the way transformers configures it, without loading tokenizers (no ids): a
provisional check for machines without transformers; never commit its output.
"""

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
import time
import traceback

FIXED_NOW = _dt.datetime(2026, 1, 15, 9, 30, 0)
NOW_FORMAT = "%Y-%m-%d %H:%M:%S"

# Extra template name -> tokenizer directory whose special tokens it is rendered with.
EXTRAS = {
    "qwen3_6": "qwen3",
    "gemma4": "gemma3",
    "deepseek_v3_2": "deepseek_v3",
}


class _FrozenDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        if tz is None:
            return FIXED_NOW
        return FIXED_NOW.replace(tzinfo=tz)


def freeze_transformers_clock():
    """Makes transformers' strftime_now() return FIXED_NOW.

    transformers defines strftime_now inside utils/chat_template_utils.py as
    datetime.now().strftime(fmt); depending on the version `datetime` there is the class or the
    module, so both are handled. The compiled-template cache is cleared so no earlier closure
    survives. Returns a short description of what was patched.
    """
    import transformers.utils.chat_template_utils as ctu

    patched = []
    cur = getattr(ctu, "datetime", None)
    if isinstance(cur, type):
        ctu.datetime = _FrozenDatetime
        patched.append("chat_template_utils.datetime (class)")
    elif cur is not None and hasattr(cur, "datetime"):
        class _Mod:
            pass

        shim = _Mod()
        for k in dir(cur):
            if not k.startswith("__"):
                setattr(shim, k, getattr(cur, k))
        shim.datetime = _FrozenDatetime
        ctu.datetime = shim
        patched.append("chat_template_utils.datetime (module)")
    fn = getattr(ctu, "_compile_jinja_template", None)
    if fn is not None and hasattr(fn, "cache_clear"):
        fn.cache_clear()
    return ", ".join(patched) or "nothing patched"


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_conversations(path):
    convs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                convs.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{lineno}: {e}")
    return convs


def applies(conv, name):
    t = conv.get("templates") or ["*"]
    return "*" in t or name in t


def error_record(exc):
    return {"error_type": type(exc).__name__, "error": str(exc)}


# ----------------------------------------------------------------------------------------------
# transformers mode


def ids_of(result):
    """Normalises what apply_chat_template(tokenize=True) returns across versions."""
    if hasattr(result, "keys") and "input_ids" in result:
        result = result["input_ids"]
    if hasattr(result, "tolist"):
        result = result.tolist()
    if result and isinstance(result[0], list):
        result = result[0]
    return [int(x) for x in result]


def render_transformers(tok, raw_tok, template, conv, with_ids):
    kwargs = dict(conv.get("kwargs") or {})
    call = dict(
        tools=conv.get("tools"),
        add_generation_prompt=conv.get("add_generation_prompt", False),
        chat_template=template,
        **kwargs,
    )
    rec = {}
    try:
        text = tok.apply_chat_template(conv["messages"], tokenize=False, **call)
    except Exception as e:  # a template may reject a conversation: record it
        rec.update(error_record(e))
        return rec
    rec["text"] = text
    if with_ids:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        rec["ids"] = [int(x) for x in ids]
        if raw_tok is not None:
            rec["ids_tokenizers"] = [int(x) for x in raw_tok.encode(text, add_special_tokens=False).ids]
            rec["ids_agree"] = rec["ids_tokenizers"] == rec["ids"]
        try:
            via = ids_of(tok.apply_chat_template(conv["messages"], tokenize=True, **call))
            rec["ids_match_apply_chat_template"] = via == rec["ids"]
        except Exception as e:
            rec["ids_match_apply_chat_template"] = None
            rec["apply_chat_template_tokenize_error"] = f"{type(e).__name__}: {e}"
    return rec


def probe_now(tok):
    probe = "{{ strftime_now('" + NOW_FORMAT + "') }}"
    try:
        return tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                       chat_template=probe)
    except Exception as e:
        return f"probe failed: {type(e).__name__}: {e}"


def special_tokens_of(tok):
    out = {}
    try:
        for k, v in dict(tok.special_tokens_map).items():
            out[k] = v if isinstance(v, (str, list)) else str(v)
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


# ----------------------------------------------------------------------------------------------
# local jinja2 mode (provisional)


def local_env():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def local_special_tokens(tokdir):
    out = {}
    path = os.path.join(tokdir, "tokenizer_config.json")
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for k in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
              "mask_token"):
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[k] = v
    return out


def render_local(env, special, template, conv):
    rec = {}
    try:
        compiled = env.from_string(template)
        kwargs = dict(special)
        kwargs.update(conv.get("kwargs") or {})
        rec["text"] = compiled.render(messages=conv["messages"], tools=conv.get("tools"),
                                      documents=None,
                                      add_generation_prompt=conv.get("add_generation_prompt",
                                                                     False),
                                      **kwargs)
    except Exception as e:
        rec.update(error_record(e))
    return rec


# ----------------------------------------------------------------------------------------------


def template_of_dir(tokdir, name, templates_dir, tok=None):
    """The template a tokenizer directory ships, else testdata/chat/templates/<name>.jinja."""
    if tok is not None:
        t = getattr(tok, "chat_template", None)
        if isinstance(t, dict):
            t = t.get("default")
        if isinstance(t, str) and t:
            return t, "tokenizer (transformers loaded)"
    jpath = os.path.join(tokdir, "chat_template.jinja")
    if os.path.exists(jpath):
        with open(jpath, encoding="utf-8") as f:
            return f.read(), "chat_template.jinja"
    cpath = os.path.join(tokdir, "tokenizer_config.json")
    if os.path.exists(cpath):
        with open(cpath, encoding="utf-8") as f:
            t = json.load(f).get("chat_template")
        if isinstance(t, list):
            t = next((x.get("template") for x in t if x.get("name") == "default"), None)
        if isinstance(t, str) and t:
            return t, "tokenizer_config.json"
    fpath = os.path.join(templates_dir, name + ".jinja")
    if os.path.exists(fpath):
        with open(fpath, encoding="utf-8") as f:
            return f.read(), "testdata/chat/templates/" + name + ".jinja"
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="folder with one tokenizer folder per name")
    ap.add_argument("--conversations", required=True, help="conversations.jsonl")
    ap.add_argument("--templates", default=None,
                    help="folder of extra templates (default: templates/ beside --conversations)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--local-jinja", action="store_true",
                    help="render with jinja2 only (no transformers, no ids); provisional")
    args = ap.parse_args()

    templates_dir = args.templates or os.path.join(os.path.dirname(args.conversations),
                                                   "templates")
    convs = load_conversations(args.conversations)
    os.makedirs(args.out, exist_ok=True)
    names = sorted(d for d in os.listdir(args.src) if os.path.isdir(os.path.join(args.src, d)))
    if not names:
        sys.exit(f"no tokenizer folders under {args.src}")

    started = time.time()
    meta = {"mode": "local-jinja" if args.local_jinja else "transformers"}
    if args.local_jinja:
        import jinja2
        meta["jinja2"] = jinja2.__version__
        env = local_env()
        meta["clock"] = "local strftime_now"
    else:
        import jinja2
        import transformers
        from transformers import AutoTokenizer
        meta["transformers"] = transformers.__version__
        meta["jinja2"] = jinja2.__version__
        meta["clock"] = freeze_transformers_clock()

    # (output name, tokenizer folder, template text, template source, with ids)
    jobs = []
    toks = {}
    raw_toks = {}
    for name in names:
        tokdir = os.path.join(args.src, name)
        tok = None
        if not args.local_jinja:
            try:
                tok = AutoTokenizer.from_pretrained(tokdir)
            except Exception as e:
                print(f"{name}: cannot load tokenizer: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            toks[name] = tok
            try:
                from tokenizers import Tokenizer
                raw_toks[name] = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
            except Exception as e:
                print(f"{name}: tokenizers cannot load tokenizer.json: {type(e).__name__}: {e}",
                      file=sys.stderr)
            meta.setdefault("tokenizer_classes", {})[name] = type(tok).__name__
        text, source = template_of_dir(tokdir, name, templates_dir, tok)
        if text is None:
            print(f"{name}: no chat template found, skipped", file=sys.stderr)
            continue
        jobs.append((name, name, text, source, True))
    for extra, host in sorted(EXTRAS.items()):
        path = os.path.join(templates_dir, extra + ".jinja")
        if not os.path.exists(path) or host not in names:
            print(f"{extra}: template or host tokenizer {host} missing, skipped", file=sys.stderr)
            continue
        if not args.local_jinja and host not in toks:
            continue
        with open(path, encoding="utf-8") as f:
            jobs.append((extra, host, f.read(), "testdata/chat/templates/" + extra + ".jinja",
                         False))

    summary = []
    for out_name, host, template, source, with_ids in jobs:
        tok = toks.get(host)
        now = FIXED_NOW.strftime(NOW_FORMAT) if args.local_jinja else probe_now(tok)
        special = (local_special_tokens(os.path.join(args.src, host)) if args.local_jinja
                   else special_tokens_of(tok))
        n_ok = n_err = n_mismatch = n_disagree = 0
        path = os.path.join(args.out, out_name + ".expected.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for conv in convs:
                if not applies(conv, out_name):
                    continue
                rec = {"name": conv["name"], "template": out_name, "tokenizer": host,
                       "template_source": source, "template_sha256": sha256(template),
                       "now": now, "ids_source": None, "text": None, "ids": None, "error": None,
                       "error_type": None}
                try:
                    if args.local_jinja:
                        rec.update(render_local(env, special, template, conv))
                    else:
                        rec["ids_source"] = ("tokenizer(text, add_special_tokens=False)"
                                             if with_ids else None)
                        rec.update(render_transformers(tok, raw_toks.get(host), template, conv,
                                                       with_ids))
                except Exception as e:  # never let one conversation stop the run
                    rec.update(error_record(e))
                    rec["traceback"] = traceback.format_exc(limit=3)
                if rec["error"] is not None:
                    n_err += 1
                else:
                    n_ok += 1
                if rec.get("ids_match_apply_chat_template") is False:
                    n_mismatch += 1
                if rec.get("ids_agree") is False:
                    n_disagree += 1
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        summary.append((out_name, source, n_ok, n_err, n_mismatch, special))
        print(f"{out_name:14s} rendered {n_ok:3d}  rejected {n_err:3d}  "
              f"ids!=apply_chat_template {n_mismatch:2d}  transformers!=tokenizers {n_disagree:2d}  "
              f"template from {source}")
    meta["seconds"] = round(time.time() - started, 2)
    meta["now"] = FIXED_NOW.strftime(NOW_FORMAT)
    meta["outputs"] = {s[0]: {"rendered": s[2], "rejected": s[3], "special_tokens": s[5]}
                       for s in summary}
    with open(os.path.join(args.out, "chat.meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"done in {meta['seconds']} s: {len(summary)} templates, {len(convs)} conversations; "
          f"clock: {meta['clock']}")


if __name__ == "__main__":
    main()
