#!/usr/bin/env python3
"""Reference fixtures for mach: tiny random checkpoints of the five MoE
architectures, their layout and quantization variants, and the logits
Hugging Face transformers computes for them.

Run on a machine with PyTorch and transformers 5.17 (no network needed):

    python3 tools/refgen/models.py --out OUTDIR [--only NAME,...]

writes OUTDIR/testdata/models/<fixture>/ with config.json,
generation_config.json, the weights, reference.safetensors and fixture.json,
plus OUTDIR/models-summary.json. See testdata/models/README.md for what each
fixture holds and how the references are defined.

Design notes:
- Models are built from config dicts modelled on what transformers 5.17
  itself serialises, in float32, eager attention, on the CPU (no TF32).
- Every parameter is perturbed so mistakes show: 2-D+ weights drawn from
  N(0, 1/fan_in), 1-D parameters shifted by N(0, 0.1); routers are scaled up
  so expert choice is decisive. A seed is accepted only when every router
  top-k choice and every greedy step has a clear margin, so f32 rounding
  differences between implementations cannot flip a choice.
- Variants (bf16, MLX stacked naming, MLX affine 4/8-bit, MXFP4) are written
  by this script from the same weights; their reference logits are computed
  by transformers after loading the weights back exactly as stored
  (dequantized in float32), so a correct loader must reproduce them.
"""

import argparse
import copy
import json
import math
import os
import sys
import time
import traceback

import torch

import transformers

PROMPT_LEN = 48
GREEDY_LEN = 16
MIN_MARGIN = 2e-4  # required top-k / argmax separation (logit units)


# --------------------------------------------------------------------------
# configs (modelled on transformers 5.17 config.json files)

def qwen3_moe_config(**over):
    c = dict(
        architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe",
        vocab_size=320, hidden_size=64, intermediate_size=128,
        moe_intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        num_experts=8, num_local_experts=8, num_experts_per_tok=2,
        decoder_sparse_step=1, mlp_only_layers=[1], norm_topk_prob=True,
        rms_norm_eps=1e-6, max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        rope_theta=10000.0, tie_word_embeddings=False, attention_bias=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, use_cache=True,
        sliding_window=None, use_sliding_window=False,
    )
    c.update(over)
    return c


def qwen3_5_moe_config(**over):
    text = dict(
        model_type="qwen3_5_moe_text", vocab_size=320, hidden_size=64,
        num_hidden_layers=4,
        layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_num_key_heads=2,
        linear_num_value_heads=4, linear_value_head_dim=16,
        num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
        shared_expert_intermediate_size=64, rms_norm_eps=1e-6,
        max_position_embeddings=512, partial_rotary_factor=0.25,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        tie_word_embeddings=False, attention_bias=False, hidden_act="silu",
        bos_token_id=1, eos_token_id=2, pad_token_id=None,
    )
    text.update(over.pop("text", {}))
    vision = dict(
        model_type="qwen3_5_moe_vision", depth=1, hidden_size=32, intermediate_size=64,
        num_heads=2, in_channels=3, patch_size=8, temporal_patch_size=2,
        spatial_merge_size=2, out_hidden_size=64, num_position_embeddings=16,
        hidden_act="gelu_pytorch_tanh",
    )
    c = dict(
        architectures=["Qwen3_5MoeForConditionalGeneration"], model_type="qwen3_5_moe",
        text_config=text, vision_config=vision, tie_word_embeddings=False,
        image_token_id=248056, video_token_id=248057,
        vision_start_token_id=248053, vision_end_token_id=248054,
    )
    c.update(over)
    return c


def gpt_oss_config(**over):
    c = dict(
        architectures=["GptOssForCausalLM"], model_type="gpt_oss",
        vocab_size=320, hidden_size=64, intermediate_size=32,
        num_hidden_layers=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        num_local_experts=8, num_experts=8, num_experts_per_tok=2, experts_per_token=2,
        sliding_window=8, rms_norm_eps=1e-5, max_position_embeddings=512,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                         "original_max_position_embeddings": 4096, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False},
        swiglu_limit=7.0, attention_bias=True, tie_word_embeddings=False,
        hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=None,
    )
    c.update(over)
    return c


def gemma4_config(**over):
    text = dict(
        model_type="gemma4_text", vocab_size=320, vocab_size_per_layer_input=320,
        hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        attention_k_eq_v=True, num_global_key_value_heads=1, global_head_dim=32,
        enable_moe_block=True, num_experts=8, top_k_experts=2, moe_intermediate_size=64,
        hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=30.0,
        rms_norm_eps=1e-6, max_position_embeddings=512, sliding_window=8,
        hidden_size_per_layer_input=0, num_kv_shared_layers=0, use_double_wide_mlp=False,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "proportional", "rope_theta": 1000000.0,
                               "partial_rotary_factor": 0.25},
        },
        tie_word_embeddings=True, attention_bias=False,
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )
    text.update(over.pop("text", {}))
    vision = dict(
        model_type="gemma4_vision", hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, head_dim=16,
        patch_size=16, pooling_kernel_size=3, position_embedding_size=64,
        hidden_activation="gelu_pytorch_tanh",
    )
    c = dict(
        architectures=["Gemma4ForConditionalGeneration"], model_type="gemma4",
        text_config=text, vision_config=vision, audio_config=None,
        tie_word_embeddings=True,
        boi_token_id=255999, eoi_token_id=258882, image_token_id=258880,
        video_token_id=258884, boa_token_id=256000, audio_token_id=258881,
    )
    c.update(over)
    return c


