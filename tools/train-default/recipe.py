"""The recipe of mach's default model, as plain data and standard-library helpers.

Everything here is importable without torch, transformers or tokenizers, so the shapes, the size
budget, the evaluation windows, the package layout and the model card can be checked on any
machine (test_recipe.py). train.py does the GPU work with these values.
"""

import hashlib
import json
import math
import os
import re
import string

# ---------------------------------------------------------------------------------------------
# Tokenizer

# Regular BPE vocabulary (256 byte symbols + merges) plus these added special tokens, appended
# after it in this order, so that vocab_size = BPE_VOCAB + len(SPECIAL_TOKENS).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
VOCAB_SIZE = 8192
BPE_VOCAB = VOCAB_SIZE - len(SPECIAL_TOKENS)

# The pre-tokenizer split of Qwen2/Qwen3 (GPT-4 style, but single digits).
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# ChatML, as Qwen writes it, without a default system turn and without thinking or tools.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def render_chatml(messages, add_generation_prompt=True):
    """What CHAT_TEMPLATE renders, in Python (used to cross-check the Jinja rendering)."""
    out = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in messages)
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


def special_ids(vocab_size=VOCAB_SIZE):
    base = vocab_size - len(SPECIAL_TOKENS)
    return {tok: base + i for i, tok in enumerate(SPECIAL_TOKENS)}


