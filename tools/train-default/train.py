#!/usr/bin/env python3
"""Train mach's embedded default model: tokenizer, qwen3_moe model, dense draft model, references.

Run through run.sh on a machine with an NVIDIA GPU, PyTorch, transformers 5.x, tokenizers and
safetensors (no network needed): `tools/train-default/run.sh OUTDIR`. Stages, each timed and
reported on its own (a failed stage does not hide the others' results):

  1. tokenizer  byte-level BPE (Qwen3 form) trained on the train split, + special tokens
  2. encode     the splits into token streams
  3. moe        Qwen3MoeForCausalLM, bf16 autocast, AdamW, cosine, load-balancing aux loss; a
                few runs of increasing length (recipe.TRAIN_DEFAULTS["moe_epochs"]) with early
                stopping on the val split; the best checkpoint is kept (and packed as it goes)
  4. draft      Qwen3ForCausalLM (dense, small), same recipe; stays bf16
  5. quantize   the MoE's best float32 weights -> MLX affine 8-bit, group 64 (quantize.py, with
                tools/refgen's quantizer: every Linear and the embedding, routers 8-bit, norms
                bf16, experts stacked as mlp.switch_mlp.*), read back and checked value for value
  6. reference  reload the SAVED checkpoints from disk (the MoE: its 8-bit weights dequantized to
                float32), float32 on the CPU, eager: perplexity windows, greedy continuations,
                expert usage -> reference.json
  7. card       MODEL_CARD.md filled in from the numbers of this run
  8. pack       OUTDIR/default-model.tar.gz.part-*, summary.json, MODEL_CARD.md, SHA256SUMS

`--smoke` shrinks everything (tiny models, a corpus subset, seconds of training) to check the
code paths on a new machine; its outputs are marked smoke and are not a model to ship.
"""

import argparse
import copy
import gzip
import inspect
import io
import json
import math
import os
import platform
import random
import shutil
import sys
import tarfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

T0 = time.time()


def log(msg):
    print("[%7.1fs] %s" % (time.time() - T0, msg), flush=True)


# ---------------------------------------------------------------------------------------------
# Stage bookkeeping


class Stages:
    """Runs stages, records status/seconds/detail, and rewrites summary.json after each."""

    def __init__(self, summary_path, summary):
        self.rows = []
        self.summary_path = summary_path
        self.summary = summary
        self.results = {}

    def run(self, name, fn, needs=()):
        missing = [n for n in needs if self.results.get(n) is None]
        if missing:
            self.rows.append({"stage": name, "status": "skipped", "seconds": 0.0,
                              "detail": "needs " + ", ".join(missing)})
            log("stage %s skipped: needs %s" % (name, ", ".join(missing)))
            self.flush()
            return None
        log("== stage %s" % name)
        t = time.time()
        try:
            res = fn()
            status, detail = "ok", ""
            if isinstance(res, dict) and res.get("_status"):
                status, detail = res["_status"], res.get("_detail", "")
        except Exception as e:  # report and carry on with what does not depend on it
            res = None
            status, detail = "failed", "%s: %s" % (type(e).__name__, e)
            log("stage %s FAILED: %s" % (name, detail))
            traceback.print_exc()
            sys.stdout.flush()
        dt = time.time() - t
        self.results[name] = res
        self.rows.append({"stage": name, "status": status, "seconds": round(dt, 1), "detail": detail})
        log("stage %s: %s in %.1fs %s" % (name, status, dt, detail))
        self.flush()
        return res

    def flush(self):
        self.summary["stages"] = self.rows
        self.summary["elapsed_s"] = round(time.time() - T0, 1)
        try:
            recipe.write_json_atomic(self.summary_path, self.summary)
        except Exception as e:
            log("warning: could not write %s: %s" % (self.summary_path, e))

    def ok(self):
        return all(r["status"] == "ok" for r in self.rows)


# ---------------------------------------------------------------------------------------------
# Environment


def versions():
    v = {"python": platform.python_version(), "torch": torch.__version__,
         "cuda_runtime": torch.version.cuda, "platform": platform.platform()}
    for mod in ("transformers", "tokenizers", "safetensors", "numpy", "jinja2"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception as e:
            v[mod] = "unavailable (%s)" % type(e).__name__
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        v["device"] = "%s, %d SMs, %.1f GiB, capability %d.%d" % (
            p.name, p.multi_processor_count, p.total_memory / 2**30, p.major, p.minor)
    else:
        v["device"] = "cpu only (%d threads)" % torch.get_num_threads()
    return v


def seed_all(seed):
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except Exception:
        pass


def call_with_supported(fn, *args, **kwargs):
    """Call fn with only the keyword arguments its signature accepts (APIs moved between
    transformers versions; e.g. save_pretrained lost safe_serialization in 5.0)."""
    try:
        params = inspect.signature(fn).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
    except (TypeError, ValueError):
        pass
    return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Corpus


def load_split(corpus, name, limit=None):
    path = os.path.join(corpus, name + ".jsonl.gz")
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if limit and len(out) >= limit:
                break
    return out


def smoke_subset(records, n):
    """A deterministic, kind-balanced subset for --smoke."""
    docs = [r for r in records if r["kind"] == "doc"][:n]
    chats = [r for r in records if r["kind"] == "chat"][: n * 4]
    return docs + chats


# ---------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(train_records, vocab_size, out_dir):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, \
        pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(recipe.SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(recipe.SPECIAL_TOKENS), min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])

    def texts():
        for r in train_records:
            t = r["text"]
            if r["kind"] == "chat":  # the special strings become added tokens, not merges
                for s in recipe.SPECIAL_TOKENS:
                    t = t.replace(s, "\n")
            yield t

    tok.train_from_iterator(texts(), trainer=trainer, length=len(train_records))
    bpe_size = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False, lstrip=False, rstrip=False,
                                       single_word=False) for s in recipe.SPECIAL_TOKENS])
    final_size = tok.get_vocab_size()
    log("tokenizer: %d BPE entries + %d special = %d" % (bpe_size, len(recipe.SPECIAL_TOKENS), final_size))

    # Rewrite the pipeline parts in exactly Qwen3's form (this is the tokenizer used from here
    # on and shipped) and check that it encodes like the trained one and round-trips.
    d = recipe.tokenizer_json_fixups(json.loads(tok.to_str()))
    fixed = Tokenizer.from_str(json.dumps(d, ensure_ascii=False))
    import unicodedata
    samples = [r["text"] for r in train_records[:50]] + ["  Hello,   world!\n\n\tdef f(x): return x**2  # 12345",
                                                          "naïve café — ünïcödé ✓ 数学 \r\n end"]
    problems = []
    for s in samples:
        a, b = tok.encode(s, add_special_tokens=False).ids, fixed.encode(s, add_special_tokens=False).ids
        if a != b:
            problems.append("rewrite changed the encoding of %r" % s[:60])
        if fixed.decode(b, skip_special_tokens=False) != unicodedata.normalize("NFC", s):
            problems.append("no round trip for %r" % s[:60])
    for p in problems[:5]:
        log("WARNING: tokenizer: " + p)

    ids = recipe.special_ids(final_size)
    for s in recipe.SPECIAL_TOKENS:
        if fixed.token_to_id(s) != ids[s]:
            raise RuntimeError("special token %s has id %s, want %d" % (s, fixed.token_to_id(s), ids[s]))
    os.makedirs(out_dir, exist_ok=True)
    fixed.save(os.path.join(out_dir, "tokenizer.json"), pretty=True)
    recipe.write_json_atomic(os.path.join(out_dir, "tokenizer_config.json"),
                             recipe.tokenizer_config(final_size, recipe.MAX_POSITIONS))
    return fixed, final_size, bpe_size, problems


