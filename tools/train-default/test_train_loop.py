"""Checks of train.py's torch parts on the CPU with a stub model in place of transformers':
the training loop (schedule, evaluation, early stopping, deadline, checkpoints), the router
monitor (load-balancing loss and usage counts), the sweep, windows scoring and packaging.
Needs torch (any version >= 1.13); transformers and tokenizers are not needed.
    python3 -m unittest discover -s tools/train-default -p 'test_*.py'"""

import io
import math
import os
import sys
import tarfile
import tempfile
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import recipe  # noqa: E402
import train  # noqa: E402

V, H, E, K = 32, 16, 4, 2


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(E, H) * 0.1)

    def forward(self, x):  # returns something else than logits on purpose: the monitor must not rely on it
        return F.linear(x, self.weight).softmax(-1), None


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Module()
        self.mlp.gate = Gate()
        self.mlp.experts = nn.Parameter(torch.randn(E, H, H) * 0.1)

    def forward(self, h):
        shp = h.shape
        x = h.reshape(-1, H)
        probs, _ = self.mlp.gate(x)
        w, idx = probs.topk(K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.einsum("th,tkhj->tkj", x, self.mlp.experts[idx])
        return h + (out * w[..., None]).sum(1).reshape(shp)


class StubLM(nn.Module):
    """Embedding -> MoE blocks -> tied head; no attention (a bigram model with routing)."""

    def __init__(self, layers=2):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(V, H)
        self.model.layers = nn.ModuleList([Block() for _ in range(layers)])

    def forward(self, input_ids, use_cache=False):
        h = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            h = layer(h)
        return types.SimpleNamespace(logits=h @ self.model.embed_tokens.weight.t())


def cyclic_stream(n):
    return torch.tensor([(i * 7) % V for i in range(n)], dtype=torch.int64)


def hp(**kw):
    h = dict(recipe.TRAIN_DEFAULTS)
    h.update(seq_len=16, batch_size=4, warmup_steps=3, evals_per_epoch=2, patience=3, seed=7)
    h.update(kw)
    return h


CFG = {"num_experts": E, "num_experts_per_tok": K, "num_hidden_layers": 2}


class TrainLoopTest(unittest.TestCase):
    def setUp(self):
        self._new_model = train.new_model
        train.new_model = lambda kind, cfg, device, impl: (StubLM(cfg["num_hidden_layers"]).to(device), "stub")
        train.log = lambda msg: None

    def tearDown(self):
        train.new_model = self._new_model

    def test_sweep_learns_saves_and_reports(self):
        torch.manual_seed(0)
        stream = cyclic_stream(4000)
        val = train.fixed_windows(cyclic_stream(600), 16)
        saves = []
        best, runs = train.sweep("moe", CFG, stream, val, [1, 2], 1e-2, hp(), torch.device("cpu"), 60.0, "eager",
                                 lambda state, v: saves.append((sorted(state)[:1], v)))
        self.assertTrue(saves, "no checkpoint was saved")
        self.assertEqual(saves[-1][1], best["best_val_loss"])
        self.assertLess(best["best_val_loss"], math.log(V) - 1.0)  # learned the cycle
        self.assertIn(len(runs), (1, 2))
        r = runs[0]
        self.assertEqual(r["steps_per_epoch"], ((4000 - 1 - 16) // 16) // 4)
        self.assertTrue(r["curve"] and all("val_ppl" in c for c in r["curve"]))
        self.assertEqual(r["params"], sum(p.numel() for p in StubLM().parameters()))
        self.assertIsNone(next((x for x in runs if x is not best), {}).get("best_state"))

    def test_deadline_in_the_past_stops_at_once(self):
        m = StubLM()
        r = train.train_run("t", m, None, cyclic_stream(2000), train.fixed_windows(cyclic_stream(200), 16), 1,
                            1e-2, hp(), torch.device("cpu"), time.time() - 1)
        self.assertEqual(r["steps"], 0)
        self.assertEqual(r["stop"], "time budget")
        self.assertIsNone(r["best_state"])

    def test_short_deadline_ends_in_time(self):
        m = StubLM()
        t = time.time()
        r = train.train_run("t", m, None, cyclic_stream(20000), train.fixed_windows(cyclic_stream(200), 16), 50,
                            1e-2, hp(), torch.device("cpu"), time.time() + 1.5)
        self.assertLess(time.time() - t, 4.0)
        self.assertLess(r["steps"], r["steps_planned"])
        # The schedule was shortened to what fits (so the cosine decay completes), unless the
        # machine slowed down after the measurement, when the deadline ends it.
        self.assertLess(r["steps_scheduled"], r["steps_planned"])
        if r["stop"] != "time budget":
            self.assertEqual(r["stop"], "schedule done (shortened to fit the budget)")
            self.assertEqual(r["steps"], r["steps_scheduled"])

    def test_early_stopping(self):
        m = StubLM()
        # lr 0: nothing improves after the first evaluation.
        r = train.train_run("t", m, None, cyclic_stream(4000), train.fixed_windows(cyclic_stream(200), 16), 5,
                            0.0, hp(warmup_steps=1), torch.device("cpu"), time.time() + 60)
        self.assertTrue(r["stop"].startswith("early stop"), r["stop"])
        self.assertEqual(len(r["curve"]), 1 + hp()["patience"])

    def test_router_monitor(self):
        m = StubLM()
        mon = train.RouterMonitor(m, E, K)
        self.assertEqual(len(mon.handles), 2)
        mon.enabled = True
        m(torch.randint(0, V, (3, 10)))
        aux, z = mon.losses()
        # Balanced routing gives aux = 1; it is >= 1 up to noise and differentiable.
        self.assertGreater(float(aux), 0.9)
        aux.backward()
        self.assertIsNotNone(m.model.layers[0].mlp.gate.weight.grad)
        mon.enabled = False
        mon.start_counting()
        with torch.no_grad():
            m(torch.randint(0, V, (2, 5)))
        u = mon.usage()
        self.assertEqual([x["assignments"] for x in u], [10 * K, 10 * K])
        self.assertAlmostEqual(sum(u[0]["share"]), 1.0, places=4)
        mon.remove()
        self.assertEqual(mon.handles, [])

    def test_window_nll_matches_direct_computation(self):
        m = StubLM().eval()
        w = [{"doc": "d", "start": 0, "ids": [1, 2, 3, 4, 5]}, {"doc": "d", "start": 5, "ids": [6, 7]}]
        got = train.window_nll(m, w, torch.device("cpu"))
        self.assertEqual([g["count"] for g in got], [4, 1])
        with torch.no_grad():
            logits = m(torch.tensor([[1, 2, 3, 4, 5]])).logits[0]
        want = -sum(float(torch.log_softmax(logits[t], -1)[t + 2]) for t in range(4))
        self.assertAlmostEqual(got[0]["nll_sum"], want, places=4)

    def test_stream_and_windows(self):
        s = train.make_stream([[1, 2], [3]], 9)
        self.assertEqual(s.tolist(), [1, 2, 9, 3, 9])
        w = train.fixed_windows(torch.arange(10), 3)
        self.assertEqual(w.tolist(), [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])


I = 8


class FusedExperts(nn.Module):
    """The transformers 5.x experts layout with its per-expert loop (gate = first half)."""

    def __init__(self, swapped=False):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.randn(E, 2 * I, H) * 0.3)
        self.down_proj = nn.Parameter(torch.randn(E, H, I) * 0.3)
        self.act_fn = F.silu
        self.swapped = swapped

    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        for e in range(E):
            pos, tok = torch.where(top_k_index.t() == e)
            if tok.numel() == 0:
                continue
            gate, up = F.linear(hidden_states[tok], self.gate_up_proj[e]).chunk(2, dim=-1)
            if self.swapped:  # a layout the dense forward does not implement
                gate, up = up, gate
            y = F.linear(self.act_fn(gate) * up, self.down_proj[e]) * top_k_weights[tok, pos, None]
            out.index_add_(0, tok, y)
        return out


class MoEBlock(nn.Module):
    def __init__(self, swapped=False):
        super().__init__()
        self.gate = nn.Linear(H, E, bias=False)
        self.experts = FusedExperts(swapped)

    def forward(self, h):
        x = h.reshape(-1, H)
        logits = self.gate(x)
        w, idx = logits.softmax(-1).topk(K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        return self.experts(x, idx, w).reshape(h.shape), logits


def fused_model(swapped=False):
    m = nn.Module()
    m.model = nn.Module()
    m.model.layers = nn.ModuleList()
    for _ in range(2):
        layer = nn.Module()
        layer.mlp = MoEBlock(swapped)
        m.model.layers.append(layer)
    return m


class DenseExpertsTest(unittest.TestCase):
    def test_dense_forward_and_gradients_match_the_loop(self):
        torch.manual_seed(1)
        ref = fused_model()
        dense = fused_model()
        dense.load_state_dict(ref.state_dict())
        ok, detail = train.use_dense_experts(dense, {"num_hidden_layers": 2, "hidden_size": H}, torch.device("cpu"))
        self.assertTrue(ok, detail)
        self.assertIn("forward", dense.model.layers[1].mlp.experts.__dict__)
        x = torch.randn(3, 7, H)
        ya, _ = ref.model.layers[0].mlp(x)
        yb, _ = dense.model.layers[0].mlp(x)
        self.assertLess(float((ya - yb).abs().max()), 1e-5)
        (ya ** 2).sum().backward()
        (yb ** 2).sum().backward()
        pairs = [(getattr(ref.model.layers[0].mlp.experts, n).grad, getattr(dense.model.layers[0].mlp.experts, n).grad)
                 for n in ("gate_up_proj", "down_proj")]
        pairs.append((ref.model.layers[0].mlp.gate.weight.grad, dense.model.layers[0].mlp.gate.weight.grad))
        for ga, gb in pairs:
            self.assertLess(float((ga - gb).norm() / ga.norm()), 1e-5)

    def test_a_different_layout_is_rejected(self):
        torch.manual_seed(1)
        m = fused_model(swapped=True)
        ok, detail = train.use_dense_experts(m, {"num_hidden_layers": 2, "hidden_size": H}, torch.device("cpu"))
        self.assertFalse(ok)
        self.assertIn("rejected", detail)
        self.assertNotIn("forward", m.model.layers[0].mlp.experts.__dict__)

    def test_missing_modules_are_reported(self):
        ok, detail = train.use_dense_experts(StubLM(), {"num_hidden_layers": 2, "hidden_size": H}, torch.device("cpu"))
        self.assertFalse(ok)
        self.assertIn("found 0", detail)


class PackTest(unittest.TestCase):
    def test_pack_is_deterministic_and_split(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "pkg")
            os.makedirs(os.path.join(src, "default", "draft"))
            for rel, data in (("default/a.json", b"{}"), ("default/draft/b.bin", os.urandom(3000)),
                              ("reference/reference.json", b"[]")):
                os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
                with open(os.path.join(src, rel), "wb") as f:
                    f.write(data)
            a = train.pack_dir(src)
            time.sleep(1.1)
            self.assertEqual(a, train.pack_dir(src))
            with tarfile.open(fileobj=io.BytesIO(a), mode="r:gz") as t:
                names = t.getnames()
            self.assertEqual(names, ["default", "default/a.json", "default/draft", "default/draft/b.bin",
                                     "reference", "reference/reference.json"])
            out = os.path.join(d, "out")
            os.makedirs(out)
            with open(os.path.join(out, "x.part-zz"), "w") as f:
                f.write("stale")
            old = recipe.PART_BYTES
            try:
                recipe.PART_BYTES = 1000
                names = train.write_parts(a, out, "x")
            finally:
                recipe.PART_BYTES = old
            self.assertEqual(sorted(os.listdir(out)), names)
            joined = b""
            for n in names:
                with open(os.path.join(out, n), "rb") as f:
                    joined += f.read()
            self.assertEqual(joined, a)


if __name__ == "__main__":
    unittest.main()