def tokenizer_json_fixups(d):
    """Put the pipeline parts of a trained tokenizer.json into exactly the form of Qwen3's
    tokenizer.json (NFC, Split(Isolated) + ByteLevel without regex, ByteLevel post-processor
    and decoder without prefix space or offset trimming). Returns the edited dict."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    d["normalizer"] = {"type": "NFC"}
    d["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
            dict(byte_level),
        ],
    }
    d["post_processor"] = dict(byte_level)
    d["decoder"] = dict(byte_level)
    return d


def tokenizer_config(vocab_size=VOCAB_SIZE, model_max_length=1024):
    """tokenizer_config.json in the form Qwen3 ships it: no BOS, eos <|im_end|>, pad
    <|endoftext|>, the ChatML template inline."""
    ids = special_ids(vocab_size)
    decoder = {}
    for tok in SPECIAL_TOKENS:
        decoder[str(ids[tok])] = {"content": tok, "lstrip": False, "normalized": False,
                                  "rstrip": False, "single_word": False, "special": True}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def generation_config(vocab_size=VOCAB_SIZE):
    """Sampling defaults for mach-generate / mach-serve; references pass do_sample=False."""
    ids = special_ids(vocab_size)
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "do_sample": True,
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
        "temperature": 0.7,
        "top_k": 40,
        "top_p": 0.9,
    }


# ---------------------------------------------------------------------------------------------
# Models

MAX_POSITIONS = 1024


def moe_config(vocab_size=VOCAB_SIZE, smoke=False):
    """Qwen3MoeConfig keyword arguments of the default model: 13.2 M parameters (5.3 M active),
    8 layers of 24 experts (width 64, top-4). Shipped as MLX affine 8-bit (group 64), so that the
    MoE, the bf16 draft and the tokenizer fit the 20 MB budget (see size_estimate)."""
    ids = special_ids(vocab_size)
    cfg = {
        "vocab_size": vocab_size,
        "hidden_size": 256,
        "intermediate_size": 1024,  # dense MLP width; unused: every layer is MoE
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "num_experts": 24,
        "num_experts_per_tok": 4,
        "moe_intermediate_size": 64,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.01,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    if smoke:  # every input dimension a multiple of QUANT_GROUP_SIZE, as the 8-bit format needs
        cfg.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   head_dim=32, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                   intermediate_size=128)
    return cfg


def draft_config(vocab_size=VOCAB_SIZE, smoke=False):
    """Qwen3Config (dense) keyword arguments of the draft model for speculative decoding."""
    ids = special_ids(vocab_size)
    cfg = {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    if smoke:
        cfg.update(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                   intermediate_size=128)
    return cfg


def count_params(cfg, moe):
    """Parameter counts of a Qwen3 (dense) or Qwen3-MoE decoder with tied embeddings, from its
    config: {"total", "active" (per token), "embedding", "per_layer", "experts_per_layer"}."""
    h = cfg["hidden_size"]
    hd = cfg["head_dim"]
    nh = cfg["num_attention_heads"]
    nkv = cfg["num_key_value_heads"]
    L = cfg["num_hidden_layers"]
    emb = cfg["vocab_size"] * h
    attn = h * nh * hd + 2 * h * nkv * hd + nh * hd * h + 2 * hd  # q,k,v,o + q_norm,k_norm
    norms = 2 * h
    if moe:
        e, k, i = cfg["num_experts"], cfg["num_experts_per_tok"], cfg["moe_intermediate_size"]
        experts = e * 3 * h * i
        router = e * h
        layer = attn + norms + experts + router
        active_layer = attn + norms + k * 3 * h * i + router
    else:
        i = cfg["intermediate_size"]
        experts = 0
        layer = attn + norms + 3 * h * i
        active_layer = layer
    total = emb + L * layer + h  # + final norm; lm_head tied to the embedding
    active = emb + L * active_layer + h
    return {"total": total, "active": active, "embedding": emb, "per_layer": layer,
            "experts_per_layer": experts}


SIZE_BUDGET_BYTES = 20_000_000  # everything under models/default/, draft included

# The MoE model's storage: MLX affine quantization as mlx-lm's convert writes it (every Linear
# and the embedding; routers at 8 bits group 64; norms bf16). The draft stays bf16.
QUANT_BITS = 8
QUANT_GROUP_SIZE = 64


def quantized_bytes_per_param(bits=QUANT_BITS, group=QUANT_GROUP_SIZE):
    """Codes plus a bf16 scale and a bf16 bias per group."""
    return bits / 8 + 4 / group


def size_estimate(vocab_size=VOCAB_SIZE, tokenizer_bytes=700_000, other_bytes=300_000):
    """Bytes the package will take: the MoE's matrices at 8 bits (+ scales and biases) and its
    norms in bf16, the draft in bf16, the tokenizer and the small files."""
    cfg = moe_config(vocab_size)
    moe = count_params(cfg, True)["total"]
    h, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    norms = L * (2 * h + 2 * cfg["head_dim"]) + h
    draft = count_params(draft_config(vocab_size), False)["total"]
    return int(quantized_bytes_per_param() * (moe - norms) + 2 * norms + 2 * draft
               + tokenizer_bytes + other_bytes)


# ---------------------------------------------------------------------------------------------
# Training hyper-parameters (train.py flags override)

TRAIN_DEFAULTS = {
    "seq_len": 1024,
    "batch_size": 32,
    "moe_lr": 3e-3,
    "draft_lr": 4e-3,
    "min_lr_frac": 0.1,
    "warmup_steps": 50,
    "weight_decay": 0.1,
    "betas": (0.9, 0.95),
    "grad_clip": 1.0,
    "aux_loss_coef": 0.01,   # switch-transformer load balancing, per layer mean
    "z_loss_coef": 1e-3,     # router z-loss, keeps router logits small
    "evals_per_epoch": 4,
    "patience": 6,           # evals without a new best before a run stops
    "moe_epochs": [5, 10, 15, 20],
    "draft_epochs": [12, 24, 48],
    "seed": 1234,
}

# ---------------------------------------------------------------------------------------------
# Reference outputs

EVAL_WINDOW = 512
REF_WINDOWS = 32
GREEDY_NEW_TOKENS = 64

# One prompt of each kind is recorded. For each kind the candidates are tried in order and the
# first whose greedy continuation has a top-1/top-2 logit margin of at least GREEDY_MIN_MARGIN at
# every step is kept (else the one with the largest smallest margin), so that a correct float32
# engine cannot flip a step through rounding alone.
GREEDY_MIN_MARGIN = 5e-3
GREEDY_PROMPTS = [
    {"name": "prose", "candidates": [
        {"text": "The Python standard library"},
        {"text": "The ``os`` module provides"},
        {"text": "Python is an easy to learn, powerful programming language."},
        {"text": "A list comprehension"},
    ]},
    {"name": "code", "candidates": [
        {"text": "def fib(n):\n"},
        {"text": ">>> import math\n>>> math."},
        {"text": "   for i in range(10):\n"},
        {"text": "class Point:\n"},
    ]},
    {"name": "chat", "candidates": [
        {"messages": [{"role": "user", "content": "What does the json module do?"}]},
        {"messages": [{"role": "user", "content": "What is the os.path module used for?"}]},
        {"messages": [{"role": "user", "content": 'What does "iterable" mean in Python?'}]},
        {"messages": [{"role": "user", "content": "How do I use itertools.chain()?"}]},
    ]},
]


def prompt_label(p):
    """A short human label of a prompt record ({"text"} or {"messages"})."""
    if "messages" in p:
        return "(ChatML) %r" % p["messages"][-1]["content"]
    return repr(p["text"])


def perplexity_definition(num_windows=REF_WINDOWS):
    return (
        "Documents of test.jsonl.gz with kind \"doc\", in file order (sorted by id). Each text is "
        "encoded with tokenizer.json without special tokens (nothing added). Its ids are cut into "
        "consecutive windows of %d tokens (stride %d, starting at 0; a shorter last window is kept "
        "if it has at least 2 tokens). Each window is scored as an independent sequence starting at "
        "position 0: nll = -sum over t=1..L-1 of log_softmax(logits[t-1])[ids[t]], in float32 from "
        "the stored weights dequantized to float32 (8-bit codes: scale * q + bias per group of 64, "
        "from the bf16 scales and biases; bf16 norms upcast); ppl = exp(sum nll / sum (L-1)). The "
        "reference slice is "
        "the first %d windows; their ids are listed, so no tokenizer is needed to reproduce it."
        % (EVAL_WINDOW, EVAL_WINDOW, num_windows))


PERPLEXITY_DEFINITION = perplexity_definition()


def eval_windows(doc_ids, window=EVAL_WINDOW, max_windows=None):
    """Cut each document's ids into windows as PERPLEXITY_DEFINITION says. doc_ids is a list of
    (doc id, [token ids]); returns a list of {"doc", "start", "ids"}."""
    out = []
    for doc, ids in doc_ids:
        for start in range(0, len(ids), window):
            w = ids[start:start + window]
            if len(w) < 2:
                continue
            out.append({"doc": doc, "start": start, "ids": list(w)})
            if max_windows is not None and len(out) >= max_windows:
                return out
    return out


def perplexity(nll_sum, count):
    return math.exp(nll_sum / count) if count else float("nan")


# ---------------------------------------------------------------------------------------------
# Schedule and planning

def lr_at(step, total_steps, peak, warmup, min_frac):
    """Linear warm-up, then cosine decay to min_frac * peak at total_steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return peak * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def plan_runs(epoch_list, seconds_per_epoch, budget_s, overhead_s=5.0):
    """The candidate epoch counts that fit into budget_s, in order, given a measured speed.
    A run that does not fit is dropped, but the first always stays (it will be cut by time)."""
    plan, used = [], 0.0
    for i, ep in enumerate(epoch_list):
        need = ep * seconds_per_epoch + overhead_s
        if i == 0 or used + need <= budget_s:
            plan.append(ep)
            used += need
    return plan