def deepseek_v4_config(**over):
    c = dict(
        architectures=["DeepseekV4ForCausalLM"], model_type="deepseek_v4",
        vocab_size=320, hidden_size=64, num_hidden_layers=4,
        layer_types=["heavily_compressed_attention", "compressed_sparse_attention",
                     "sliding_attention", "compressed_sparse_attention"],
        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
        mlp_layer_types=["hash_moe", "moe", "moe", "moe"],
        num_attention_heads=4, num_key_value_heads=1, head_dim=32,
        q_lora_rank=32, o_groups=2, o_lora_rank=16, qk_rope_head_dim=8,
        partial_rotary_factor=0.25, sliding_window=8,
        index_head_dim=16, index_n_heads=2, index_topk=4,
        hc_mult=4, hc_sinkhorn_iters=20, hc_eps=1e-6,
        n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
        moe_intermediate_size=32, norm_topk_prob=True, routed_scaling_factor=1.5,
        scoring_func="sqrtsoftplus", swiglu_limit=10.0, num_nextn_predict_layers=1,
        rms_norm_eps=1e-6, max_position_embeddings=512,
        rope_theta=10000.0, compress_rope_theta=160000.0,
        rope_parameters={
            "main": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
            "compress": {"rope_type": "default", "rope_theta": 160000.0, "partial_rotary_factor": 0.25},
        },
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
        bos_token_id=0, eos_token_id=1, pad_token_id=None,
    )
    c.update(over)
    return c


# --------------------------------------------------------------------------
# building and perturbing

def log(*a):
    print(*a, flush=True)


def build_model(cfg_dict):
    cfg_dict = copy.deepcopy(cfg_dict)
    model_type = cfg_dict.pop("model_type")
    arch = cfg_dict["architectures"][0]
    config = transformers.AutoConfig.for_model(model_type, **cfg_dict)
    try:
        config._attn_implementation = "eager"
    except Exception:
        pass
    for sub in ("text_config", "vision_config"):
        sc = getattr(config, sub, None)
        if sc is not None:
            try:
                sc._attn_implementation = "eager"
            except Exception:
                pass
    cls = getattr(transformers, arch)
    model = cls(config)
    try:
        model.set_attn_implementation("eager")
    except Exception as e:  # older API
        log("  note: set_attn_implementation failed:", e)
    model = model.to(torch.float32).eval()
    return model, config


ROUTER_SUFFIXES = ("mlp.gate.weight", "mlp.router.weight", "router.proj.weight")


def perturb(model, seed, router_scale=4.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.dtype.is_floating_point:
                continue
            if p.dim() >= 2:
                fan_in = p.shape[-1]
                if "conv1d" in name:
                    fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(fan_in, 1)))
                if name.endswith(ROUTER_SUFFIXES):
                    p.mul_(router_scale)
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("tid2eid"):
                rows, k = b.shape
                n_exp = int(b.max().item()) + 1 if b.numel() else k
                n_exp = max(n_exp, getattr(model.config, "n_routed_experts", n_exp) or n_exp)
                t = torch.stack([torch.randperm(n_exp, generator=g)[:k] for _ in range(rows)])
                b.copy_(t.to(b.dtype))
            elif name.endswith("layer_scalar") and b.dtype.is_floating_point:
                b.add_(torch.randn(b.shape, generator=g) * 0.1)


def decoder_layers(model):
    for path in ("model.layers", "model.language_model.layers", "model.model.layers"):
        obj = model
        ok = True
        for part in path.split("."):
            if not hasattr(obj, part):
                ok = False
                break
            obj = getattr(obj, part)
        if ok:
            return obj
    raise RuntimeError("cannot find decoder layers")


# --------------------------------------------------------------------------
# router margin checks (hooks capture router inputs; scores recomputed here)

def router_margins(model, arch, input_ids):
    """Return the smallest separation between the k-th and (k+1)-th expert
    score over every MoE layer and token, or None if no router was found."""
    captured = []
    hooks = []
    cfg = getattr(model.config, "text_config", None) or model.config
    for name, mod in model.named_modules():
        if "visual" in name or "vision" in name:
            continue
        kind = None
        if arch in ("qwen3_moe", "qwen3_5_moe", "deepseek_v4") and name.endswith("mlp.gate"):
            kind = arch
        elif arch == "gpt_oss" and name.endswith("mlp.router"):
            kind = arch
        elif arch == "gemma4" and name.endswith(".router"):
            kind = arch
        if kind is None:
            continue

        def pre(m, args, kwargs, name=name):
            x = args[0] if args else next(iter(kwargs.values()))
            captured.append((name, m, x.detach().reshape(-1, x.shape[-1]).float()))
        hooks.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        for h in hooks:
            h.remove()
    if not captured:
        return None
    try:
        return _router_worst(captured, arch, cfg)
    except Exception as e:
        log("  note: router margin check failed:", repr(e)[:200])
        return None


def _router_worst(captured, arch, cfg):
    k = (getattr(cfg, "num_experts_per_tok", None) or getattr(cfg, "top_k_experts", None) or 2)
    worst = float("inf")
    for name, m, x in captured:
        if arch == "gemma4":
            n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)
            n = n * m.scale.float() * (cfg.hidden_size ** -0.5)
            s = n @ m.proj.weight.float().t()
        elif arch == "gpt_oss":
            s = x @ m.weight.float().t() + m.bias.float()
        elif arch == "deepseek_v4":
            if hasattr(m, "tid2eid") and not hasattr(m, "e_score_correction_bias"):
                continue  # hash routing: no choice to separate
            s = torch.sqrt(torch.nn.functional.softplus(x @ m.weight.float().t()))
            bias = getattr(m, "e_score_correction_bias", None)
            if bias is None:
                bias = getattr(m, "bias", None)
            if bias is not None:
                s = s + bias.float()
        else:
            s = x @ m.weight.float().t()
        top = torch.topk(s, k + 1, dim=-1).values
        worst = min(worst, float((top[:, k - 1] - top[:, k]).min().detach()))
    return worst


# --------------------------------------------------------------------------
# references

def greedy_nocache(model, input_ids, n):
    ids = input_ids.clone()
    gaps = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids).logits[0, -1].float()
            top = torch.topk(logits, 2).values
            gaps.append(float(top[0] - top[1]))
            nxt = int(torch.argmax(logits))
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return ids[0, input_ids.shape[1]:].clone(), min(gaps)


def greedy_generate(model, input_ids, n):
    with torch.no_grad():
        out = model.generate(input_ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, input_ids.shape[1]:].clone()


