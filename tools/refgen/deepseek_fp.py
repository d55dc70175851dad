#!/usr/bin/env python3
"""DeepSeek-V4's upstream weight form for mach's deepseek_v4 fixture.

Converts the committed testdata/models/deepseek_v4 checkpoint (f32, the names
transformers 5.17's save_pretrained writes) into the form DeepSeek ships
DeepSeek-V4-Flash in, and computes transformers' reference on the weights as
stored:

  * FP8: attention (wq_a, wq_b, wkv, wo_a, wo_b), the indexer's wq_b and the
    shared experts (w1, w2, w3): F8_E4M3 codes `<name>.weight [out, in]` with
    `<name>.scale` F8_E8M0 [ceil(out/128), ceil(in/128)], one power-of-two
    scale per 128x128 tile (scale_fmt ue8m0: 2^ceil(log2(amax/448))).
  * FP4: every routed expert's w1, w2, w3: e2m1 pairs packed into I8
    `<name>.weight [out, in/2]` (even column in the low nibble, bit 3 the
    sign) with `<name>.scale` F8_E8M0 [out, in/32] (2^ceil(log2(amax/6))).
  * BF16: embeddings, head, every RMSNorm weight, the compressors' wkv and
    wgate, the indexer's weights_proj and the routers' weight. F32: the
    hyper-connection tensors, attention sinks, the compressors' ape and the
    routers' bias (selection bias). I64: the hash layers' tid2eid.
  * Upstream names: no "model." prefix, embed.weight, head.weight,
    norm.weight, hc_head_{fn,base,scale}, layers.L.attn.kv_norm.weight.

The config is the base fixture's with the quantization_config DeepSeek-V4-Flash
ships (fp8, e4m3, ue8m0 scales, 128x128 blocks, experts fp4) and, so that the
fixture also covers it, YaRN on the compressed layers' rotary embedding with
attention_factor 1 (rope_parameters.compress), as the upstream config's
rope_scaling does; the first YaRN setting whose router and greedy margins
clear MIN_MARGIN is used and recorded in fixture.json.

The reference (logits, layer outputs, greedy without cache) is transformers
5.17's DeepseekV4ForCausalLM (float32, CPU, eager) with every parameter set to
the stored value dequantized in float32: FP8 code x scale, FP4 code x scale,
bf16 widened. `dequant.<name>` samples in reference.safetensors hold a few of
those tensors so a Go dequantizer can be checked bit for bit.

Run from the repository root on a machine with torch and transformers 5.17:

    python3 -P tools/refgen/deepseek_fp.py --out OUTDIR

writes OUTDIR/testdata/models/deepseek_v4_fp8/. `--self-test` checks the
quantizers and the name mapping without transformers (any torch >= 1.13).
"""

import argparse
import copy
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BASE = os.path.join(ROOT, "testdata", "models", "deepseek_v4")
NAME = "deepseek_v4_fp8"
FP8_BLOCK = 128
FP4_GROUP = 32

QUANTIZATION_CONFIG = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "scale_fmt": "ue8m0",
    "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
}

# (factor, original_max_position_embeddings) tried in order for the
# compressed layers' YaRN; None keeps the base fixture's default rope.
YARN_CHOICES = [(4.0, 64), (2.0, 64), (4.0, 32), (8.0, 64), None]


# --------------------------------------------------------------------------
# safetensors I/O (numpy, so any torch works)

_NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I8": np.int8,
       "U8": np.uint8, "I16": np.int16}


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = (v["dtype"], list(v["shape"]), data[a:b])
    return out


def to_torch(dtype, shape, raw):
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return torch.from_numpy(u.view(np.float32).reshape(shape).copy())
    a = np.frombuffer(raw, dtype=np.dtype(_NP[dtype]).newbyteorder("<")).reshape(shape)
    return torch.from_numpy(a.copy())