# ---------------------------------------------------------------------------------------------
# Package

PACKAGE_DIR = "default"
PART_BYTES = 15 * 1024 * 1024
TARBALL = "default-model.tar.gz"


def part_names(prefix, count):
    """split(1)-style suffixes: prefix.part-aa, prefix.part-ab, ..."""
    letters = string.ascii_lowercase
    names = []
    for i in range(count):
        if i >= 26 * 26:
            raise ValueError("too many parts")
        names.append("%s.part-%s%s" % (prefix, letters[i // 26], letters[i % 26]))
    return names


def split_bytes(data, part_bytes=PART_BYTES):
    return [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)] or [b""]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_files(root):
    """Relative paths of the files under root, sorted."""
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            out.append(os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"))
    return sorted(out)


def dumps_compact(obj, indent=2, level=0):
    """JSON like json.dumps(indent=2), except that a list holding no list or object is written on
    one line (token ids, margins, shares): reference.json stays small and still diffs by field."""
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = ["%s%s: %s" % (inner, json.dumps(str(k), ensure_ascii=False), dumps_compact(v, indent, level + 1))
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if not any(isinstance(x, (dict, list, tuple)) for x in obj):
            return json.dumps(list(obj), ensure_ascii=False, separators=(",", ":"))
        return "[\n" + ",\n".join(inner + dumps_compact(x, indent, level + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json_atomic(path, obj, indent=2, compact_lists=False):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        if compact_lists:
            f.write(dumps_compact(obj, indent))
        else:
            json.dump(obj, f, indent=indent, ensure_ascii=False, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Model card and tables

def fill_template(text, values):
    """Fill ${name} placeholders; a value that is missing renders as "n/a" and is reported."""
    missing = []

    def sub(m):
        k = m.group(1)
        if k in values and values[k] is not None:
            return str(values[k])
        missing.append(k)
        return "n/a"

    out = re.sub(r"\$\{([a-zA-Z0-9_]+)\}", sub, text)
    return out, sorted(set(missing))


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return "\n".join(lines)


def text_table(header, rows):
    """A plain fixed-width table for the terminal."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    fmt = "  ".join("%-" + str(w) + "s" for w in widths)
    lines = [fmt % tuple(cells[0]), fmt % tuple("-" * w for w in widths)]
    lines += [fmt % tuple(r) for r in cells[1:]]
    return "\n".join(l.rstrip() for l in lines)


def human_bytes(n):
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.2f %s" % (n, unit))
        n /= 1000.0
    return str(n)


def human_count(n):
    if n >= 1e6:
        return "%.2f M" % (n / 1e6)
    if n >= 1e3:
        return "%.1f k" % (n / 1e3)
    return str(n)