def check_tokenizer_with_transformers(model_dir, raw_tok):
    """Load the saved files with transformers' AutoTokenizer and compare encodings and the chat
    template with the raw tokenizer and recipe.render_chatml. Informational: mismatches are
    reported in summary.json, not fatal (mach reads tokenizer.json itself)."""
    out = {}
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(model_dir)
        out["class"] = type(at).__name__
        samples = ["The Python standard library", "def fib(n):\n    a, b = 0, 1",
                   "<|im_start|>user\nhi<|im_end|>\n", "  spaces\tand\nnewlines  "]
        mism = []
        for s in samples:
            a = at(s, add_special_tokens=True)["input_ids"]
            b = raw_tok.encode(s, add_special_tokens=False).ids
            if list(a) != list(b):
                mism.append({"text": s, "auto": list(a), "raw": b})
        out["encode_mismatches"] = mism
        msgs = recipe.GREEDY_PROMPTS[2]["candidates"][0]["messages"]
        rendered = at.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        out["chat_template_matches"] = rendered == recipe.render_chatml(msgs, True)
        out["chat_template_rendered"] = rendered
        out["eos_token"] = at.eos_token
        out["pad_token"] = at.pad_token
        out["bos_token"] = at.bos_token
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    return out


def encode_records(tok, records):
    texts = [r["text"] for r in records]
    encs = tok.encode_batch(texts, add_special_tokens=False)
    return [e.ids for e in encs]


# ---------------------------------------------------------------------------------------------
# Models


def hf_config(kind, cfg):
    """Build a transformers config from a recipe dict, tolerating the API differences between
    4.x and 5.x (rope_parameters vs rope_theta; head_dim as a field or an extra)."""
    import transformers
    cls = transformers.Qwen3MoeConfig if kind == "moe" else transformers.Qwen3Config
    base = dict(cfg)
    theta = base.pop("rope_theta")
    attempts = [
        dict(base, rope_parameters={"rope_type": "default", "rope_theta": theta}),
        dict(base, rope_theta=theta),
    ]
    errors = []
    for kw in attempts:
        for drop_head_dim in (False, True):
            k = dict(kw)
            if drop_head_dim:
                k.pop("head_dim", None)
            try:
                c = cls(**k)
            except Exception as e:  # noqa: PERF203 - a handful of attempts
                errors.append("%s" % e)
                continue
            hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            if hd != cfg["head_dim"]:
                errors.append("head_dim came out %s" % hd)
                continue
            if kind == "moe" and getattr(c, "num_experts", None) != cfg["num_experts"]:
                errors.append("num_experts came out %s" % getattr(c, "num_experts", None))
                continue
            if getattr(c, "head_dim", None) is None:
                try:
                    c.head_dim = cfg["head_dim"]  # so that config.json states it
                except Exception:
                    pass
            return c
    raise RuntimeError("cannot build %s from the recipe: %s" % (cls.__name__, "; ".join(errors)))


def new_model(kind, cfg, device, experts_impl):
    import transformers
    cls = transformers.Qwen3MoeForCausalLM if kind == "moe" else transformers.Qwen3ForCausalLM
    config = hf_config(kind, cfg)
    model = cls(config)
    impl = None
    if kind == "moe" and hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation(experts_impl)
        except Exception as e:
            log("warning: set_experts_implementation(%s): %s" % (experts_impl, e))
        try:
            impl = model.get_experts_implementation()
        except Exception:
            impl = getattr(model.config, "_experts_implementation", None)
    init_weights(model, cfg)
    model.to(device)
    return model, impl


def init_weights(model, cfg):
    """Deterministic initialisation, independent of the transformers version: N(0, 0.02) for
    matrices and expert stacks, output projections (o_proj, down_proj) scaled by 1/sqrt(2L),
    norms at 1. The router starts at N(0, 0.02) too (some versions start it at zero)."""
    std = cfg["initializer_range"]
    out_std = std / math.sqrt(2 * cfg["num_hidden_layers"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            elif name.endswith("o_proj.weight") or "down_proj" in name:
                p.normal_(0.0, out_std)
            else:
                p.normal_(0.0, std)


def _dense_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """Training-only replacement of transformers' fused experts forward: every expert runs on
    every token in two large matmuls and the outputs are weighted by the routing weights, which
    are zero for the experts a token was not routed to. Same function and gradients as the
    per-expert loop (up to rounding), without its Python loop and host syncs. Layout as in
    transformers 5.x: gate_up_proj [E, 2I, H] with gate in the first half, down_proj [E, H, I]."""
    e, two_i, h = self.gate_up_proj.shape
    i = two_i // 2
    x = hidden_states.reshape(-1, h)
    t = x.shape[0]
    gu = F.linear(x, self.gate_up_proj.reshape(e * two_i, h)).view(t, e, two_i)
    a = self.act_fn(gu[..., :i]) * gu[..., i:]
    w = torch.zeros(t, e, dtype=a.dtype, device=a.device).scatter(1, top_k_index, top_k_weights.to(a.dtype))
    a = (a * w.unsqueeze(-1)).reshape(t, e * i)
    out = F.linear(a, self.down_proj.permute(1, 0, 2).reshape(h, e * i))
    return out.to(hidden_states.dtype).reshape(hidden_states.shape)


def use_dense_experts(model, cfg, device):
    """Patch _dense_experts_forward into every fused experts module of `model`, after checking
    on one MoE block, in float32 without TF32, that it gives what the original forward gives.
    Returns (True, detail) or (False, why) with the model left unpatched."""
    experts = [(n, m) for n, m in model.named_modules()
               if n.endswith("mlp.experts") and getattr(getattr(m, "gate_up_proj", None), "dim", lambda: 0)() == 3
               and getattr(getattr(m, "down_proj", None), "dim", lambda: 0)() == 3 and hasattr(m, "act_fn")]
    if len(experts) != cfg["num_hidden_layers"]:
        return False, "found %d fused expert modules, want %d" % (len(experts), cfg["num_hidden_layers"])
    block = dict(model.named_modules())[experts[0][0][: -len(".experts")]]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(2, 24, cfg["hidden_size"], generator=g).to(device)
        with torch.no_grad():
            ref = block(x)
            ref = ref[0] if isinstance(ref, tuple) else ref
            for _, m in experts:
                m.forward = _dense_experts_forward.__get__(m, type(m))
            new = block(x)
            new = new[0] if isinstance(new, tuple) else new
        rel = float((new.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30))
    except Exception as e:
        rel, err = float("nan"), "%s: %s" % (type(e).__name__, e)
    else:
        err = None
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    if err is None and rel < 1e-4:
        return True, "dense-masked experts (checked against eager: relative difference %.1e)" % rel
    for _, m in experts:
        if "forward" in m.__dict__:
            del m.forward
    return False, "dense-masked experts rejected (%s); eager loop" % (err or "relative difference %.2e" % rel)


def param_count(model):
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors counted once


class RouterMonitor:
    """Forward hooks on every `mlp.gate` router. From the router's input and weight it computes
    the router logits itself (independent of what the router module returns in a given
    transformers version) and from them the switch-transformer load-balancing loss
    E * sum_e f_e * P_e (f: share of top-k assignments, P: mean probability) and the z-loss.
    It can also count expert assignments for usage statistics."""

    def __init__(self, model, num_experts, top_k):
        self.E, self.k = num_experts, top_k
        self.enabled = False
        self.counting = False
        self.handles = []
        self.layer_of = {}
        for name, mod in model.named_modules():
            if name.endswith("mlp.gate") and hasattr(mod, "weight"):
                self.layer_of[id(mod)] = len(self.handles)
                try:
                    h = mod.register_forward_hook(self._hook_kw, with_kwargs=True)
                except TypeError:  # torch < 2.0
                    h = mod.register_forward_hook(self._hook)
                self.handles.append(h)
        self.counts = None
        self.reset()

    def reset(self):
        self.aux, self.z = [], []

    def start_counting(self):
        self.counting = True
        self.counts = torch.zeros(len(self.handles), self.E, dtype=torch.float64)

    def _hook_kw(self, mod, args, kwargs, output):
        x = args[0] if args else next(iter(kwargs.values()))
        self._observe(mod, x)

    def _hook(self, mod, inputs, output):
        self._observe(mod, inputs[0])

    def _observe(self, mod, x):
        if not (self.enabled or self.counting):
            return
        x = x.reshape(-1, x.shape[-1])
        logits = F.linear(x, mod.weight).float()
        probs = logits.softmax(dim=-1)
        top = probs.topk(self.k, dim=-1).indices
        if self.counting:
            c = torch.bincount(top.reshape(-1), minlength=self.E).double().cpu()
            self.counts[self.layer_of[id(mod)]] += c
        if self.enabled:
            frac = torch.zeros(self.E, device=x.device, dtype=torch.float32)
            frac.scatter_add_(0, top.reshape(-1), torch.ones(top.numel(), device=x.device))
            frac = frac / top.numel()
            self.aux.append(self.E * (frac.detach() * probs.mean(dim=0)).sum())
            self.z.append(torch.logsumexp(logits, dim=-1).pow(2).mean())

    def losses(self):
        if not self.aux:
            return None, None
        aux = torch.stack(self.aux).mean()
        z = torch.stack(self.z).mean()
        self.reset()
        return aux, z

    def usage(self):
        """Per layer: share of assignments per expert, min/max share, normalised entropy."""
        out = []
        for layer in range(self.counts.shape[0]):
            c = self.counts[layer]
            tot = float(c.sum())
            if tot == 0:
                out.append({"layer": layer, "assignments": 0})
                continue
            share = (c / tot).tolist()
            ent = -sum(s * math.log(s) for s in share if s > 0) / math.log(self.E)
            out.append({"layer": layer, "assignments": int(tot), "share": [round(s, 5) for s in share],
                        "min_share": round(min(share), 5), "max_share": round(max(share), 5),
                        "unused_experts": sum(1 for s in share if s == 0),
                        "normalized_entropy": round(ent, 4)})
        return out

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


# ---------------------------------------------------------------------------------------------
# Training


def make_stream(id_lists, eot):
    """Concatenate documents, each followed by <|endoftext|>, into one int64 tensor."""
    total = sum(len(x) + 1 for x in id_lists)
    buf = torch.empty(total, dtype=torch.int64)
    pos = 0
    for ids in id_lists:
        n = len(ids)
        buf[pos:pos + n] = torch.tensor(ids, dtype=torch.int64)
        buf[pos + n] = eot
        pos += n + 1
    return buf


def fixed_windows(stream, seq_len):
    """Non-overlapping [N, seq_len+1] windows of a stream (for validation)."""
    n = (stream.numel() - 1) // seq_len
    if n == 0:
        raise RuntimeError("validation stream shorter than one window")
    idx = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
    return stream[idx]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def forward_logits(model, x):
    out = model(input_ids=x, use_cache=False)
    return out.logits if hasattr(out, "logits") else out[0]


@torch.no_grad()
def eval_loss(model, windows, batch_size, device):
    """Mean next-token cross-entropy over windows ([N, L+1])."""
    was = model.training
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i:i + batch_size].to(device)
        with autocast(device):
            logits = forward_logits(model, w[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                               reduction="sum")
        tot += float(loss)
        cnt += w[:, 1:].numel()
    model.train(was)
    return tot / cnt


def make_optimizer(model, lr, hp, device):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": hp["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=lr, betas=tuple(hp["betas"]), eps=1e-8)
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw)
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(groups, **kw)