def compute_reference(model, input_ids):
    layers = decoder_layers(model)
    outs = []
    hooks = []
    for l in layers:
        def fwd(m, args, out):
            o = out[0] if isinstance(out, (tuple, list)) else out
            outs.append(o.detach()[0].float().clone())
        hooks.append(l.register_forward_hook(fwd))
    try:
        with torch.no_grad():
            res = model(input_ids)
    finally:
        for h in hooks:
            h.remove()
    ref = {
        "input_ids": input_ids[0].to(torch.int64).clone(),
        "logits": res.logits[0].float().contiguous().clone(),
    }
    if outs and len(outs) == len(layers):
        try:
            ref["layer_outputs"] = torch.stack(outs).contiguous()
        except Exception as e:
            log("  note: layer outputs not stackable:", e)
    greedy, gap = greedy_nocache(model, input_ids, GREEDY_LEN)
    ref["greedy"] = greedy
    info = {"greedy_min_gap": gap}
    try:
        gg = greedy_generate(model, input_ids, GREEDY_LEN)
        ref["greedy_generate"] = gg
        info["generate_matches_nocache"] = bool(torch.equal(gg, greedy))
    except Exception as e:
        info["generate_error"] = repr(e)[:300]
    return ref, info


# --------------------------------------------------------------------------
# quantization (MLX affine, MXFP4) — as ../shared/notes/formats.md §2 states

def mlx_affine_quantize(w, bits, group):
    """w [..., in] float32 → (packed uint32 [..., in*bits/32], scales bf16,
    biases bf16, dequantized float32 computed from the stored values)."""
    shape = w.shape
    assert shape[-1] % group == 0, (shape, group)
    g = w.reshape(-1, group).to(torch.float32)
    mn = g.min(-1).values
    mx = g.max(-1).values
    n = float(2 ** bits - 1)
    s = torch.clamp((mx - mn) / n, min=1e-7)
    neg = mn.abs() > mx.abs()
    s = torch.where(neg, s, -s)
    edge = torch.where(neg, mn, mx)
    q0 = torch.round(edge / s)
    nz = q0 != 0
    s = torch.where(nz, edge / torch.where(nz, q0, torch.ones_like(q0)), s)
    bias = torch.where(nz, edge, torch.zeros_like(edge))
    q = torch.clamp(torch.round((g - bias[:, None]) / s[:, None]), 0, n).to(torch.int64)
    s_b = s.to(torch.bfloat16)
    b_b = bias.to(torch.bfloat16)
    deq = (s_b.float()[:, None] * q.float() + b_b.float()[:, None]).reshape(shape)
    packed = pack_bits(q.reshape(*shape[:-1], shape[-1]), bits)
    ng = shape[-1] // group
    return packed, s_b.reshape(*shape[:-1], ng), b_b.reshape(*shape[:-1], ng), deq


