"""The default model's weights in MLX affine 8-bit form, as mlx-lm's convert writes them.

quantize_state() takes the float state dict of Qwen3MoeForCausalLM as transformers 5.x holds it in
memory (fused experts: `mlp.experts.gate_up_proj` [E, 2I, H] with gate first, `down_proj`
[E, H, I]) and quantizes it with tools/refgen/models.py's mlx_quantize_model (the quantizer and
naming that mach's qwen3_moe_mlx4/mlx8 fixtures were written with): every 2-D weight, the
embedding included, becomes `.weight` (uint32, codes packed least-significant bits first) +
`.scales` + `.biases` (bf16), the routers `mlp.gate` at 8 bits group 64 with their own entry in the
quantization block (mlx-lm's qwen3_moe predicate), the experts stacked as
`mlp.switch_mlp.{gate,up,down}_proj` [E, out, in]; norms stay bf16. The tied output head is the
embedding (no lm_head tensor).

read_dequantized() reads such a file back with a reader of its own (numpy only) and returns the
float32 state dict in transformers' in-memory names, dequantized from the stored codes, scales and
biases (w = scale * q + bias in float32): the weights the reference is computed on. train.py checks
that it equals what the quantizer returned, value for value.

Needs torch and numpy; transformers only through tools/refgen/models.py's module-level import.
"""

import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "refgen"))
import models as refgen  # noqa: E402  tools/refgen/models.py

sys.path.insert(0, HERE)
import recipe  # noqa: E402

BITS = recipe.QUANT_BITS
GROUP_SIZE = recipe.QUANT_GROUP_SIZE
FORMAT = "MLX affine %d-bit, group size %d" % (BITS, GROUP_SIZE)


def quantize_state(state, tied=True, bits=BITS, group=GROUP_SIZE):
    """(tensors in MLX names, dequantized float32 state dict in transformers' names, quantization
    block for config.json). A tied lm_head.weight in state must be the embedding; it is left out."""
    sd = {}
    for k, v in state.items():
        if k == "lm_head.weight" and tied:
            emb = state["model.embed_tokens.weight"]
            if v.data_ptr() != emb.data_ptr() and not torch.equal(v, emb):
                raise RuntimeError("tie_word_embeddings but lm_head.weight differs from the embedding")
            continue
        sd[k] = v.detach().to("cpu", torch.float32) if v.dtype.is_floating_point else v.detach().cpu()
    tensors, deq, qcfg, _ = refgen.mlx_quantize_model(sd, bits, group, refgen.qwen_router_override)
    if any(k.startswith("lm_head") for k in tensors):
        raise RuntimeError("an lm_head tensor in a tied model")
    return tensors, deq, qcfg


def write(model_dir, tensors, hf_config_dict, qcfg, dtype="bfloat16"):
    """model.safetensors (metadata format mlx, tensors in name order) and config.json: the
    transformers config with dtype and the quantization block twice (`quantization` and
    `quantization_config`, as mlx-lm writes it). Removes other weight files. Returns the names."""
    for f in os.listdir(model_dir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(model_dir, f))
    refgen.save_tensors(os.path.join(model_dir, "model.safetensors"), tensors, {"format": "mlx"})
    cfg = dict(hf_config_dict)
    cfg.pop("torch_dtype", None)
    cfg["dtype"] = dtype
    cfg["quantization"] = dict(qcfg)
    cfg["quantization_config"] = dict(qcfg)
    with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return sorted(tensors)


# ---------------------------------------------------------------------------------------------
# Reading back

_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "U32": np.uint32, "U8": np.uint8,
       "I64": np.int64, "I32": np.int32, "BF16": np.uint16}


