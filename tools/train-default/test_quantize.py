"""Checks of quantize.py (the MoE's MLX affine 8-bit form) on a tiny state dict with the names and
layouts of transformers 5.x's Qwen3MoeForCausalLM. Needs torch and numpy; transformers is not
needed (tools/refgen/models.py imports it at module level: a stand-in module is used when it is
missing). python3 -m unittest discover -s tools/train-default -p 'test_*.py'"""

import json
import os
import sys
import tempfile
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import transformers  # noqa: F401
except ImportError:
    sys.modules["transformers"] = types.ModuleType("transformers")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import quantize as Q  # noqa: E402

V, H, E, I, L = 128, 64, 4, 64, 2


def tiny_state(seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    sd = {"model.embed_tokens.weight": r(V, H), "model.norm.weight": 1 + r(H)}
    for i in range(L):
        p = "model.layers.%d." % i
        sd.update({
            p + "input_layernorm.weight": 1 + r(H), p + "post_attention_layernorm.weight": 1 + r(H),
            p + "self_attn.q_proj.weight": r(64, H), p + "self_attn.k_proj.weight": r(32, H),
            p + "self_attn.v_proj.weight": r(32, H), p + "self_attn.o_proj.weight": r(H, 64),
            p + "self_attn.q_norm.weight": 1 + r(32), p + "self_attn.k_norm.weight": 1 + r(32),
            p + "mlp.gate.weight": r(E, H),
            p + "mlp.experts.gate_up_proj": r(E, 2 * I, H), p + "mlp.experts.down_proj": r(E, H, I),
        })
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]  # tied: state_dict() lists it twice
    return sd


class PackingTest(unittest.TestCase):
    def test_lsb_first(self):
        # formats.md 2.3: 4-bit values 1..8 pack to the word 0x87654321.
        words = Q.refgen.pack_bits(torch.arange(1, 9).reshape(1, 8), 4)
        self.assertEqual(int(words[0, 0]), 0x87654321)
        np.testing.assert_array_equal(Q.unpack(words, 4, 8), np.arange(1, 9).reshape(1, 8))
        words = Q.refgen.pack_bits(torch.tensor([[1, 2, 3, 250, 7, 8, 9, 10]]), 8)
        self.assertEqual([int(w) for w in words[0]], [0xFA030201, 0x0A090807])
        codes = torch.randint(0, 8, (3, 2, 64))
        np.testing.assert_array_equal(Q.unpack(Q.refgen.pack_bits(codes, 3), 3, 64), codes.numpy())