def write_safetensors(path, tensors, meta=None):
    """tensors: name -> (dtype string, shape, raw bytes); header padded to 8."""
    header = {"__metadata__": meta or {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def f32_bytes(t):
    return t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()


def bf16_round(t):
    """Round float32 to bfloat16 (nearest even) and back, as torch does."""
    u = t.detach().to(torch.float32).contiguous().numpy().view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    hi = u.astype(np.uint16)
    back = (hi.astype(np.uint32) << 16).view(np.float32)
    return torch.from_numpy(back.reshape(t.shape).copy()), hi.astype("<u2").tobytes()


# --------------------------------------------------------------------------
# FP8 e4m3 (OCP "fn": bias 7, no infinities, max 448) and e2m1

def _e4m3_table():
    vals = []
    for code in range(0x7F):  # 0x7F is NaN
        e, m = code >> 3, code & 7
        v = (m / 8.0) * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        vals.append(v)
    return torch.tensor(vals, dtype=torch.float64)


E4M3 = _e4m3_table()  # value of codes 0..126, increasing
E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def round_to_table(x, table):
    """Nearest table entry to |x| (x float64), ties to the even code; returns
    codes (int64) into table, which is increasing and starts at 0."""
    a = x.abs().clamp(max=float(table[-1]))
    hi = torch.searchsorted(table, a.contiguous()).clamp(max=len(table) - 1)
    lo = (hi - 1).clamp(min=0)
    dlo = (a - table[lo]).abs()
    dhi = (table[hi] - a).abs()
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    return torch.where(pick_hi, hi, lo)


def e8m0_exponent(amax, top):
    """Power-of-two exponent e with amax / 2^e <= top (scale_fmt ue8m0:
    2^ceil(log2(amax/top))), clamped to the e8m0 range."""
    safe = torch.clamp(amax, min=1e-30)
    e = torch.ceil(torch.log2(safe / top))
    return torch.clamp(e, -127, 127).to(torch.int64)


def quantize_fp8(w):
    """w [out, in] float32 -> (codes uint8 [out, in], scale bytes uint8
    [ceil(out/128), ceil(in/128)], dequantized float32)."""
    out_f, in_f = w.shape
    bo, bi = -(-out_f // FP8_BLOCK), -(-in_f // FP8_BLOCK)
    w64 = w.to(torch.float64)
    exps = torch.zeros(bo, bi, dtype=torch.int64)
    codes = torch.zeros(out_f, in_f, dtype=torch.int64)
    deq = torch.zeros(out_f, in_f, dtype=torch.float32)
    for r in range(bo):
        for c in range(bi):
            blk = w64[r * FP8_BLOCK:(r + 1) * FP8_BLOCK, c * FP8_BLOCK:(c + 1) * FP8_BLOCK]
            e = int(e8m0_exponent(blk.abs().max(), 448.0))
            exps[r, c] = e
            scaled = blk / 2.0 ** e
            mag = round_to_table(scaled, E4M3)
            neg = (scaled < 0) & (mag > 0)
            codes[r * FP8_BLOCK:(r + 1) * FP8_BLOCK, c * FP8_BLOCK:(c + 1) * FP8_BLOCK] = mag + neg.to(torch.int64) * 0x80
            v = E4M3[mag].to(torch.float32) * torch.where(neg, -1.0, 1.0).to(torch.float32)
            # float32(code value) * float32(2^e): the product a dequantizer computes.
            deq[r * FP8_BLOCK:(r + 1) * FP8_BLOCK, c * FP8_BLOCK:(c + 1) * FP8_BLOCK] = v * torch.tensor(2.0 ** e, dtype=torch.float32)
    return codes.to(torch.uint8), (exps + 127).to(torch.uint8), deq


def quantize_fp4(w):
    """w [out, in] float32 -> (packed bytes uint8 [out, in/2], scale bytes
    uint8 [out, in/32], dequantized float32)."""
    out_f, in_f = w.shape
    assert in_f % FP4_GROUP == 0, w.shape
    g = w.to(torch.float64).reshape(out_f, in_f // FP4_GROUP, FP4_GROUP)
    e = e8m0_exponent(g.abs().amax(-1), 6.0)  # [out, groups]
    scaled = g / torch.pow(2.0, e.to(torch.float64))[..., None]
    mag = round_to_table(scaled, E2M1)
    neg = (scaled < 0) & (mag > 0)
    code = (mag + neg.to(torch.int64) * 8).reshape(out_f, in_f)
    v = (E2M1[mag].to(torch.float32) * torch.where(neg, -1.0, 1.0).to(torch.float32))
    deq = (v * torch.pow(2.0, e.to(torch.float64)).to(torch.float32)[..., None]).reshape(out_f, in_f)
    packed = (code[:, 0::2] | (code[:, 1::2] << 4)).to(torch.uint8)
    return packed, (e + 127).to(torch.uint8), deq


def fp8_decode(codes, scale_bytes):
    """Reference decoder of the stored form (used by the self-test)."""
    c = codes.to(torch.int64)
    mag = c & 0x7F
    v = E4M3[mag.clamp(max=126)].to(torch.float32) * torch.where(c >= 0x80, -1.0, 1.0).to(torch.float32)
    s = torch.pow(2.0, scale_bytes.to(torch.float64) - 127).to(torch.float32)
    s = s.repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)[: c.shape[0], : c.shape[1]]
    return v * s


def fp4_decode(packed, scale_bytes):
    p = packed.to(torch.int64)
    codes = torch.stack([p & 15, p >> 4], dim=-1).reshape(p.shape[0], -1)
    v = E2M1[codes & 7].to(torch.float32) * torch.where(codes >= 8, -1.0, 1.0).to(torch.float32)
    s = torch.pow(2.0, scale_bytes.to(torch.float64) - 127).to(torch.float32)
    return v * s.repeat_interleave(FP4_GROUP, 1)


# --------------------------------------------------------------------------
# names: the base fixture's (transformers-saved native names under model.),
# the upstream checkpoint's, and transformers' internal state dict

def upstream_name(n):
    """The DeepSeek-V4-Flash hub name of a base-fixture tensor."""
    if n == "head.weight":
        return n
    assert n.startswith("model."), n
    n = n[len("model."):]
    top = {"embed_tokens.weight": "embed.weight", "hc_head.hc_fn": "hc_head_fn",
           "hc_head.hc_base": "hc_head_base", "hc_head.hc_scale": "hc_head_scale"}
    if n in top:
        return top[n]
    parts = n.split(".")
    if len(parts) >= 5 and parts[0] == "layers" and parts[2] == "attn" and parts[3] == "norm":
        return ".".join(parts[:3] + ["kv_norm"] + parts[4:])
    return n


_ATTN = {"attn_sink": "sinks", "wq_a": "q_a_proj", "q_norm": "q_a_norm", "wq_b": "q_b_proj",
         "wkv": "kv_proj", "norm": "kv_norm", "kv_norm": "kv_norm", "wo_a": "o_a_proj", "wo_b": "o_b_proj"}
_COMP = {"wkv": "kv_proj", "wgate": "gate_proj", "ape": "position_bias", "norm": "kv_norm"}
_SHARED = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}


def hf_name(n):
    """transformers 5.17's internal name of a base-fixture (or upstream)
    tensor; routed experts map to None (they are fused separately)."""
    if n in ("head.weight",):
        return "lm_head.weight"
    if n.startswith("model."):
        n = n[len("model."):]
    top = {"embed_tokens.weight": "model.embed_tokens.weight", "embed.weight": "model.embed_tokens.weight",
           "norm.weight": "model.norm.weight",
           "hc_head.hc_fn": "model.hc_head.hc_fn", "hc_head.hc_base": "model.hc_head.hc_base",
           "hc_head.hc_scale": "model.hc_head.hc_scale", "hc_head_fn": "model.hc_head.hc_fn",
           "hc_head_base": "model.hc_head.hc_base", "hc_head_scale": "model.hc_head.hc_scale"}
    if n in top:
        return top[n]
    p = n.split(".")
    assert p[0] == "layers", n
    pre = "model.layers." + p[1] + "."
    rest = p[2:]
    if rest[0] in ("attn_norm", "ffn_norm"):
        return pre + {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}[rest[0]] + ".weight"
    if rest[0].startswith("hc_"):
        site, what = rest[0].split("_")[1:]
        return pre + site + "_hc." + what
    if rest[0] == "attn":
        if rest[1] == "compressor":
            return pre + "self_attn.compressor." + _COMP[rest[2]] + ("." + ".".join(rest[3:]) if len(rest) > 3 else "")
        if rest[1] == "indexer":
            if rest[2] == "compressor":
                tail = ("." + ".".join(rest[4:])) if len(rest) > 4 else ""
                return pre + "self_attn.compressor.indexer." + _COMP[rest[3]] + tail
            if rest[2] == "wq_b":
                return pre + "self_attn.compressor.indexer.q_b_proj." + ".".join(rest[3:])
            if rest[2] == "weights_proj":
                return pre + "self_attn.compressor.indexer.scorer.weights_proj." + ".".join(rest[3:])
        tail = ("." + ".".join(rest[2:])) if len(rest) > 2 else ""
        return pre + "self_attn." + _ATTN[rest[1]] + tail
    if rest[0] == "ffn":
        if rest[1] == "gate":
            return pre + "mlp.gate." + {"weight": "weight", "bias": "e_score_correction_bias", "tid2eid": "tid2eid"}[rest[2]]
        if rest[1] == "shared_experts":
            return pre + "mlp.shared_experts." + _SHARED[rest[2]] + "." + ".".join(rest[3:])
        if rest[1] == "experts":
            return None
    raise KeyError(n)


def hf_state_dict(weights, cfg):
    """Base-fixture-style or upstream tensors (name -> float32 / int tensor)
    -> transformers' state dict, routed experts fused as transformers holds
    them (gate_up_proj [E, 2I, H] = cat(w1, w3); down_proj [E, H, I])."""
    sd = {}
    experts = {}
    for n, t in weights.items():
        h = hf_name(n)
        if h is not None:
            sd[h] = t
            continue
        p = n[len("model."):].split(".") if n.startswith("model.") else n.split(".")
        layer, e, w = int(p[1]), int(p[4]), p[5]
        experts.setdefault(layer, {}).setdefault(e, {})[w] = t
    ne = cfg["n_routed_experts"]
    for layer, es in experts.items():
        pre = f"model.layers.{layer}.mlp.experts."
        sd[pre + "gate_up_proj"] = torch.stack([torch.cat([es[e]["w1"], es[e]["w3"]], 0) for e in range(ne)])
        sd[pre + "down_proj"] = torch.stack([es[e]["w2"] for e in range(ne)])
    return sd


# --------------------------------------------------------------------------
# conversion

FP8_SUFFIXES = ("attn.wq_a.weight", "attn.wq_b.weight", "attn.wkv.weight", "attn.wo_a.weight",
                "attn.wo_b.weight", "attn.indexer.wq_b.weight", "ffn.shared_experts.w1.weight",
                "ffn.shared_experts.w2.weight", "ffn.shared_experts.w3.weight")
F32_SUFFIXES = ("attn.attn_sink", "hc_attn_fn", "hc_attn_base", "hc_attn_scale", "hc_ffn_fn",
                "hc_ffn_base", "hc_ffn_scale", "compressor.ape", "ffn.gate.bias")
SAMPLES = ("layers.1.attn.wq_b.weight", "layers.0.attn.wo_a.weight", "layers.3.ffn.shared_experts.w2.weight",
           "layers.1.ffn.experts.3.w1.weight", "layers.2.ffn.experts.5.w2.weight")


def kind_of(up):
    if up.endswith(FP8_SUFFIXES):
        return "fp8"
    if ".ffn.experts." in up and up.endswith(".weight"):
        return "fp4"
    if up.endswith(F32_SUFFIXES) or up.startswith("hc_head_"):
        return "f32"
    if up.endswith("tid2eid"):
        return "int"
    return "bf16"


def convert(base_tensors):
    """-> (stored tensors name -> (dtype, shape, bytes), dequantized tensors
    upstream name -> torch, dequant samples)."""
    stored, deq, samples = {}, {}, {}
    for n, (dt, shape, raw) in sorted(base_tensors.items()):
        t = to_torch(dt, shape, raw)
        up = upstream_name(n)
        k = kind_of(up)
        if k == "int":
            stored[up] = (dt, shape, raw)
            deq[up] = t
        elif k == "f32":
            stored[up] = ("F32", shape, f32_bytes(t))
            deq[up] = t.to(torch.float32)
        elif k == "bf16":
            v, b = bf16_round(t)
            stored[up] = ("BF16", shape, b)
            deq[up] = v
        elif k == "fp8":
            codes, sc, dq = quantize_fp8(t.to(torch.float32))
            base = up[: -len(".weight")]
            stored[up] = ("F8_E4M3", shape, codes.numpy().tobytes())
            stored[base + ".scale"] = ("F8_E8M0", list(sc.shape), sc.numpy().tobytes())
            deq[up] = dq
        elif k == "fp4":
            packed, sc, dq = quantize_fp4(t.to(torch.float32))
            base = up[: -len(".weight")]
            stored[up] = ("I8", [shape[0], shape[1] // 2], packed.numpy().tobytes())
            stored[base + ".scale"] = ("F8_E8M0", list(sc.shape), sc.numpy().tobytes())
            deq[up] = dq
        if up in SAMPLES:
            samples[up] = deq[up].to(torch.float32)
    return stored, deq, samples


def fp_config(base_cfg, yarn):
    c = copy.deepcopy(base_cfg)
    c["quantization_config"] = dict(QUANTIZATION_CONFIG)
    c["expert_dtype"] = "fp4"
    c["dtype"] = "bfloat16"
    c.pop("torch_dtype", None)
    if yarn is not None:
        factor, orig = yarn
        comp = dict(c["rope_parameters"]["compress"])
        comp.update(rope_type="yarn", factor=factor, original_max_position_embeddings=orig,
                    beta_fast=32.0, beta_slow=1.0, attention_factor=1.0)
        c["rope_parameters"] = {"main": c["rope_parameters"]["main"], "compress": comp}
    return c


# --------------------------------------------------------------------------
# self-test (no transformers)

def self_test():
    g = torch.Generator().manual_seed(5)
    # e4m3: every code decodes to itself through the quantizer.
    vals = torch.cat([E4M3, -E4M3[1:]])
    mag = round_to_table(vals, E4M3)
    assert torch.equal(E4M3[mag], vals.abs()), "e4m3 table round trip"
    # ties go to the even code: halfway between codes 1 and 2, and 9 and 10.
    mid = torch.tensor([(float(E4M3[1]) + float(E4M3[2])) / 2, (float(E4M3[9]) + float(E4M3[10])) / 2], dtype=torch.float64)
    assert round_to_table(mid, E4M3).tolist() == [2, 10], round_to_table(mid, E4M3)
    assert float(E4M3[-1]) == 448.0 and float(E4M3[1]) == 2.0 ** -9
    for shape in ((32, 64), (200, 300), (128, 256)):
        w = torch.randn(shape, generator=g) * 0.1
        w[0, :5] = 0
        codes, sc, dq = quantize_fp8(w)
        assert sc.shape == (-(-shape[0] // 128), -(-shape[1] // 128))
        assert torch.equal(fp8_decode(codes, sc), dq), "fp8 decode"
        rel = (dq - w).norm() / w.norm()
        assert rel < 0.05, f"fp8 error {rel}"
        assert int(codes.max()) != 0x7F and int(codes.max()) != 0xFF, "no NaN codes"
    for shape in ((32, 64), (64, 32), (8, 96)):
        w = torch.randn(shape, generator=g) * 0.2
        packed, sc, dq = quantize_fp4(w)
        assert packed.shape == (shape[0], shape[1] // 2) and sc.shape == (shape[0], shape[1] // 32)
        assert torch.equal(fp4_decode(packed, sc), dq), "fp4 decode"
        rel = (dq - w).norm() / w.norm()
        assert rel < 0.2, f"fp4 error {rel}"
        # no clipping: every |w| / scale <= 6
        s = torch.pow(2.0, sc.to(torch.float64) - 127).repeat_interleave(32, 1)
        assert bool(((w.to(torch.float64) / s).abs() <= 6).all())
    # bf16 rounding matches torch's own conversion.
    w = torch.randn(1000, generator=g) * 3
    v, _ = bf16_round(w)
    assert torch.equal(v, w.to(torch.bfloat16).to(torch.float32)), "bf16 rounding"

    base = read_safetensors(os.path.join(BASE, "model.safetensors"))
    with open(os.path.join(BASE, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(BASE, "fixture.json")) as f:
        want = json.load(f)["state_dict_shapes"]
    # Every transformers parameter is covered once with its shape, from the
    # base names and from the upstream names alike.
    for names in ("base", "upstream"):
        ws = {}
        for n, (dt, shape, raw) in base.items():
            ws[n if names == "base" else upstream_name(n)] = to_torch(dt, shape, raw)
        sd = hf_state_dict(ws, cfg)
        got = {k: list(v.shape) for k, v in sd.items()}
        assert got == want, f"{names}: mapping differs: missing {sorted(set(want) - set(got))[:5]} extra {sorted(set(got) - set(want))[:5]}"
    stored, deq, samples = convert(base)
    assert sorted(samples) == sorted(SAMPLES), sorted(samples)
    kinds = {}
    for n, (dt, _, _) in stored.items():
        kinds[dt] = kinds.get(dt, 0) + 1
    size = sum(len(b) for _, _, b in stored.values())
    print("self-test ok:", kinds, f"{size} bytes of tensors")
    return 0


# --------------------------------------------------------------------------
# reference with transformers

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="output root (writes OUT/testdata/models/%s/)" % NAME)
    ap.add_argument("--self-test", action="store_true", help="check quantizers and names; no transformers")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.out:
        ap.error("--out is required")
    # Load models.py by path: putting this directory on sys.path would let
    # tools/refgen/tokenizers.py shadow the tokenizers package transformers imports.
    import importlib.util
    spec = importlib.util.spec_from_file_location("refgen_models", os.path.join(HERE, "models.py"))
    refgen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refgen)  # tools/refgen/models.py: build, margins, references, fixture writer

    torch.set_num_threads(min(16, os.cpu_count() or 1))
    refgen.log(f"transformers {refgen.transformers.__version__}, torch {torch.__version__}")
    with open(os.path.join(BASE, "config.json")) as f:
        base_cfg = json.load(f)
    base = read_safetensors(os.path.join(BASE, "model.safetensors"))
    ref = read_safetensors(os.path.join(BASE, "reference.safetensors"))
    input_ids = to_torch(*ref["input_ids"]).to(torch.int64).reshape(1, -1)
    base_logits = to_torch(*ref["logits"])

    def model_for(cfg, weights):
        # The reference model is float32 whatever the checkpoint stores; the
        # quantization keys only describe the files.
        cfg = {k: v for k, v in cfg.items() if k not in ("quantization_config", "expert_dtype", "dtype")}
        model, _ = refgen.build_model(cfg)
        sd = hf_state_dict(weights, cfg)
        own = model.state_dict()
        missing = sorted(set(own) - set(sd))
        extra = sorted(set(sd) - set(own))
        if missing or extra:
            raise RuntimeError(f"state dict mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
        model.load_state_dict({k: sd[k].to(own[k].dtype) for k in own}, strict=True)
        return model.eval()

    # The name mapping and this environment reproduce the committed base
    # fixture before anything is quantized.
    base_w = {n: to_torch(dt, shape, raw) for n, (dt, shape, raw) in base.items()}
    m0 = model_for(base_cfg, base_w)
    with torch.no_grad():
        l0 = m0(input_ids).logits[0].float()
    rel = float((l0 - base_logits).norm() / base_logits.norm())
    refgen.log(f"  base fixture reproduced: relative L2 {rel:.3g}")
    if rel > 1e-5:
        raise RuntimeError(f"the base deepseek_v4 fixture is not reproduced (relative L2 {rel})")

    stored, deq, samples = convert(base)
    chosen = None
    for yarn in YARN_CHOICES:
        cfg = fp_config(base_cfg, yarn)
        model = model_for(cfg, deq)
        rm = refgen.router_margins(model, "deepseek_v4", input_ids)
        _, gap = refgen.greedy_nocache(model, input_ids, refgen.GREEDY_LEN)
        ok = (rm is None or rm >= refgen.MIN_MARGIN) and gap >= refgen.MIN_MARGIN
        refgen.log(f"  yarn {yarn}: router margin {rm}, greedy gap {gap:.3g} -> {'ok' if ok else 'next'}")
        if ok:
            chosen = (yarn, cfg, model, rm)
            break
    if chosen is None:
        raise RuntimeError("no YaRN setting gave the quantized model clear router and greedy margins")
    yarn, cfg, model, rm = chosen

    def writer(d):
        write_safetensors(os.path.join(d, "model.safetensors"), stored, {"format": "pt"})

    info = refgen.common_info("deepseek_v4", json.load(open(os.path.join(BASE, "fixture.json")))["seed"], rm, model)
    info["yarn"] = None if yarn is None else {"factor": yarn[0], "original_max_position_embeddings": yarn[1]}
    info["variant"] = ("DeepSeek-V4-Flash upstream form of the deepseek_v4 weights: FP8 e4m3 + e8m0 128x128 block "
                       "scales (attention, indexer wq_b, shared experts), FP4 e2m1 experts packed in I8 + e8m0 per 32, "
                       "bf16 embeddings/head/norms/compressors/routers, f32 hc/sinks/ape/router bias; upstream names; "
                       "YaRN (attention factor 1) on the compressed layers; reference on the dequantized weights")
    refgen.write_fixture(args.out, NAME, cfg, writer, model, input_ids, info,
                         dequant_samples=samples, layer_outputs=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