def pack_bits(q, bits):
    """Pack integer codes [..., in] LSB-first into uint32 words [..., in*bits/32]."""
    shape = q.shape
    assert (shape[-1] * bits) % 32 == 0
    flat = q.reshape(-1, shape[-1]).to(torch.int64)
    rows, cols = flat.shape
    nwords = cols * bits // 32
    words = torch.zeros(rows, nwords, dtype=torch.int64)
    for i in range(cols):
        bit = i * bits
        wi, off = divmod(bit, 32)
        words[:, wi] |= (flat[:, i] << off) & 0xFFFFFFFF
        if off + bits > 32:
            words[:, wi + 1] |= flat[:, i] >> (32 - off)
    words = words & 0xFFFFFFFF
    import numpy as np
    # numpy, not torch: older torch builds have no uint32 tensors.
    return words.numpy().astype(np.uint32).reshape(*shape[:-1], nwords)


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def mxfp4_quantize(w):
    """w [..., in] → (codes uint8 [..., in] (0..15), e8m0 scales uint8
    [..., in/32], dequantized float32)."""
    shape = w.shape
    assert shape[-1] % 32 == 0
    g = w.reshape(-1, 32).to(torch.float32)
    amax = g.abs().max(-1).values
    e = torch.round(torch.log2(torch.clamp(amax, min=1e-30) / 6.0))
    e = torch.clamp(e, -127, 127)
    scale = torch.pow(2.0, e)
    v = g / scale[:, None]
    mag = v.abs().clamp(max=6.0)
    idx = torch.argmin((mag[..., None] - E2M1).abs(), dim=-1)
    sign = (v < 0) & (idx > 0)
    codes = idx + sign.to(torch.int64) * 8
    deq = E2M1[idx] * torch.where(sign, -1.0, 1.0) * scale[:, None]
    sbytes = (e + 127).to(torch.uint8)
    return (codes.to(torch.uint8).reshape(shape), sbytes.reshape(*shape[:-1], shape[-1] // 32),
            deq.reshape(shape))


def nibbles_to_bytes(codes):
    """codes [..., in] → bytes [..., in/2], even index in the low nibble."""
    c = codes.to(torch.int64)
    b = c[..., 0::2] | (c[..., 1::2] << 4)
    return b.to(torch.uint8)


def bytes_as_u32(b):
    """uint8 [..., n] (n % 4 == 0) → uint32 [..., n/4], little-endian."""
    import numpy as np
    arr = b.contiguous().numpy()
    return arr.view(np.uint32).copy()


# --------------------------------------------------------------------------
# writing fixtures

_TORCH_DT = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
_NP_DT = {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64", "int32": "I32",
          "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32",
          "uint64": "U64", "bool": "BOOL"}


def _raw(v):
    """(dtype string, shape, little-endian bytes) of a torch tensor or numpy array."""
    import numpy as np
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        return _NP_DT[str(a.dtype)], list(a.shape), a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    t = v.detach().contiguous().cpu()
    dt = _TORCH_DT[t.dtype]
    if t.dtype == torch.bfloat16:
        data = t.view(torch.int16).numpy().tobytes()
    else:
        data = t.numpy().tobytes()
    return dt, list(t.shape), data


def save_tensors(path, tensors, meta=None):
    """Write a safetensors file (our own writer, so uint32 works with any
    torch): header padded to 8 bytes, tensors in name order."""
    import struct
    header = {"__metadata__": meta or {"format": "pt"}}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt, shape, data = _raw(tensors[name])
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - (8 + len(hj)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def write_fixture(outroot, name, config_dict, weights_writer, model, input_ids, extra_info, dequant_samples=None,
                  layer_outputs=None):
    """Write one fixture directory. config_dict None keeps the config.json
    that weights_writer (save_pretrained) wrote."""
    d = os.path.join(outroot, "testdata", "models", name)
    os.makedirs(d, exist_ok=True)
    weights_writer(d)
    if config_dict is not None:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config_dict, f, indent=2, sort_keys=True)
    if not os.path.exists(os.path.join(d, "generation_config.json")):
        cfg = config_dict or {}
        tc = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
        gen = {"do_sample": False, "bos_token_id": tc.get("bos_token_id"), "eos_token_id": tc.get("eos_token_id")}
        with open(os.path.join(d, "generation_config.json"), "w") as f:
            json.dump(gen, f, indent=2)
    ref, info = compute_reference(model, input_ids)
    if layer_outputs is None:
        layer_outputs = config_dict is None  # the transformers-saved base fixtures keep them
    if not layer_outputs:
        ref.pop("layer_outputs", None)
    if dequant_samples:
        for k, v in dequant_samples.items():
            ref["dequant." + k] = v.float().contiguous()
    save_tensors(os.path.join(d, "reference.safetensors"), ref)
    info.update(extra_info)
    info["fixture"] = name
    info["files"] = sorted(set(os.listdir(d)) | {"fixture.json"})
    info["reference_keys"] = {k: list(v.shape) for k, v in ref.items()}
    with open(os.path.join(d, "fixture.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    info["bytes"] = dir_size(d)
    log(f"  wrote {name}: {info['bytes']} bytes, greedy gap {info.get('greedy_min_gap'):.3g}, "
        f"generate==nocache {info.get('generate_matches_nocache')}")
    return info


def base_config(outroot, name):
    with open(os.path.join(outroot, "testdata", "models", name, "config.json")) as f:
        return json.load(f)


def with_dtype(cfgd, dtype):
    c = copy.deepcopy(cfgd)
    for key in ("torch_dtype", "dtype"):
        c[key] = dtype
    if isinstance(c.get("text_config"), dict):
        c["text_config"]["dtype"] = dtype
    return c


def hf_save(model):
    def w(d):
        model.save_pretrained(d, safe_serialization=True)
        # save_pretrained also writes config.json/generation_config.json;
        # write_fixture rewrites them below, the weights stay as written.
    return w


def load_saved_into(model_template, path_or_sd):
    """Return a copy of model_template whose parameters are the given state
    dict (HF internal names) in float32."""
    m = copy.deepcopy(model_template)
    sd = m.state_dict()
    src = path_or_sd
    missing = [k for k in sd if k not in src]
    if missing:
        raise RuntimeError(f"variant state dict lacks {missing[:5]}")
    new = {k: src[k].to(sd[k].dtype) if sd[k].dtype.is_floating_point else src[k] for k in sd}
    m.load_state_dict(new, strict=True)
    return m.eval()


def choose_seed(arch, cfg, base_seed, tries=40):
    last = None
    for i in range(tries):
        seed = base_seed + i
        torch.manual_seed(seed)
        model, config = build_model(cfg)
        perturb(model, seed)
        g = torch.Generator().manual_seed(seed + 1000)
        vocab = (cfg.get("text_config") or cfg)["vocab_size"]
        input_ids = torch.randint(3, vocab, (1, PROMPT_LEN), generator=g)
        rm = router_margins(model, arch, input_ids)
        _, gap = greedy_nocache(model, input_ids, GREEDY_LEN)
        last = (model, config, input_ids, seed, rm, gap)
        ok = (rm is None or rm >= MIN_MARGIN) and gap >= MIN_MARGIN
        log(f"  seed {seed}: router margin {rm}, greedy gap {gap:.3g} -> {'ok' if ok else 'retry'}")
        if ok:
            return last
    log("  WARNING: no seed met the margins; using the last one")
    return last


def common_info(arch, seed, rm, model):
    return {
        "architecture": arch,
        "seed": seed,
        "router_min_margin": rm,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "class": type(model).__name__,
        "prompt_len": PROMPT_LEN,
        "greedy_len": GREEDY_LEN,
    }


# --------------------------------------------------------------------------
# qwen3_moe family

def stacked_experts_from_fused(sd, prefix_map):
    """Yield (layer_prefix, gate[E,I,H], up[E,I,H], down[E,H,I]) for fused HF
    experts, gate = first half of gate_up_proj's dim 1."""
    for k in sorted(sd):
        if k.endswith("mlp.experts.gate_up_proj"):
            pre = k[: -len("experts.gate_up_proj")]
            gu = sd[k]
            i = gu.shape[1] // 2
            yield pre, gu[:, :i, :], gu[:, i:, :], sd[pre + "experts.down_proj"]


def gen_qwen3_moe(out, only):
    results = {}
    for base_name, cfg, seed0 in (
        ("qwen3_moe", qwen3_moe_config(), 101),
        ("qwen3_moe_nonorm", qwen3_moe_config(norm_topk_prob=False, tie_word_embeddings=True,
                                              mlp_only_layers=[]), 201),
    ):
        if only and not any(o.startswith(base_name) for o in only):
            continue
        log(f"== {base_name}")
        model, config, input_ids, seed, rm, _ = choose_seed("qwen3_moe", cfg, seed0)
        info = common_info("qwen3_moe", seed, rm, model)
        writer, variant = hf_save(model), "f32, transformers save_pretrained (fused experts)"
        if base_name == "qwen3_moe_nonorm":
            # bf16 to keep testdata small: round in place, save as bf16, reference on the rounded weights
            with torch.no_grad():
                for prm in model.parameters():
                    prm.copy_(prm.to(torch.bfloat16).float())
            writer = hf_save(copy.deepcopy(model).to(torch.bfloat16))
            variant = "bf16, transformers save_pretrained (fused experts); norm_topk_prob false, tied embeddings"
        results[base_name] = write_fixture(out, base_name, None, writer, model, input_ids,
                                           dict(info, variant=variant))
        cfgd = base_config(out, base_name)
        if base_name != "qwen3_moe":
            continue
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}

        # bf16 (all floating tensors), reference on the rounded weights
        sd_bf = {k: (v.to(torch.bfloat16) if v.dtype.is_floating_point else v) for k, v in sd.items()}
        m_bf = load_saved_into(model, sd_bf)

        def w_bf16(d):
            save_tensors(os.path.join(d, "model.safetensors"), sd_bf)
        cfg_bf = with_dtype(cfgd, "bfloat16")
        results["qwen3_moe_bf16"] = write_fixture(out, "qwen3_moe_bf16", cfg_bf, w_bf16, m_bf, input_ids,
                                                  dict(info, variant="bf16 weights, HF names; reference on bf16-rounded weights"))

        # per-expert hub naming, bf16 (same weights and reference as qwen3_moe_bf16)
        def w_perexpert(d):
            t = {}
            for k, v in sd_bf.items():
                if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
                    continue
                t[k] = v
            for pre, gate, up, down in stacked_experts_from_fused(sd_bf, None):
                for e in range(gate.shape[0]):
                    t[f"{pre}experts.{e}.gate_proj.weight"] = gate[e].contiguous()
                    t[f"{pre}experts.{e}.up_proj.weight"] = up[e].contiguous()
                    t[f"{pre}experts.{e}.down_proj.weight"] = down[e].contiguous()
            save_tensors(os.path.join(d, "model.safetensors"), t)
        results["qwen3_moe_perexpert"] = write_fixture(
            out, "qwen3_moe_perexpert", cfg_bf, w_perexpert, m_bf, input_ids,
            dict(info, variant="bf16, Hugging Face hub per-expert names mlp.experts.<e>.{gate,up,down}_proj.weight"))

        # MLX stacked naming, bf16 (same weights as qwen3_moe_bf16)
        def w_stacked(d):
            t = {}
            for k, v in sd_bf.items():
                if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
                    continue
                t[k] = v
            for pre, gate, up, down in stacked_experts_from_fused(sd_bf, None):
                t[pre + "switch_mlp.gate_proj.weight"] = gate.contiguous()
                t[pre + "switch_mlp.up_proj.weight"] = up.contiguous()
                t[pre + "switch_mlp.down_proj.weight"] = down.contiguous()
            save_tensors(os.path.join(d, "model.safetensors"), t, {"format": "mlx"})
        results["qwen3_moe_stacked"] = write_fixture(out, "qwen3_moe_stacked", cfg_bf, w_stacked, m_bf, input_ids,
                                                     dict(info, variant="bf16, MLX stacked naming mlp.switch_mlp.*"))

        # MLX affine quantized variants
        for vname, bits, group in (("qwen3_moe_mlx4", 4, 64), ("qwen3_moe_mlx8", 8, 32)):
            t, deq_sd, qcfg, samples = mlx_quantize_model(sd, bits, group, qwen_router_override)
            m_q = load_saved_into(model, deq_sd)

            def w_q(d, t=t):
                save_tensors(os.path.join(d, "model.safetensors"), t, {"format": "mlx"})
            cfg_q = dict(cfgd, quantization=qcfg, quantization_config=qcfg)
            results[vname] = write_fixture(out, vname, cfg_q, w_q, m_q, input_ids,
                                           dict(info, variant=f"MLX affine {bits}-bit group {group}, routers 8-bit group 64, stacked naming"),
                                           dequant_samples=samples)
    return results


def qwen_router_override(name):
    if name.endswith("mlp.gate") or name.endswith("shared_expert_gate"):
        return {"group_size": 64, "bits": 8}
    return None


def mlx_quantize_model(sd, bits, group, override, prefix_fn=None):
    """Quantize an HF-named state dict the way mlx-lm does: every 2-D weight
    (Linear or embedding) whose input dim divides by the group size, and the
    fused experts split into stacked switch_mlp gate/up/down; everything else
    floating becomes bf16. Returns (tensors in MLX names, the dequantized HF
    state dict, the quantization config, dequant samples keyed by MLX name)."""
    out = {}
    deq_sd = dict(sd)
    qcfg = {"group_size": group, "bits": bits, "mode": "affine"}
    samples = {}
    rename = prefix_fn or (lambda k: k)

    def quant(mlx_base, w, q_bits, q_group, category):
        packed, s, b, deq = mlx_affine_quantize(w.float(), q_bits, q_group)
        out[mlx_base + ".weight"] = packed
        out[mlx_base + ".scales"] = s
        out[mlx_base + ".biases"] = b
        if category and not any(k.startswith(category + ":") for k in samples):
            samples[category + ":" + mlx_base] = deq
        return deq

    for k in sorted(sd):
        v = sd[k]
        if k.endswith("mlp.experts.gate_up_proj"):
            mpre = rename(k[: -len("experts.gate_up_proj")])
            gu = v.float()
            i = gu.shape[1] // 2
            dg = quant(mpre + "switch_mlp.gate_proj", gu[:, :i, :], bits, group, "experts")
            du = quant(mpre + "switch_mlp.up_proj", gu[:, i:, :], bits, group, None)
            deq_sd[k] = torch.cat([dg, du], dim=1)
            continue
        if k.endswith("mlp.experts.down_proj"):
            mpre = rename(k[: -len("experts.down_proj")])
            deq_sd[k] = quant(mpre + "switch_mlp.down_proj", v.float(), bits, group, None)
            continue
        if k.endswith(".weight") and v.dim() == 2 and v.dtype.is_floating_point:
            base = k[: -len(".weight")]
            ov = override(base) if override else None
            qb, qg = (ov["bits"], ov["group_size"]) if ov else (bits, group)
            if v.shape[-1] % qg == 0:
                cat = "embed" if "embed" in k else ("router" if ov else "linear")
                deq_sd[k] = quant(rename(base), v, qb, qg, cat)
                if ov:
                    qcfg[rename(base)] = {"group_size": qg, "bits": qb}
                continue
        if v.dtype.is_floating_point:
            out[rename(k)] = v.to(torch.bfloat16)
            deq_sd[k] = v.to(torch.bfloat16).float()
        else:
            out[rename(k)] = v
    samples = {k.split(":", 1)[1]: v for k, v in samples.items()}
    return out, deq_sd, qcfg, samples


# --------------------------------------------------------------------------
# qwen3_5_moe family

QWEN35_SHIFT = (".input_layernorm.weight", ".post_attention_layernorm.weight",
                "model.norm.weight", ".q_norm.weight", ".k_norm.weight")


def qwen35_mlx_name(k):
    if k.startswith("model.language_model."):
        return "language_model.model." + k[len("model.language_model."):]
    if k == "lm_head.weight":
        return "language_model.lm_head.weight"
    return "language_model." + k


def gen_qwen3_5_moe(out, only):
    results = {}
    name = "qwen3_5_moe"
    if only and not any(o.startswith(name) for o in only):
        return results
    log(f"== {name}")
    model, config, input_ids, seed, rm, _ = choose_seed("qwen3_5_moe", qwen3_5_moe_config(), 301)
    info = common_info("qwen3_5_moe", seed, rm, model)
    results[name] = write_fixture(out, name, None, hf_save(model), model, input_ids,
                                  dict(info, variant="f32, wrapped Qwen3_5MoeForConditionalGeneration with a tiny vision tower"))
    cfgd = base_config(out, name)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    text_sd = {k: v for k, v in sd.items() if not k.startswith("model.visual")}

    sd_bf = {k: (v.to(torch.bfloat16) if v.dtype.is_floating_point and not k.endswith("A_log") else v)
             for k, v in sd.items()}
    m_bf = load_saved_into(model, sd_bf)

    def w_bf(d):
        save_tensors(os.path.join(d, "model.safetensors"), sd_bf)
    cfg_bf = with_dtype(cfgd, "bfloat16")
    results["qwen3_5_moe_bf16"] = write_fixture(out, "qwen3_5_moe_bf16", cfg_bf, w_bf, m_bf, input_ids,
                                                dict(info, variant="bf16 (A_log kept f32), HF names"))

    # MLX conversions: language_model.model.*, switch_mlp, conv1d [C,K,1], (1+w) norms stored as w+1, no vision.
    def mlx_convert(src, quantize):
        t = {}
        deq = dict(src)
        rest = {}
        for k, v in src.items():
            if k.startswith("model.visual"):
                continue
            mk = qwen35_mlx_name(k)
            if k.endswith("conv1d.weight"):
                t[mk] = v.permute(0, 2, 1).contiguous().to(torch.bfloat16)  # [C,1,K] -> [C,K,1]
                deq[k] = v.to(torch.bfloat16).float()
            elif v.dim() == 1 and any(k.endswith(sfx) for sfx in QWEN35_SHIFT):
                shifted = (v.float() + 1.0).to(torch.bfloat16)
                t[mk] = shifted
                deq[k] = shifted.float() - 1.0
            elif k.endswith("A_log"):
                t[mk] = v.float()
                deq[k] = v.float()
            elif quantize:
                rest[k] = v
            elif k.endswith("experts.gate_up_proj"):
                pre = mk[: -len("experts.gate_up_proj")]
                i = v.shape[1] // 2
                vb = v.to(torch.bfloat16)
                t[pre + "switch_mlp.gate_proj.weight"] = vb[:, :i, :].contiguous()
                t[pre + "switch_mlp.up_proj.weight"] = vb[:, i:, :].contiguous()
                deq[k] = vb.float()
            elif k.endswith("experts.down_proj"):
                pre = mk[: -len("experts.down_proj")]
                t[pre + "switch_mlp.down_proj.weight"] = v.to(torch.bfloat16)
                deq[k] = v.to(torch.bfloat16).float()
            elif v.dtype.is_floating_point:
                t[mk] = v.to(torch.bfloat16)
                deq[k] = t[mk].float()
            else:
                t[mk] = v
        samples, qcfg = {}, None
        if quantize:
            qt, qdeq, qcfg, samples = mlx_quantize_model(rest, 4, 64, qwen_router_override,
                                                         prefix_fn=qwen35_mlx_name)
            t.update(qt)
            for k in rest:
                deq[k] = qdeq[k]
        return t, deq, qcfg, samples

    t, deq, _, _ = mlx_convert(sd, False)
    m_mlx = load_saved_into(model, deq)

    def w_mlx(d, t=t):
        save_tensors(os.path.join(d, "model.safetensors"), t, {"format": "mlx"})
    results["qwen3_5_moe_mlx"] = write_fixture(out, "qwen3_5_moe_mlx", cfg_bf, w_mlx, m_mlx, input_ids,
                                               dict(info, variant="bf16, MLX naming: language_model.model.*, switch_mlp, conv1d [C,K,1], (1+w) norms stored shifted, no vision, no mtp"))

    t, deq, qcfg, samples = mlx_convert(sd, True)
    m_q = load_saved_into(model, deq)

    def w_q(d, t=t):
        save_tensors(os.path.join(d, "model.safetensors"), t, {"format": "mlx"})
    cfg_q = dict(cfgd, quantization=qcfg, quantization_config=qcfg)
    results["qwen3_5_moe_mlx4"] = write_fixture(out, "qwen3_5_moe_mlx4", cfg_q, w_q, m_q, input_ids,
                                                dict(info, variant="MLX affine 4-bit g64 (mlp.gate, shared_expert_gate 8-bit g64), MLX naming as qwen3_5_moe_mlx"),
                                                dequant_samples=samples)
    return results


# --------------------------------------------------------------------------
# gpt_oss family

def gen_gpt_oss(out, only):
    results = {}
    name = "gpt_oss"
    if only and not any(o.startswith(name) for o in only):
        return results
    log(f"== {name}")
    model, config, input_ids, seed, rm, _ = choose_seed("gpt_oss", gpt_oss_config(), 401)
    info = common_info("gpt_oss", seed, rm, model)
    results[name] = write_fixture(out, name, None, hf_save(model), model, input_ids,
                                  dict(info, variant="f32, transformers save_pretrained (experts gate_up_proj [E,H,2I] in x out, interleaved gate/up)"))
    cfgd = base_config(out, name)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}

    sd_bf = {k: (v.to(torch.bfloat16) if v.dtype.is_floating_point else v) for k, v in sd.items()}
    m_bf = load_saved_into(model, sd_bf)

    def w_bf(d):
        save_tensors(os.path.join(d, "model.safetensors"), sd_bf)
    cfg_bf = with_dtype(cfgd, "bfloat16")
    results["gpt_oss_bf16"] = write_fixture(out, "gpt_oss_bf16", cfg_bf, w_bf, m_bf, input_ids,
                                            dict(info, variant="bf16, HF names"))

    # Original checkpoint form: MXFP4 *_blocks/*_scales (rows = output features), bf16 elsewhere.
    t = {}
    deq = {}
    samples = {}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
            rows_first = v.float().transpose(1, 2).contiguous()  # [E, out, in]
            codes, sc, dq = mxfp4_quantize(rows_first)
            E, R, C = rows_first.shape
            blocks = nibbles_to_bytes(codes).reshape(E, R, C // 32, 16)
            t[k + "_blocks"] = blocks
            t[k + "_scales"] = sc
            deq[k] = dq.transpose(1, 2).contiguous()
            if not samples:
                samples[k + "_blocks"] = dq  # [E, rows, in], rows = output features
        elif v.dtype.is_floating_point:
            t[k] = v.to(torch.bfloat16)
            deq[k] = t[k].float()
        else:
            t[k] = v
            deq[k] = v
    m_fp4 = load_saved_into(model, deq)

    def w_fp4(d, t=t):
        save_tensors(os.path.join(d, "model.safetensors"), t)
    cfg_fp4 = dict(cfg_bf, quantization_config={
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"]})
    results["gpt_oss_mxfp4"] = write_fixture(out, "gpt_oss_mxfp4", cfg_fp4, w_fp4, m_fp4, input_ids,
                                             dict(info, variant="original gpt-oss form: MXFP4 experts *_blocks [E,rows,in/32,16] + *_scales [E,rows,in/32] (e8m0), low nibble = even column, bf16 elsewhere; reference on dequantized weights"),
                                             dequant_samples=samples)

    # MLX community form: experts mxfp4 (uint32 weight, uint8 scales, split gate/up),
    # attention / router / embedding / lm_head affine 8-bit group 64.
    t2 = {}
    deq2 = dict(deq)
    qcfg = {"group_size": 64, "bits": 8, "mode": "affine"}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            rows = deq[k].transpose(1, 2)  # [E, 2I, H] dequantized from the MXFP4 above
            blocks = t[k + "_blocks"]
            scales = t[k + "_scales"]
            E, R = rows.shape[0], rows.shape[1]
            flat = blocks.reshape(E, R, -1)
            for part, sl in (("gate_proj", slice(0, R, 2)), ("up_proj", slice(1, R, 2))):
                t2[pre + part + ".weight"] = bytes_as_u32(flat[:, sl, :].contiguous())
                t2[pre + part + ".scales"] = scales[:, sl, :].contiguous()
                qcfg[pre + part] = {"group_size": 32, "bits": 4, "mode": "mxfp4"}
            b = sd[k + "_bias"].to(torch.bfloat16)
            t2[pre + "gate_proj.bias"] = b[:, 0::2].contiguous()
            t2[pre + "up_proj.bias"] = b[:, 1::2].contiguous()
            deq2[k + "_bias"] = b.float()
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            blocks = t[k + "_blocks"]
            E, R = blocks.shape[0], blocks.shape[1]
            t2[pre + "down_proj.weight"] = bytes_as_u32(blocks.reshape(E, R, -1).contiguous())
            t2[pre + "down_proj.scales"] = t[k + "_scales"]
            qcfg[pre + "down_proj"] = {"group_size": 32, "bits": 4, "mode": "mxfp4"}
            b = sd[k + "_bias"].to(torch.bfloat16)
            t2[pre + "down_proj.bias"] = b
            deq2[k + "_bias"] = b.float()
        elif k.endswith("_bias") and "experts" in k:
            continue
        elif k.endswith(".weight") and v.dim() == 2 and "norm" not in k and v.shape[-1] % 64 == 0:
            base = k[: -len(".weight")]
            packed, s, b, dq = mlx_affine_quantize(v.float(), 8, 64)
            t2[base + ".weight"] = packed
            t2[base + ".scales"] = s
            t2[base + ".biases"] = b
            deq2[k] = dq
        elif v.dtype.is_floating_point:
            t2[k] = v.to(torch.bfloat16)
            deq2[k] = t2[k].float()
        else:
            t2[k] = v
    m_mlx = load_saved_into(model, deq2)

    def w_mlx(d, t2=t2):
        save_tensors(os.path.join(d, "model.safetensors"), t2, {"format": "mlx"})
    cfg_mlx = dict(cfg_bf, quantization=qcfg, quantization_config=qcfg)
    results["gpt_oss_mlx"] = write_fixture(out, "gpt_oss_mlx", cfg_mlx, w_mlx, m_mlx, input_ids,
                                           dict(info, variant="MLX form: experts mxfp4 mode (uint32 weight, uint8 scales, gate/up split from even/odd rows, bias), other Linear + embedding affine 8-bit g64"))
    return results


# --------------------------------------------------------------------------
# gemma4 family

def gemma4_mlx_name(k):
    if k.startswith("model.language_model."):
        k = "language_model.model." + k[len("model.language_model."):]
    if k.endswith(".experts.down_proj"):
        return k[: -len(".experts.down_proj")] + ".experts.switch_glu.down_proj.weight"
    return k


def gen_gemma4(out, only):
    results = {}
    variants = (
        ("gemma4", gemma4_config(), 501),
        ("gemma4_ple", gemma4_config(text=dict(
            num_hidden_layers=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            attention_k_eq_v=False, hidden_size_per_layer_input=8, num_kv_shared_layers=2,
            moe_intermediate_size=32,
            num_global_key_value_heads=None, global_head_dim=32)), 601),
    )
    for name, cfg, seed0 in variants:
        if only and not any(o.startswith(name) for o in only):
            continue
        log(f"== {name}")
        model, config, input_ids, seed, rm, _ = choose_seed("gemma4", cfg, seed0)
        info = common_info("gemma4", seed, rm, model)
        results[name] = write_fixture(out, name, None, hf_save(model), model, input_ids,
                                      dict(info, variant="f32, wrapped Gemma4ForConditionalGeneration, MoE block on"))
        cfgd = base_config(out, name)
        if name != "gemma4":
            continue
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        t = {}
        deq = dict(sd)
        qcfg = {"group_size": 64, "bits": 4, "mode": "affine"}
        samples = {}
        for k, v in sd.items():
            if not k.startswith("model.language_model.") and k != "lm_head.weight":
                continue  # vision tower: not in the MLX text conversion
            if k == "lm_head.weight":
                continue  # tied
            mk = gemma4_mlx_name(k)
            if k.endswith(".experts.gate_up_proj"):
                pre = mk[: -len(".experts.gate_up_proj")] + ".experts.switch_glu."
                i = v.shape[1] // 2
                pg, sg, bg, dg = mlx_affine_quantize(v[:, :i, :].float(), 4, 64)
                pu, su, bu, du = mlx_affine_quantize(v[:, i:, :].float(), 4, 64)
                t[pre + "gate_proj.weight"], t[pre + "gate_proj.scales"], t[pre + "gate_proj.biases"] = pg, sg, bg
                t[pre + "up_proj.weight"], t[pre + "up_proj.scales"], t[pre + "up_proj.biases"] = pu, su, bu
                deq[k] = torch.cat([dg, du], dim=1)
                if not any("switch_glu" in x for x in samples):
                    samples[pre + "gate_proj"] = dg
            elif k.endswith(".experts.down_proj"):
                base = mk[: -len(".weight")]
                p, s, b, dq = mlx_affine_quantize(v.float(), 4, 64)
                t[base + ".weight"], t[base + ".scales"], t[base + ".biases"] = p, s, b
                deq[k] = dq
            elif k.endswith(".weight") and v.dim() == 2 and v.shape[-1] % 64 == 0 and "norm" not in k:
                base = mk[: -len(".weight")]
                bits = 8 if base.endswith("router.proj") else 4
                p, s, b, dq = mlx_affine_quantize(v.float(), bits, 64)
                t[base + ".weight"], t[base + ".scales"], t[base + ".biases"] = p, s, b
                deq[k] = dq
                if bits == 8:
                    qcfg[base] = {"group_size": 64, "bits": 8}
                if "embed_tokens" in k and not any("embed_tokens" in x for x in samples):
                    samples[base] = dq
            elif v.dtype.is_floating_point:
                t[mk] = v.to(torch.bfloat16)
                deq[k] = t[mk].float()
            else:
                t[mk] = v
        # keep vision weights in the reference model as they were (unused by text)
        if "lm_head.weight" in deq:
            deq["lm_head.weight"] = deq["model.language_model.embed_tokens.weight"]
        m_q = load_saved_into(model, deq)

        def w_q(d, t=t):
            save_tensors(os.path.join(d, "model.safetensors"), t, {"format": "mlx"})
        cfg_q = dict(cfgd, quantization=qcfg, quantization_config=qcfg)
        results["gemma4_mlx4"] = write_fixture(out, "gemma4_mlx4", cfg_q, w_q, m_q, input_ids,
                                               dict(info, variant="MLX affine 4-bit g64 (router.proj 8-bit), language_model.model.* names, experts.switch_glu.*, no vision tower, tied head"),
                                               dequant_samples=samples)
    return results


# --------------------------------------------------------------------------
# deepseek_v4

def gen_deepseek_v4(out, only):
    results = {}
    name = "deepseek_v4"
    if only and not any(o.startswith(name) for o in only):
        return results
    log(f"== {name}")
    model, config, input_ids, seed, rm, _ = choose_seed("deepseek_v4", deepseek_v4_config(), 701)
    info = common_info("deepseek_v4", seed, rm, model)
    results[name] = write_fixture(out, name, None, hf_save(model), model, input_ids,
                                  dict(info, variant="f32, transformers save_pretrained (HF names); all three attention layer kinds, hash and top-k MoE"))
    cfgd = base_config(out, name)
    return results


# --------------------------------------------------------------------------

GENERATORS = [gen_qwen3_moe, gen_qwen3_5_moe, gen_gpt_oss, gen_gemma4, gen_deepseek_v4]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated fixture name prefixes")
    args = ap.parse_args()
    only = [o for o in args.only.split(",") if o]
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    log(f"transformers {transformers.__version__}, torch {torch.__version__}")
    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "fixtures": {}, "errors": {}}
    t0 = time.time()
    for gen in GENERATORS:
        try:
            res = gen(args.out, only)
            for k, v in res.items():
                summary["fixtures"][k] = {kk: v[kk] for kk in ("bytes", "greedy_min_gap", "router_min_margin",
                                                                 "generate_matches_nocache", "seed", "variant") if kk in v}
        except Exception:
            tb = traceback.format_exc()
            log(tb)
            summary["errors"][gen.__name__] = tb[-4000:]
    summary["seconds"] = time.time() - t0
    with open(os.path.join(args.out, "models-summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    log("\n=== summary")
    total = 0
    for k, v in sorted(summary["fixtures"].items()):
        total += v.get("bytes", 0)
        log(f"{k:24s} {v.get('bytes', 0):>9d} B  gap {v.get('greedy_min_gap', 0):.3g}  router {v.get('router_min_margin')}  gen==nocache {v.get('generate_matches_nocache')}")
    log(f"total {total} bytes; errors: {list(summary['errors'])}")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