def train_run(name, model, monitor, stream, val_windows, epochs, lr, hp, device, deadline,
              on_new_best=None, save_every_s=60.0):
    """One training run: `epochs` passes over `stream` in shuffled windows of seq_len+1 (a new
    random offset each epoch), cosine schedule, evaluation every 1/evals_per_epoch epoch, early
    stopping after `patience` evaluations without improvement, and a wall-clock deadline. Once
    the speed is known (after a few steps) a schedule that cannot finish before the deadline is
    shortened, so the cosine decay completes. on_new_best(state, val_loss) is called for a new
    best at most every save_every_s seconds (checkpoints while training). Returns a record with
    the curve and the best state (on the CPU)."""
    seq, bs = hp["seq_len"], hp["batch_size"]
    stream_dev = stream.to(device)
    chunks = (stream.numel() - 1 - seq) // seq
    steps_per_epoch = max(1, chunks // bs)
    total = max(1, int(round(epochs * steps_per_epoch)))
    planned = total
    warm = min(hp["warmup_steps"], max(1, total // 10))
    eval_every = max(1, steps_per_epoch // hp["evals_per_epoch"])
    opt = make_optimizer(model, lr, hp, device)
    gen = torch.Generator().manual_seed(hp["seed"] + int(epochs * 1000))
    arange = torch.arange(seq + 1, device=device)
    curve, best, best_state, best_step, bad = [], float("inf"), None, -1, 0
    stop = None
    model.train()
    if monitor is not None:
        monitor.enabled = len(monitor.handles) > 0
    t_start, tokens, step = time.time(), 0, 0
    log_every = max(1, min(25, eval_every))
    last_log_t, last_log_tokens, last_save = time.time(), 0, time.time()
    eval_seconds = 0.0
    # Speed is measured between two early steps, after the first few (CUDA warm-up).
    probe_a = min(5, max(1, total // 50))
    probe_b = probe_a + min(20, max(2, total // 20))
    t_a = e_a = None
    while stop is None and step < total:
        offset = int(torch.randint(0, seq, (1,), generator=gen))
        n = (stream.numel() - 1 - offset) // seq
        perm = torch.randperm(n, generator=gen)
        for b in range(0, n - bs + 1, bs):
            if step >= total:
                break
            if time.time() > deadline:
                stop = "time budget"
                break
            cur_lr = recipe.lr_at(step, total, lr, warm, hp["min_lr_frac"])
            for g in opt.param_groups:
                g["lr"] = cur_lr
            starts = (perm[b:b + bs] * seq + offset).to(device)
            x = stream_dev[starts[:, None] + arange[None, :]]
            with autocast(device):
                logits = forward_logits(model, x[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            ce = loss.detach()
            aux = z = None
            if monitor is not None and monitor.enabled:
                aux_t, z_t = monitor.losses()
                if aux_t is not None:
                    loss = loss + hp["aux_loss_coef"] * aux_t + hp["z_loss_coef"] * z_t
                    aux, z = aux_t.detach(), z_t.detach()
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += x[:, 1:].numel()
            if step == probe_a:
                sync(device)
                t_a, e_a = time.time(), eval_seconds
            if step == probe_b and total > step and t_a is not None:
                # Shorten a schedule that cannot finish in time (evaluations included; before
                # the first one, an evaluation batch is taken as 0.4 of a training step).
                sync(device)
                per_step = (time.time() - t_a - (eval_seconds - e_a)) / (probe_b - probe_a)
                if curve:
                    per_eval = eval_seconds / len(curve)
                else:
                    per_eval = 0.4 * per_step * math.ceil(val_windows.shape[0] / bs)
                left = deadline - time.time()
                margin = min(3.0, 0.05 * left)
                more = int((left - margin) / (per_step + per_eval / eval_every))
                if step + more < total:
                    log("%s: %.0f ms/step; shortening the schedule from %d to %d steps to end in time" % (
                        name, per_step * 1000, total, max(step + 1, step + more)))
                    total = max(step + 1, step + more)
            if step % log_every == 0 or step == 1:
                now = time.time()
                tps = (tokens - last_log_tokens) / max(1e-9, now - last_log_t)
                last_log_t, last_log_tokens = now, tokens
                log("%s step %5d/%d (ep %.2f)  loss %.4f  aux %s  z %s  gnorm %.2f  lr %.2e  %s tok/s" % (
                    name, step, total, step / steps_per_epoch, float(ce),
                    "%.4f" % float(aux) if aux is not None else "-",
                    "%.2f" % float(z) if z is not None else "-", float(gnorm), cur_lr,
                    recipe.human_count(tps)))
                if not math.isfinite(float(ce)):
                    raise RuntimeError("loss is not finite at step %d" % step)
            if step % eval_every == 0 or step == total:
                te = time.time()
                vl = eval_loss(model, val_windows, bs, device)
                eval_seconds += time.time() - te
                ep = step / steps_per_epoch
                curve.append({"step": step, "epoch": round(ep, 3), "tokens": tokens,
                              "train_loss": round(float(ce), 5), "val_loss": round(vl, 5),
                              "val_ppl": round(math.exp(vl), 4), "lr": cur_lr,
                              "seconds": round(time.time() - t_start, 1)})
                improved = vl < best - 1e-4
                log("%s eval @ epoch %.2f: val loss %.4f ppl %.3f%s" % (
                    name, ep, vl, math.exp(vl), "  (best)" if improved else ""))
                if improved:
                    best, best_step, bad = vl, step, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                    if on_new_best is not None and time.time() - last_save >= save_every_s:
                        on_new_best(best_state, best)
                        last_save = time.time()
                else:
                    bad += 1
                    if bad >= hp["patience"]:
                        stop = "early stop (no val improvement in %d evals)" % bad
                        break
    if stop is None:
        stop = "schedule done" if total == planned else "schedule done (shortened to fit the budget)"
    if monitor is not None:
        monitor.enabled = False
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    secs = time.time() - t_start
    return {"name": name, "epochs_planned": epochs, "steps_planned": planned, "steps_scheduled": total,
            "steps": step, "steps_per_epoch": steps_per_epoch, "batch_tokens": bs * seq, "tokens": tokens,
            "seconds": round(secs, 1), "eval_seconds": round(eval_seconds, 1),
            "tokens_per_s": round(tokens / max(1e-9, secs - eval_seconds)),
            "best_val_loss": best if math.isfinite(best) else None,
            "best_val_ppl": math.exp(best) if math.isfinite(best) else None, "best_step": best_step,
            "best_epoch": round(best_step / steps_per_epoch, 3) if best_step > 0 else None,
            "stop": stop, "curve": curve, "best_state": best_state, "lr": lr, "warmup": warm,
            "peak_gpu_memory_gib": round(peak_gib, 2) if peak_gib is not None else None}


def sweep(kind, cfg, stream, val_windows, epoch_list, lr, hp, device, budget_s, experts_impl, save):
    """Runs of increasing length (a fresh model each, same seed). A run is skipped when the
    speed measured so far says it cannot finish in the budget left; the sweep stops when a
    longer run no longer beats the best val loss (more epochs only overfit) or time is up.
    save(state, val_loss) writes a checkpoint; it is called for every new overall best (during
    a run at most once a minute, and at the end of the run)."""
    t_end = time.time() + budget_s
    runs, best = [], None
    sec_per_epoch = None
    for i, epochs in enumerate(epoch_list):
        left = t_end - time.time()
        if i > 0 and sec_per_epoch is not None:
            need = epochs * sec_per_epoch + 5
            if need > left:
                log("%s: skipping the %s-epoch run (needs ~%.0fs, %.0fs left)" % (kind, epochs, need, left))
                runs.append({"name": "%s/run%d" % (kind, i + 1), "epochs_planned": epochs,
                             "skipped": "needs ~%.0fs, %.0fs left" % (need, left)})
                continue
        if left < 5:
            break
        seed_all(hp["seed"])
        model, impl = new_model(kind, cfg, device, "eager" if experts_impl == "dense" else experts_impl)
        if kind == "moe" and experts_impl == "dense":
            ok, detail = use_dense_experts(model, cfg, device)
            log("%s: %s" % (kind, detail))
            impl = detail
        monitor = RouterMonitor(model, cfg["num_experts"], cfg["num_experts_per_tok"]) if kind == "moe" else None
        if monitor is not None and len(monitor.handles) != cfg["num_hidden_layers"]:
            raise RuntimeError("found %d routers (mlp.gate), want %d" % (len(monitor.handles), cfg["num_hidden_layers"]))
        name = "%s/run%d" % (kind, i + 1)
        n_params = param_count(model)
        log("%s: %d parameters, %s epochs, lr %.1e, experts backend %s" % (name, n_params, epochs, lr, impl))
        overall = best["best_val_loss"] if best else float("inf")

        def mid_save(state, val, _overall=overall):
            if val < _overall:
                save(state, val)

        r = train_run(name, model, monitor, stream, val_windows, epochs, lr, hp, device, t_end, mid_save)
        if monitor is not None:
            monitor.remove()
        del model, monitor
        if device.type == "cuda":
            torch.cuda.empty_cache()
        r["experts_implementation"] = impl
        r["params"] = n_params
        if r["steps"] > 0:
            sec_per_epoch = (r["seconds"]) / max(1e-9, r["steps"] / r["steps_per_epoch"])
        log("%s: %s after %d steps (%.2f epochs), best val ppl %s at epoch %s, %s tok/s, %.0fs" % (
            name, r["stop"], r["steps"], r["steps"] / r["steps_per_epoch"],
            "%.3f" % r["best_val_ppl"] if r["best_val_ppl"] else "n/a", r["best_epoch"],
            recipe.human_count(r["tokens_per_s"]), r["seconds"]))
        improved = r["best_state"] is not None and r["best_val_loss"] < overall
        if improved:
            save(r["best_state"], r["best_val_loss"])
            if best is not None:
                best["best_state"] = None
            best = r
        else:
            r["best_state"] = None
        runs.append(r)
        if not improved and i > 0:
            log("%s: the %s-epoch run did not beat the best; stopping the sweep" % (kind, epochs))
            break
        if time.time() >= t_end:
            break
    if best is None:
        raise RuntimeError("no %s run produced a checkpoint" % kind)
    return best, runs


def save_checkpoint(kind, cfg, state, out_dir, vocab_size, dtype=torch.bfloat16):
    """Build a fresh model on the CPU, load `state`, cast to `dtype` (bf16) and write it with
    save_pretrained (whatever tensor names this transformers version writes), then our
    generation_config.json."""
    m, _ = new_model(kind, cfg, torch.device("cpu"), "eager")
    missing, unexpected = m.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
        raise RuntimeError("state does not fit the model: missing %s unexpected %s" % (missing, unexpected))
    m = m.to(dtype).eval()
    # Recorded in config.json; the attribute is "dtype" since transformers 5.0.
    setattr(m.config, "dtype" if hasattr(m.config, "dtype") else "torch_dtype", dtype)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if f.endswith(".safetensors") or f in ("config.json", "generation_config.json", "model.safetensors.index.json"):
            os.remove(os.path.join(out_dir, f))
    call_with_supported(m.save_pretrained, out_dir, safe_serialization=True, max_shard_size="100GB")
    recipe.write_json_atomic(os.path.join(out_dir, "generation_config.json"), recipe.generation_config(vocab_size))
    files = sorted(f for f in os.listdir(out_dir) if os.path.isfile(os.path.join(out_dir, f)))
    if "model.safetensors" not in files:
        raise RuntimeError("save_pretrained wrote %s, no model.safetensors" % files)
    return files


def safetensors_index(path):
    """Tensor names, dtypes and shapes as stored (for the Go loader's authors)."""
    try:
        from safetensors import safe_open
        out = {}
        with safe_open(path, framework="pt") as f:
            for k in sorted(f.keys()):
                sl = f.get_slice(k)
                out[k] = {"dtype": str(sl.get_dtype()), "shape": list(sl.get_shape())}
        return out
    except Exception as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


def pack_dir(src_dir, prefix="", compresslevel=6):
    """A deterministic tar.gz (sorted names, mtime 0, root owner) of the files under src_dir,
    named prefix/relative-path (or relative-path when prefix is empty)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0, compresslevel=compresslevel) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            seen_dirs = set()
            for rel in recipe.tree_files(src_dir):
                parts = rel.split("/")
                for k in range(1, len(parts)):
                    d = "/".join(parts[:k])
                    if d not in seen_dirs:
                        seen_dirs.add(d)
                        info = tarfile.TarInfo((prefix + "/" + d) if prefix else d)
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(info)
                full = os.path.join(src_dir, rel)
                info = tarfile.TarInfo((prefix + "/" + rel) if prefix else rel)
                info.size, info.mode = os.path.getsize(full), 0o644
                with open(full, "rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


def write_parts(data, out_dir, prefix):
    """Write data as prefix.part-aa, -ab, ... (each <= recipe.PART_BYTES); remove stale parts."""
    for f in os.listdir(out_dir):
        if f.startswith(prefix + ".part-"):
            os.remove(os.path.join(out_dir, f))
    parts = recipe.split_bytes(data)
    names = recipe.part_names(prefix, len(parts))
    for name, chunk in zip(names, parts):
        tmp = os.path.join(out_dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(out_dir, name))
    return names


# ---------------------------------------------------------------------------------------------
# References


def load_saved(kind, model_dir):
    """The saved checkpoint, reloaded from disk in float32, eager attention and eager experts."""
    import transformers
    cls = transformers.Qwen3MoeForCausalLM if kind == "moe" else transformers.Qwen3ForCausalLM
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    if kind == "moe":
        kw["experts_implementation"] = "eager"
    try:
        m = cls.from_pretrained(model_dir, **kw)
    except TypeError:
        kw.pop("experts_implementation", None)
        try:
            m = cls.from_pretrained(model_dir, **kw)
        except TypeError:
            kw["torch_dtype"] = kw.pop("dtype")
            m = cls.from_pretrained(model_dir, **kw)
    if kind == "moe" and hasattr(m, "set_experts_implementation"):
        try:
            m.set_experts_implementation("eager")
        except Exception:
            pass
    m.eval()
    for p in m.parameters():
        if p.dtype != torch.float32:
            raise RuntimeError("reloaded parameter in %s, want float32" % p.dtype)
    return m


@torch.no_grad()
def window_nll(model, windows, device):
    """Per-window NLL sums (float64 accumulation of float32 log-probs) and counts."""
    out = []
    for w in windows:
        ids = torch.tensor([w["ids"]], dtype=torch.int64, device=device)
        logits = forward_logits(model, ids)[0].float()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = ids[0, 1:]
        nll = -lp.gather(1, tgt[:, None])[:, 0].double().sum()
        out.append({"nll_sum": float(nll), "count": int(tgt.numel())})
    return out


@torch.no_grad()
def greedy(model, tok, prompt, eos_ids, pad_id, new_tokens):
    """transformers generate() with do_sample=False, and a check by full recomputation (no KV
    cache) that records the top-1/top-2 logit margin of every step."""
    if "messages" in prompt:
        text = recipe.render_chatml(prompt["messages"], add_generation_prompt=True)
    else:
        text = prompt["text"]
    ids = tok.encode(text, add_special_tokens=False).ids
    inp = torch.tensor([ids], dtype=torch.int64)
    from transformers import GenerationConfig
    gc = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=new_tokens, eos_token_id=eos_ids,
                          pad_token_id=pad_id)
    out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), generation_config=gc)
    new = out[0, len(ids):].tolist()
    seq = list(ids)
    margins, recompute = [], []
    for _ in range(len(new)):
        logits = forward_logits(model, torch.tensor([seq], dtype=torch.int64))[0, -1].float()
        top2 = torch.topk(logits, 2)
        margins.append(round(float(top2.values[0] - top2.values[1]), 6))
        nxt = int(top2.indices[0])
        recompute.append(nxt)
        seq.append(nxt)
        if nxt in eos_ids:
            break
    rec = {"name": prompt["name"], "prompt": recipe.prompt_label(prompt), "prompt_text": text,
           "prompt_ids": ids, "output_ids": new,
           "output_text": tok.decode(new, skip_special_tokens=False),
           "max_new_tokens": new_tokens, "stopped_on_eos": bool(new) and new[-1] in eos_ids,
           "recompute_agrees": recompute == new, "step_margins": margins,
           "min_margin": min(margins) if margins else None}
    if "messages" in prompt:
        rec["messages"] = prompt["messages"]
    return rec


def speed_probe(hp, device, steps, experts_impl):
    """Time `steps` training steps of the full-size MoE and draft on random tokens (batch and
    sequence length of the recipe) and one CPU float32 forward of a reference window: what a
    budget needs to know before a full run. Logs and returns the numbers."""
    out = {}
    vocab = recipe.VOCAB_SIZE
    bs, seq = hp["batch_size"], hp["seq_len"]
    for kind in ("moe", "draft"):
        cfg = (recipe.moe_config if kind == "moe" else recipe.draft_config)(vocab)
        seed_all(hp["seed"])
        model, impl = new_model(kind, cfg, device, "eager" if experts_impl == "dense" else experts_impl)
        if kind == "moe" and experts_impl == "dense":
            ok, impl = use_dense_experts(model, cfg, device)
            log("probe: %s" % impl)
        monitor = RouterMonitor(model, cfg["num_experts"], cfg["num_experts_per_tok"]) if kind == "moe" else None
        if monitor is not None:
            monitor.enabled = True
        opt = make_optimizer(model, 1e-3, hp, device)
        x = torch.randint(0, vocab, (bs, seq + 1), device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = None
        warm = 3
        for step in range(steps + warm):
            if step == warm:
                sync(device)
                t0 = time.time()
            with autocast(device):
                logits = forward_logits(model, x[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            if monitor is not None:
                aux, z = monitor.losses()
                loss = loss + hp["aux_loss_coef"] * aux + hp["z_loss_coef"] * z
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(device)
        dt = time.time() - t0
        tps = steps * bs * seq / dt
        out[kind] = {"params": param_count(model), "tokens_per_s": round(tps), "ms_per_step": round(1000 * dt / steps, 1),
                     "experts": impl, "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                     if device.type == "cuda" else None}
        log("probe: %s %d parameters: %s tok/s, %.1f ms/step (batch %d x %d), peak %s GiB" % (
            kind, out[kind]["params"], recipe.human_count(tps), 1000 * dt / steps, bs, seq,
            out[kind]["peak_gpu_memory_gib"]))
        if monitor is not None:
            monitor.remove()
        del model, opt, monitor
        if device.type == "cuda":
            torch.cuda.empty_cache()
    # The reference's cost: one window of 512 tokens, float32 on the CPU, eager experts.
    cfg = recipe.moe_config(vocab)
    m, _ = new_model("moe", cfg, torch.device("cpu"), "eager")
    m.eval()
    ids = torch.randint(0, vocab, (1, recipe.EVAL_WINDOW))
    torch.set_num_threads(max(1, min(16, os.cpu_count() or 1)))
    with torch.no_grad():
        forward_logits(m, ids[:, :16])
        t = time.time()
        forward_logits(m, ids)
        out["cpu_window_s"] = round(time.time() - t, 2)
    log("probe: one %d-token window on the CPU in float32: %.2fs" % (recipe.EVAL_WINDOW, out["cpu_window_s"]))
    return out


# ---------------------------------------------------------------------------------------------
# Main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help=".device/corpus (prepare_corpus.sh)")
    ap.add_argument("--out", required=True, help="OUTDIR: at most 8 files are written here")
    ap.add_argument("--work", required=True, help="scratch folder (model files before packing)")
    ap.add_argument("--deadline-s", type=float, default=500, help="train.py wall-clock budget")
    ap.add_argument("--moe-budget-s", type=float, default=330)
    ap.add_argument("--draft-budget-s", type=float, default=80)
    ap.add_argument("--moe-epochs", default=None, help="comma list, default %s" % recipe.TRAIN_DEFAULTS["moe_epochs"])
    ap.add_argument("--draft-epochs", default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--experts-impl", default="dense",
                    help="experts computation for training: dense (masked dense matmuls, checked against "
                         "eager at start-up, falls back to eager) or a transformers backend name (eager, ...)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny everything, to check the code paths")
    ap.add_argument("--probe", type=int, default=0, metavar="STEPS",
                    help="only time STEPS training steps of the full-size models (random tokens) and a CPU "
                         "reference window, write OUT/probe.json, and exit")
    args = ap.parse_args()

    deadline = T0 + args.deadline_s
    hp = dict(recipe.TRAIN_DEFAULTS)
    if args.moe_epochs:
        hp["moe_epochs"] = [float(x) for x in args.moe_epochs.split(",")]
    if args.draft_epochs:
        hp["draft_epochs"] = [float(x) for x in args.draft_epochs.split(",")]
    if args.batch_size:
        hp["batch_size"] = args.batch_size
    if args.seed is not None:
        hp["seed"] = args.seed
    vocab = recipe.VOCAB_SIZE
    if args.smoke:
        vocab = 1024
        hp.update(seq_len=128, batch_size=8, moe_epochs=[0.5, 1], draft_epochs=[0.5], warmup_steps=5,
                  evals_per_epoch=2, patience=2)
        args.moe_budget_s = min(args.moe_budget_s, 25)
        args.draft_budget_s = min(args.draft_budget_s, 10)

    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    model_dir = os.path.join(args.work, "pkg", recipe.PACKAGE_DIR)
    ref_dir = os.path.join(args.work, "pkg", "reference")
    for d in (model_dir, ref_dir):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
    draft_dir = os.path.join(model_dir, "draft")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        log("WARNING: no CUDA device: the CPU path is for quick checks (--smoke) only")
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    seed_all(hp["seed"])

    if args.probe:
        res = speed_probe(hp, device, args.probe, args.experts_impl)
        res["versions"] = versions()
        recipe.write_json_atomic(os.path.join(args.out, "probe.json"), res)
        return

    summary = {"format": "mach-default-train-summary-v1", "smoke": args.smoke, "versions": versions(),
               "args": vars(args), "hyperparameters": {k: v for k, v in hp.items()}}
    for k, v in summary["versions"].items():
        log("version %-13s %s" % (k, v))
    st = Stages(os.path.join(args.out, "summary.json"), summary)
    R = {}  # results shared between stages

    manifest = json.load(open(os.path.join(args.corpus, "manifest.json")))
    summary["corpus"] = {k: manifest[k] for k in ("package", "package_version", "deb_sha256", "licence",
                                                  "split_rule", "rules_version")}
    summary["corpus"]["splits"] = {k: {kk: vv for kk, vv in v.items() if kk != "doc_ids"}
                                   for k, v in manifest["splits"].items()}

    # 1. tokenizer ------------------------------------------------------------------------------
    def stage_tokenizer():
        train = load_split(args.corpus, "train")
        val = load_split(args.corpus, "val")
        test = load_split(args.corpus, "test")
        if args.smoke:
            train, val, test = smoke_subset(train, 40), smoke_subset(val, 4), smoke_subset(test, 4)
        R["records"] = {"train": train, "val": val, "test": test}
        tok, size, bpe, problems = train_tokenizer(train, vocab, model_dir)
        R["tok"], R["vocab"] = tok, size
        if size != vocab:
            raise RuntimeError("tokenizer has %d entries, want %d (corpus too small?)" % (size, vocab))
        chk = check_tokenizer_with_transformers(model_dir, tok)
        summary["tokenizer"] = {"vocab_size": size, "bpe_entries": bpe, "special_tokens": recipe.special_ids(size),
                                "self_check_problems": problems,
                                "tokenizer_json_bytes": os.path.getsize(os.path.join(model_dir, "tokenizer.json")),
                                "transformers_check": chk}
        if chk.get("error") or chk.get("encode_mismatches") or not chk.get("chat_template_matches"):
            log("WARNING: transformers' view of the tokenizer differs: %s" % json.dumps(chk)[:800])
        return {"vocab": size}

    st.run("tokenizer", stage_tokenizer)

    # 2. encode ---------------------------------------------------------------------------------
    def stage_encode():
        tok, recs = R["tok"], R["records"]
        eot = recipe.special_ids(R["vocab"])["<|endoftext|>"]
        info = {}
        ids = {}
        for name in ("train", "val", "test"):
            ids[name] = encode_records(tok, recs[name])
            n_tok = sum(len(x) for x in ids[name])
            n_bytes = sum(len(r["text"].encode("utf-8")) for r in recs[name])
            info[name] = {"records": len(recs[name]), "tokens": n_tok, "bytes": n_bytes,
                          "bytes_per_token": round(n_bytes / max(1, n_tok), 3)}
            log("encode %-5s %6d records  %9d tokens  %.2f bytes/token" % (
                name, len(recs[name]), n_tok, n_bytes / max(1, n_tok)))
        R["train_stream"] = make_stream(ids["train"], eot)
        R["val_windows"] = fixed_windows(make_stream(ids["val"], eot), hp["seq_len"])
        test_docs = [(r["id"], x) for r, x in zip(recs["test"], ids["test"]) if r["kind"] == "doc"]
        R["test_docs"] = test_docs
        R["test_doc_text"] = {r["id"]: r["text"] for r in recs["test"] if r["kind"] == "doc"}
        info["train_stream_tokens"] = int(R["train_stream"].numel())
        info["val_windows"] = int(R["val_windows"].shape[0])
        summary["data"] = info
        return info

    st.run("encode", stage_encode, needs=("tokenizer",))

    def partial_pack(what):
        # A timeout still leaves the best model so far in OUTDIR (replaced by the final package).
        try:
            data = pack_dir(os.path.join(args.work, "pkg"), "partial", compresslevel=1)
            write_parts(data, args.out, "partial-" + recipe.TARBALL)
            log("packed partial checkpoint (%s, %s)" % (what, recipe.human_bytes(len(data))))
        except Exception as e:
            log("warning: partial pack failed: %s" % e)

    def run_sweep(kind, budget):
        cfg = (recipe.moe_config if kind == "moe" else recipe.draft_config)(R["vocab"], smoke=args.smoke)
        R[kind + "_cfg"] = cfg
        out_dir = model_dir if kind == "moe" else draft_dir

        def save(state, val):
            t = time.time()
            R[kind + "_state"] = state  # float32, on the CPU: what the MoE's 8-bit weights are made from
            files = save_checkpoint(kind, cfg, state, out_dir, R["vocab"])
            log("%s: saved checkpoint with val ppl %.3f (%s, %.1fs)" % (kind, math.exp(val), ", ".join(files),
                                                                        time.time() - t))
            partial_pack("%s val ppl %.3f" % (kind, math.exp(val)))

        epochs = hp["moe_epochs"] if kind == "moe" else hp["draft_epochs"]
        lr = hp["moe_lr"] if kind == "moe" else hp["draft_lr"]
        log("%s: budget %.0fs, runs of %s epochs" % (kind, budget, epochs))
        best, runs = sweep(kind, cfg, R["train_stream"], R["val_windows"], epochs, lr, hp, device, budget,
                           args.experts_impl, save)
        est = recipe.count_params(cfg, kind == "moe")
        if best["params"] != est["total"]:
            log("WARNING: %s model has %d parameters, recipe.count_params says %d" % (kind, best["params"], est["total"]))
        summary[kind] = {
            "config": cfg, "params_recipe": est, "params_model": best["params"],
            "runs": [{k: v for k, v in r.items() if k != "best_state"} for r in runs],
            "chosen_run": best["name"], "best_val_ppl": best["best_val_ppl"], "best_epoch": best["best_epoch"],
            "tokens_seen_all_runs": sum(r.get("tokens", 0) for r in runs),
            "tokens_seen_chosen_run_to_best": (best["curve"][[c["step"] for c in best["curve"]].index(best["best_step"])]["tokens"]
                                               if best["curve"] else None),
            "train_seconds_all_runs": round(sum(r.get("seconds", 0) for r in runs), 1),
            "files": sorted(os.listdir(out_dir)),
            "tensors": safetensors_index(os.path.join(out_dir, "model.safetensors")),
        }
        best["best_state"] = None
        return {"val_ppl": best["best_val_ppl"]}

    # 3. moe ------------------------------------------------------------------------------------
    def stage_moe():
        reserve = min(args.draft_budget_s, 110) + 60
        return run_sweep("moe", max(10.0, min(args.moe_budget_s, deadline - time.time() - reserve)))

    st.run("moe", stage_moe, needs=("encode",))

    # 4. draft ----------------------------------------------------------------------------------
    def stage_draft():
        return run_sweep("draft", max(5.0, min(args.draft_budget_s, deadline - time.time() - 60)))

    st.run("draft", stage_draft, needs=("encode",))

    # 5. quantize -------------------------------------------------------------------------------
    def stage_quantize():
        import quantize as Q
        cfg = R["moe_cfg"]
        bf16_dir = os.path.join(args.work, "moe-bf16")
        deq_dir = os.path.join(args.work, "moe-dequantized-f32")
        for d in (bf16_dir, deq_dir):
            if os.path.isdir(d):
                shutil.rmtree(d)
            os.makedirs(d)
        # The bf16 checkpoint of the moe stage leaves the package (kept for the comparison).
        for f in ("model.safetensors", "config.json", "generation_config.json"):
            shutil.copy(os.path.join(model_dir, f), os.path.join(bf16_dir, f))
        hf_cfg = json.load(open(os.path.join(bf16_dir, "config.json")))
        t = time.time()
        state = R["moe_state"]
        tensors, deq, qcfg = Q.quantize_state(state, tied=cfg["tie_word_embeddings"])
        Q.write(model_dir, tensors, hf_cfg, qcfg)
        t_q = time.time() - t
        # Read the file back with an independent reader; it must give the quantizer's values.
        back = Q.read_dequantized(model_dir)
        cmp = Q.compare(deq, back)
        if cmp["only_first"] or cmp["only_second"] or cmp["differ"]:
            raise RuntimeError("the written 8-bit file does not dequantize to the quantizer's values: %s" %
                               json.dumps(cmp)[:600])
        # transformers reads no MLX files: the reference loads this float32 checkpoint of exactly
        # the dequantized values (save_pretrained, reloaded from disk in the reference stage).
        save_checkpoint("moe", cfg, back, deq_dir, R["vocab"], dtype=torch.float32)
        R["moe_bf16_dir"], R["moe_deq_dir"] = bf16_dir, deq_dir
        size = os.path.getsize(os.path.join(model_dir, "model.safetensors"))
        info = {"format": Q.FORMAT, "bits": Q.BITS, "group_size": Q.GROUP_SIZE,
                "quantization": qcfg, "source": "float32 weights of the chosen checkpoint",
                "readback_equal": True, "seconds": round(t_q, 1),
                "model_safetensors_bytes": size,
                "bf16_model_safetensors_bytes": os.path.getsize(os.path.join(bf16_dir, "model.safetensors")),
                "storage": Q.storage_summary(tensors),
                "relative_error": Q.errors({k: v for k, v in state.items() if k != "lm_head.weight"}, deq),
                "tensors": Q.index(os.path.join(model_dir, "model.safetensors"))}
        summary["quantization"] = info
        log("quantize: %s, %d tensors, %s (bf16 was %s); relative errors %s; read back equal" % (
            Q.FORMAT, len(tensors), recipe.human_bytes(size), recipe.human_bytes(info["bf16_model_safetensors_bytes"]),
            info["relative_error"]))
        return {"bytes": size}

    st.run("quantize", stage_quantize, needs=("moe",))

    # 6. reference ------------------------------------------------------------------------------
    def stage_reference():
        # Exact float32 from here on.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            torch.set_float32_matmul_precision("highest")
        except Exception:
            pass
        torch.set_num_threads(max(1, min(16, os.cpu_count() or 1)))
        tok = R["tok"]
        sp = recipe.special_ids(R["vocab"])
        eos_ids = [sp["<|im_end|>"], sp["<|endoftext|>"]]
        n_ref = 4 if args.smoke else recipe.REF_WINDOWS
        all_windows = recipe.eval_windows(R["test_docs"], recipe.EVAL_WINDOW)
        ref_windows = all_windows[:n_ref]
        cpu = torch.device("cpu")
        res = {}

        m = load_saved("moe", R["moe_deq_dir"])
        mon = RouterMonitor(m, R["moe_cfg"]["num_experts"], R["moe_cfg"]["num_experts_per_tok"])
        mon.start_counting()
        t = time.time()
        scored = window_nll(m, ref_windows, cpu)
        mon.counting = False
        usage = mon.usage()
        mon.remove()
        nll = sum(s["nll_sum"] for s in scored)
        cnt = sum(s["count"] for s in scored)
        ppl = recipe.perplexity(nll, cnt)
        log("reference: moe slice ppl %.4f over %d tokens (%d windows, cpu fp32, %.1fs)" % (
            ppl, cnt, len(ref_windows), time.time() - t))
        greedy_recs = []
        new_tokens = 8 if args.smoke else recipe.GREEDY_NEW_TOKENS
        for kind in recipe.GREEDY_PROMPTS:
            tried, chosen, best = [], None, None
            for cand in kind["candidates"]:
                g = greedy(m, tok, dict(cand, name=kind["name"]), eos_ids, sp["<|endoftext|>"], new_tokens)
                mm = g["min_margin"] if g["min_margin"] is not None else float("inf")
                tried.append({"prompt": recipe.prompt_label(cand), "min_margin": g["min_margin"],
                              "recompute_agrees": g["recompute_agrees"]})
                log("greedy %-5s %s: %d new, min margin %s, recompute %s: %r" % (
                    g["name"], recipe.prompt_label(cand), len(g["output_ids"]), g["min_margin"],
                    "agrees" if g["recompute_agrees"] else "DIFFERS", g["output_text"][:120]))
                if best is None or mm > best[0]:
                    best = (mm, g)
                if mm >= recipe.GREEDY_MIN_MARGIN and g["recompute_agrees"]:
                    chosen = g
                    break
            if chosen is None:
                chosen = best[1]
            chosen["margin_threshold"] = recipe.GREEDY_MIN_MARGIN
            chosen["margin_ok"] = (chosen["min_margin"] is None or chosen["min_margin"] >= recipe.GREEDY_MIN_MARGIN)
            chosen["candidates_tried"] = tried
            greedy_recs.append(chosen)
        # The whole test split on the GPU in float32 (TF32 off), and the slice again as a cross-check.
        full = None
        if device.type == "cuda":
            mg = m.to(device)
            t = time.time()
            sc_all = window_nll(mg, all_windows, device)
            sc_gpu = sc_all[:len(ref_windows)]
            n_all = sum(s["nll_sum"] for s in sc_all)
            c_all = sum(s["count"] for s in sc_all)
            gpu_slice = recipe.perplexity(sum(s["nll_sum"] for s in sc_gpu), sum(s["count"] for s in sc_gpu))
            full = {"windows": len(all_windows), "tokens_scored": c_all, "ppl": recipe.perplexity(n_all, c_all),
                    "device": "cuda float32", "slice_ppl_cuda": gpu_slice,
                    "slice_ppl_rel_diff_cuda_vs_cpu": abs(gpu_slice - ppl) / ppl}
            log("reference: moe test-split ppl %.4f over %d tokens (cuda fp32, %.1fs); slice cuda %.5f vs cpu %.5f" % (
                full["ppl"], c_all, time.time() - t, gpu_slice, ppl))
            del mg
            # The same on the bf16 weights before quantization: what 8 bits cost.
            mb = load_saved("moe", R["moe_bf16_dir"]).to(device)
            sb = window_nll(mb, all_windows, device)
            full["bf16_before_quantization"] = {
                "ppl": recipe.perplexity(sum(s["nll_sum"] for s in sb), sum(s["count"] for s in sb)),
                "slice_ppl": recipe.perplexity(sum(s["nll_sum"] for s in sb[:len(ref_windows)]),
                                               sum(s["count"] for s in sb[:len(ref_windows)]))}
            log("reference: bf16 weights before quantization: test-split ppl %.4f, slice %.4f (cuda fp32)" % (
                full["bf16_before_quantization"]["ppl"], full["bf16_before_quantization"]["slice_ppl"]))
            del mb
        del m

        draft_slice = None
        if os.path.exists(os.path.join(draft_dir, "model.safetensors")):
            d = load_saved("draft", draft_dir)
            sd = window_nll(d, ref_windows, cpu)
            draft_slice = {"ppl": recipe.perplexity(sum(s["nll_sum"] for s in sd), sum(s["count"] for s in sd)),
                           "windows": [{"nll_sum": s["nll_sum"], "count": s["count"]} for s in sd]}
            if device.type == "cuda":
                dg = d.to(device)
                sa = window_nll(dg, all_windows, device)
                draft_slice["test_split_ppl_cuda"] = recipe.perplexity(sum(s["nll_sum"] for s in sa),
                                                                       sum(s["count"] for s in sa))
                del dg
            log("reference: draft slice ppl %.4f" % draft_slice["ppl"])
            del d

        docs_used = []
        for w in ref_windows:
            if w["doc"] not in docs_used:
                docs_used.append(w["doc"])
        ref = {
            "format": "mach-default-reference-v1",
            "smoke": args.smoke,
            "model": {"dir": "models/default", "file": "model.safetensors",
                      "sha256": recipe.sha256_file(os.path.join(model_dir, "model.safetensors")),
                      "tokenizer_sha256": recipe.sha256_file(os.path.join(model_dir, "tokenizer.json")),
                      "stored_dtype": summary["quantization"]["format"] + " (norms bfloat16)",
                      "quantization": {k: summary["quantization"]["quantization"][k]
                                       for k in ("bits", "group_size", "mode")},
                      "weights": ("the stored 8-bit codes dequantized to float32 (scale * q + bias, from the "
                                  "bf16 scales and biases), read back from model.safetensors and loaded into "
                                  "Qwen3MoeForCausalLM"),
                      "compute_dtype": "float32", "device": "cpu",
                      "attn_implementation": "eager", "experts_implementation": "eager"},
            "versions": summary["versions"],
            "perplexity": {
                "definition": recipe.perplexity_definition(len(ref_windows)),
                "window": recipe.EVAL_WINDOW, "num_windows": len(ref_windows),
                "total_nll": nll, "total_count": cnt, "ppl": ppl,
                "windows": [dict(w, **s) for w, s in zip(ref_windows, scored)],
                "documents": [{"id": d, "text": R["test_doc_text"][d],
                               "num_tokens": len(dict(R["test_docs"])[d])} for d in docs_used],
            },
            "greedy": greedy_recs,
            "greedy_definition": ("transformers generate(do_sample=False, num_beams=1, max_new_tokens=%d, "
                                  "eos_token_id=%s) on the prompt ids (no special tokens added; the chat "
                                  "prompt is CHAT_TEMPLATE rendered with add_generation_prompt). "
                                  "output_ids excludes the prompt and includes the eos token when it "
                                  "stopped on one. step_margins: top-1 minus top-2 logit at each step "
                                  "(recomputed without KV cache). Per kind, the first candidate prompt "
                                  "whose every step has a margin >= %g was kept (candidates_tried)."
                                  % (new_tokens, eos_ids, recipe.GREEDY_MIN_MARGIN)),
            "expert_usage_on_slice": usage,
            "draft": {"dir": "models/default/draft", "slice": draft_slice},
        }
        recipe.write_json_atomic(os.path.join(ref_dir, "reference.json"), ref, compact_lists=True)
        res.update(slice_ppl=ppl, slice_tokens=cnt, test=full, greedy=greedy_recs, usage=usage,
                   draft=draft_slice)
        R["reference"] = res
        summary["reference"] = {"slice_ppl_cpu_fp32": ppl, "slice_tokens": cnt, "slice_windows": len(ref_windows),
                                "test_split": full, "draft": {k: v for k, v in (draft_slice or {}).items()
                                                              if k != "windows"},
                                "greedy": [{k: g[k] for k in ("name", "prompt", "output_text", "stopped_on_eos",
                                                              "recompute_agrees", "min_margin", "margin_ok",
                                                              "candidates_tried")}
                                           for g in greedy_recs],
                                "expert_usage": [{k: u.get(k) for k in ("layer", "min_share", "max_share",
                                                                        "unused_experts", "normalized_entropy")}
                                                 for u in usage]}
        bad = [g["name"] for g in greedy_recs if not g["recompute_agrees"] or not g["margin_ok"]]
        if bad:
            return dict(res, _status="ok", _detail="greedy near-tie or recompute difference for %s" % bad)
        return res

    st.run("reference", stage_reference, needs=("quantize",))

    # 7. card -----------------------------------------------------------------------------------
    def stage_card():
        import card
        shutil.copy(os.path.join(args.corpus, "DATA_LICENSE.txt"), os.path.join(model_dir, "DATA_LICENSE.txt"))
        st.flush()  # stages and elapsed time so far, for the card
        text, missing = card.render(summary, model_dir)
        with open(os.path.join(model_dir, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
            f.write(text)
        summary["model_card_missing"] = missing
        if missing:
            return {"_status": "ok", "_detail": "n/a for: " + ", ".join(missing)}
        return {"missing": missing}

    st.run("card", stage_card, needs=("quantize",))

    # 8. pack -----------------------------------------------------------------------------------
    def stage_pack():
        files = recipe.tree_files(model_dir)
        sizes = {f: os.path.getsize(os.path.join(model_dir, f)) for f in files}
        total = sum(sizes.values())
        summary["package"] = {"files": sizes, "model_dir_bytes": total,
                              "budget_bytes": recipe.SIZE_BUDGET_BYTES,
                              "within_budget": total <= recipe.SIZE_BUDGET_BYTES,
                              "sha256": {f: recipe.sha256_file(os.path.join(model_dir, f)) for f in files}}
        data = pack_dir(os.path.join(args.work, "pkg"), "")
        names = write_parts(data, args.out, recipe.TARBALL)
        for f in os.listdir(args.out):
            if f.startswith("partial-"):
                os.remove(os.path.join(args.out, f))
        shutil.copy(os.path.join(model_dir, "MODEL_CARD.md"), os.path.join(args.out, "MODEL_CARD.md"))
        import hashlib
        sums = ["%s  %s" % (hashlib.sha256(data).hexdigest(), recipe.TARBALL)]
        sums += ["%s  %s" % (recipe.sha256_file(os.path.join(args.out, n)), n) for n in names]
        sums += ["%s  default/%s" % (summary["package"]["sha256"][f], f) for f in files]
        with open(os.path.join(args.out, "SHA256SUMS"), "w") as f:
            f.write("\n".join(sums) + "\n")
        summary["package"].update(tarball_bytes=len(data), parts=names)
        log("package: %d files, %s under default/ (budget %s), tarball %s in %d part(s)" % (
            len(files), recipe.human_bytes(total), recipe.human_bytes(recipe.SIZE_BUDGET_BYTES),
            recipe.human_bytes(len(data)), len(names)))
        if total > recipe.SIZE_BUDGET_BYTES:
            return {"_status": "failed", "_detail": "default/ is %d bytes, over the %d budget" % (
                total, recipe.SIZE_BUDGET_BYTES)}
        return {"bytes": total}

    st.run("pack", stage_pack, needs=("quantize",))

    # Final summary -------------------------------------------------------------------------------
    st.flush()
    print()
    print(recipe.text_table(["stage", "status", "seconds", "detail"],
                            [[r["stage"], r["status"], r["seconds"], r["detail"][:90]] for r in st.rows]))
    print()
    rows = []
    m = summary.get("moe", {})
    if m:
        rows.append(["moe parameters (total / active)", "%s / %s" % (
            recipe.human_count(m["params_recipe"]["total"]), recipe.human_count(m["params_recipe"]["active"]))])
        for r in m["runs"]:
            if r.get("skipped"):
                rows.append(["moe run %s epochs" % r["epochs_planned"], "skipped: " + r["skipped"]])
            else:
                rows.append(["moe %s (%s epochs planned)" % (r["name"], r["epochs_planned"]),
                             "best val ppl %.3f at epoch %s; %s; %s tok/s" % (
                                 r["best_val_ppl"] or float("nan"), r["best_epoch"], r["stop"],
                                 recipe.human_count(r["tokens_per_s"]))])
    d = summary.get("draft", {})
    if d:
        rows.append(["draft parameters", recipe.human_count(d["params_recipe"]["total"])])
    ref = summary.get("reference", {})
    if ref:
        rows.append(["moe slice ppl (cpu fp32)", "%.4f over %d tokens" % (ref["slice_ppl_cpu_fp32"], ref["slice_tokens"])])
        if ref.get("test_split"):
            rows.append(["moe test-split ppl (cuda fp32)", "%.4f over %d tokens" % (
                ref["test_split"]["ppl"], ref["test_split"]["tokens_scored"])])
        if ref.get("draft"):
            rows.append(["draft slice ppl", "%.4f" % ref["draft"].get("ppl", float("nan"))])
        for g in ref["greedy"]:
            rows.append(["greedy " + g["name"], repr(g["output_text"][:70])])
    p = summary.get("package", {})
    if p:
        rows.append(["default/ size", "%s (budget %s)" % (recipe.human_bytes(p["model_dir_bytes"]),
                                                         recipe.human_bytes(p["budget_bytes"]))])
    rows.append(["wall time", "%.0fs" % (time.time() - T0)])
    print(recipe.text_table(["what", "value"], rows))
    sys.exit(0 if st.ok() else 1)


if __name__ == "__main__":
    main()