def read_safetensors(path):
    """{name: (dtype string, numpy array)}; BF16 comes back as its uint16 bit patterns."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=np.dtype(_NP[info["dtype"]]).newbyteorder("<"))
        out[name] = (info["dtype"], arr.reshape(info["shape"]))
    return out


def _float32(dtype, arr):
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def unpack(words, bits, cols):
    """uint32 [..., cols*bits/32] -> integer codes [..., cols], LSB-first bit stream per row."""
    lead = words.shape[:-1]
    b = np.ascontiguousarray(words).astype("<u4").view(np.uint8).reshape(-1, words.shape[-1] * 4)
    bitstream = np.unpackbits(b, axis=1, bitorder="little")[:, : cols * bits].reshape(-1, cols, bits)
    codes = (bitstream.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(-1)
    return codes.reshape(*lead, cols)


def dequantize(words, scales, biases, bits, group):
    """float32 [..., in]: scale * q + bias per group, from the stored (bf16) scales and biases."""
    cols = words.shape[-1] * 32 // bits
    q = unpack(words, bits, cols).astype(np.float32)
    ng = cols // group
    q = q.reshape(*q.shape[:-1], ng, group)
    w = scales[..., None] * q            # float32 product, then the float32 sum, as the quantizer did
    w = w + biases[..., None]
    return w.reshape(*w.shape[:-2], cols).astype(np.float32)


def read_dequantized(model_dir):
    """The float32 state dict (transformers' in-memory names, fused experts) of an MLX checkpoint."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        qc = json.load(f)["quantization"]
    t = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    flat = {}
    for name, (dt, arr) in t.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        base = name[: -len(".weight")] if name.endswith(".weight") else None
        if base is not None and base + ".scales" in t:
            ov = qc.get(base)
            bits = ov["bits"] if isinstance(ov, dict) else qc["bits"]
            group = ov["group_size"] if isinstance(ov, dict) else qc["group_size"]
            if dt != "U32":
                raise RuntimeError("%s: quantized weight of dtype %s" % (name, dt))
            s = _float32(*t[base + ".scales"])
            b = _float32(*t[base + ".biases"])
            flat[name] = dequantize(arr, s, b, bits, group)
        else:
            flat[name] = _float32(dt, arr)
    out = {}
    for name, arr in flat.items():
        if ".switch_mlp." in name:
            pre, rest = name.split("switch_mlp.", 1)
            if rest == "gate_proj.weight":
                up = flat[pre + "switch_mlp.up_proj.weight"]
                out[pre + "experts.gate_up_proj"] = torch.from_numpy(np.concatenate([arr, up], axis=1))
            elif rest == "down_proj.weight":
                out[pre + "experts.down_proj"] = torch.from_numpy(arr.copy())
            elif rest != "up_proj.weight":
                raise RuntimeError("unexpected tensor %s" % name)
            continue
        out[name] = torch.from_numpy(arr.copy())
    return out


def index(path):
    """{name: {"dtype", "shape"}} from a safetensors header (names sorted)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in sorted(header.items()) if k != "__metadata__"}


def errors(state, deq):
    """Relative Frobenius error ||deq - w|| / ||w|| of the quantized weights, by kind."""
    acc = {}
    for k, w in state.items():
        if k not in deq or not w.dtype.is_floating_point or w.dim() < 2:
            continue
        kind = ("embedding" if "embed_tokens" in k else "router" if k.endswith("mlp.gate.weight")
                else "experts" if ".experts." in k else "attention")
        d = (deq[k].float() - w.float()).pow(2).sum().item()
        n = w.float().pow(2).sum().item()
        a = acc.setdefault(kind, [0.0, 0.0])
        a[0] += d
        a[1] += n
    return {k: round((v[0] / v[1]) ** 0.5, 6) for k, v in sorted(acc.items()) if v[1] > 0}


def compare(a, b):
    """Names missing on either side and the names whose values differ (bit for bit)."""
    ka, kb = set(a), set(b)
    differ = sorted(k for k in ka & kb if a[k].shape != b[k].shape or not torch.equal(a[k].float(), b[k].float()))
    return {"only_first": sorted(ka - kb), "only_second": sorted(kb - ka), "differ": differ}


def storage_summary(tensors):
    """Bytes by kind and the tensor count of an MLX tensor dict."""
    by = {"codes": 0, "scales_biases": 0, "other": 0}
    for k, v in tensors.items():
        n = v.nbytes if isinstance(v, np.ndarray) else v.numel() * v.element_size()
        if k.endswith(".scales") or k.endswith(".biases"):
            by["scales_biases"] += n
        elif isinstance(v, np.ndarray) and v.dtype == np.uint32:
            by["codes"] += n
        else:
            by["other"] += n
    by["tensors"] = len(tensors)
    return by