class QuantizeTest(unittest.TestCase):
    def setUp(self):
        self.sd = tiny_state()
        self.tensors, self.deq, self.qcfg = Q.quantize_state(self.sd)

    def test_names_dtypes_shapes(self):
        t = self.tensors
        self.assertNotIn("lm_head.weight", t)
        self.assertFalse(any(k.startswith("lm_head") for k in t))
        self.assertEqual(t["model.embed_tokens.weight"].dtype, np.uint32)
        self.assertEqual(list(t["model.embed_tokens.weight"].shape), [V, H // 4])
        self.assertEqual(list(t["model.embed_tokens.scales"].shape), [V, H // 64])
        self.assertEqual(t["model.embed_tokens.biases"].dtype, torch.bfloat16)
        p = "model.layers.1.mlp."
        self.assertEqual(list(t[p + "switch_mlp.gate_proj.weight"].shape), [E, I, H // 4])
        self.assertEqual(list(t[p + "switch_mlp.up_proj.weight"].shape), [E, I, H // 4])
        self.assertEqual(list(t[p + "switch_mlp.down_proj.weight"].shape), [E, H, I // 4])
        self.assertEqual(list(t[p + "switch_mlp.down_proj.scales"].shape), [E, H, 1])
        self.assertEqual(list(t[p + "gate.weight"].shape), [E, H // 4])
        self.assertNotIn(p + "experts.gate_up_proj", t)
        for k in ("model.norm.weight", "model.layers.0.self_attn.q_norm.weight"):
            self.assertEqual(t[k].dtype, torch.bfloat16)
            self.assertNotIn(k[: -len(".weight")] + ".scales", t)
        self.assertEqual(self.qcfg["bits"], 8)
        self.assertEqual(self.qcfg["group_size"], 64)
        self.assertEqual(self.qcfg["mode"], "affine")
        self.assertEqual(self.qcfg["model.layers.0.mlp.gate"], {"group_size": 64, "bits": 8})
        self.assertEqual(sorted(k for k in self.qcfg if k.startswith("model.")),
                         ["model.layers.%d.mlp.gate" % i for i in range(L)])

    def test_dequantized_values(self):
        # Each value within a few steps (max - min) / 255 of its group: half a step of rounding, up
        # to 0.75 more where MLX's rule (zero exactly representable) clamps the far end, plus the
        # bf16 rounding of the scale (up to 255 times 2^-9 of it) and of the bias.
        for k, w in self.sd.items():
            if k == "lm_head.weight":
                continue
            d = self.deq[k]
            self.assertEqual(d.shape, w.shape, k)
            if w.dim() == 1:
                self.assertTrue(torch.equal(d, w.to(torch.bfloat16).float()), k)
                continue
            g = w.reshape(-1, 64)
            step = (g.max(-1).values - g.min(-1).values) / 255
            err = (d.reshape(-1, 64) - g).abs().max(-1).values
            self.assertTrue(bool((err <= 2.5 * step + 1e-7).all()), k)
        e = Q.errors(self.sd, self.deq)
        self.assertEqual(sorted(e), ["attention", "embedding", "experts", "router"])
        self.assertTrue(all(0 < x < 0.01 for x in e.values()), e)

    def test_write_and_read_back(self):
        with tempfile.TemporaryDirectory() as d:
            hf = {"model_type": "qwen3_moe", "tie_word_embeddings": True, "dtype": "bfloat16", "num_experts": E}
            open(os.path.join(d, "model.safetensors"), "wb").write(b"stale")
            names = Q.write(d, self.tensors, hf, self.qcfg)
            self.assertEqual(names, sorted(self.tensors))
            cfg = json.load(open(os.path.join(d, "config.json")))
            self.assertEqual(cfg["quantization"], cfg["quantization_config"])
            self.assertEqual(cfg["quantization"]["model.layers.1.mlp.gate"], {"group_size": 64, "bits": 8})
            self.assertEqual(cfg["model_type"], "qwen3_moe")
            back = Q.read_dequantized(d)
            self.assertEqual(Q.compare(self.deq, back), {"only_first": [], "only_second": [], "differ": []})
            idx = Q.index(os.path.join(d, "model.safetensors"))
            self.assertEqual(idx["model.layers.0.mlp.switch_mlp.gate_proj.weight"],
                             {"dtype": "U32", "shape": [E, I, H // 4]})
            self.assertEqual(idx["model.norm.weight"]["dtype"], "BF16")
            with open(os.path.join(d, "model.safetensors"), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                self.assertEqual((8 + n) % 8, 0)
                self.assertEqual(json.loads(f.read(n))["__metadata__"], {"format": "mlx"})
            # A changed code is noticed.
            self.tensors["model.embed_tokens.weight"][0, 0] ^= 1
            Q.write(d, self.tensors, hf, self.qcfg)
            self.assertEqual(Q.compare(self.deq, Q.read_dequantized(d))["differ"], ["model.embed_tokens.weight"])

    def test_untied_head_must_match(self):
        sd = dict(self.sd)
        sd["lm_head.weight"] = sd["lm_head.weight"] + 1
        with self.assertRaises(RuntimeError):
            Q.quantize_state(sd)

    def test_storage_summary(self):
        s = Q.storage_summary(self.tensors)
        self.assertEqual(s["tensors"], len(self.tensors))
        n_quant = V * H + L * (64 * H + 2 * 32 * H + H * 64 + E * H + E * 2 * I * H + E * H * I)
        self.assertEqual(s["codes"], n_quant)
        self.assertEqual(s["scales_biases"], n_quant // 64 * 4)


if __name__ == "__main__":
    unittest.main()
