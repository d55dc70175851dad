"""Checks of the torch-free parts: recipe shapes and budget, windows, schedule, packaging names,
model card, chat template, and the corpus clean-up. Run with any python3 (jinja2 needed for the
template test): python3 -m unittest discover -s tools/train-default -p 'test_*.py'"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import card  # noqa: E402
import prepare_corpus as pc  # noqa: E402
import recipe  # noqa: E402


class RecipeTest(unittest.TestCase):
    def test_param_counts_by_hand(self):
        cfg = recipe.moe_config()
        h, L, E, V = 256, 8, 24, 8192
        attn = h * 4 * 64 + 2 * h * 2 * 64 + 4 * 64 * h + 2 * 64
        layer = attn + 2 * h + E * 3 * h * 64 + E * h
        want = V * h + L * layer + h
        got = recipe.count_params(cfg, True)
        self.assertEqual(got["total"], want)
        self.assertEqual(got["active"], V * h + L * (attn + 2 * h + 4 * 3 * h * 64 + E * h) + h)
        self.assertTrue(12e6 <= got["total"] <= 14e6, got["total"])  # the 12-14 M asked for
        d = recipe.count_params(recipe.draft_config(), False)
        dl = 128 * 2 * 64 + 2 * 128 * 64 + 2 * 64 * 128 + 2 * 64 + 2 * 128 + 3 * 128 * 256
        self.assertEqual(d["total"], V * 128 + 2 * dl + 128)

    def test_shapes_meet_the_brief(self):
        cfg = recipe.moe_config()
        self.assertGreaterEqual(cfg["num_experts"], 16)
        self.assertIn(cfg["num_experts_per_tok"], (2, 4))
        self.assertTrue(6 <= cfg["num_hidden_layers"] <= 8)
        self.assertTrue(cfg["tie_word_embeddings"] and cfg["norm_topk_prob"])
        self.assertTrue(8000 <= recipe.VOCAB_SIZE <= 16384)
        self.assertEqual(cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"])
        d = recipe.draft_config()
        self.assertTrue(2 <= d["num_hidden_layers"] <= 4)

    def test_size_budget(self):
        # 8-bit MoE + bf16 draft + a generous allowance for tokenizer and small files.
        self.assertAlmostEqual(recipe.quantized_bytes_per_param(8, 64), 1.0625)
        self.assertLess(recipe.size_estimate(tokenizer_bytes=700_000, other_bytes=300_000),
                        recipe.SIZE_BUDGET_BYTES)
        # Every input dimension of the MoE divides by the group size (mlx-lm would leave such a
        # layer unquantized), the smoke shapes included.
        for smoke in (False, True):
            c = recipe.moe_config(smoke=smoke)
            for dim in (c["hidden_size"], c["num_attention_heads"] * c["head_dim"], c["moe_intermediate_size"]):
                self.assertEqual(dim % recipe.QUANT_GROUP_SIZE, 0, (smoke, dim))

    def test_dumps_compact(self):
        obj = {"a": [1, 2, 3], "b": {"c": [{"d": [0.5, "x"]}], "e": []}, "f": "é", "g": None}
        text = recipe.dumps_compact(obj)
        self.assertEqual(json.loads(text), obj)
        self.assertIn('"a": [1,2,3]', text)
        self.assertIn('"f": "é"', text)
        self.assertEqual(recipe.dumps_compact({}), "{}")

    def test_special_ids_follow_the_bpe_vocabulary(self):
        ids = recipe.special_ids()
        self.assertEqual(ids["<|endoftext|>"], recipe.BPE_VOCAB)
        self.assertEqual(ids["<|pad|>"], recipe.VOCAB_SIZE - 1)
        tc = recipe.tokenizer_config()
        self.assertIsNone(tc["bos_token"])
        self.assertFalse(tc["add_bos_token"])
        self.assertEqual(tc["eos_token"], "<|im_end|>")
        self.assertEqual(sorted(int(k) for k in tc["added_tokens_decoder"]), sorted(ids.values()))
        g = recipe.generation_config()
        self.assertEqual(g["eos_token_id"], [ids["<|im_end|>"], ids["<|endoftext|>"]])

    def test_tokenizer_json_fixups(self):
        d = recipe.tokenizer_json_fixups({"model": {"type": "BPE"}, "decoder": {"type": "ByteLevel", "add_prefix_space": True}})
        self.assertEqual(d["decoder"], {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False})
        self.assertEqual(d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], recipe.SPLIT_PATTERN)
        self.assertEqual(d["model"], {"type": "BPE"})

    def test_eval_windows(self):
        docs = [("a", list(range(10))), ("b", [1]), ("c", list(range(5)))]
        w = recipe.eval_windows(docs, window=4)
        self.assertEqual([(x["doc"], x["start"], len(x["ids"])) for x in w],
                         [("a", 0, 4), ("a", 4, 4), ("a", 8, 2), ("c", 0, 4)])  # c's last window has 1 token
        self.assertEqual(len(recipe.eval_windows(docs, window=4, max_windows=2)), 2)
        self.assertAlmostEqual(recipe.perplexity(0.0, 10), 1.0)

    def test_lr_schedule(self):
        self.assertAlmostEqual(recipe.lr_at(0, 100, 1.0, 10, 0.1), 0.1)
        self.assertAlmostEqual(recipe.lr_at(9, 100, 1.0, 10, 0.1), 1.0)
        self.assertAlmostEqual(recipe.lr_at(10, 100, 1.0, 10, 0.1), 1.0)
        self.assertAlmostEqual(recipe.lr_at(100, 100, 1.0, 10, 0.1), 0.1)
        mid = recipe.lr_at(55, 100, 1.0, 10, 0.1)
        self.assertAlmostEqual(mid, 0.55)

    def test_plan_runs(self):
        self.assertEqual(recipe.plan_runs([3, 6, 12], 10.0, 200), [3, 6])
        self.assertEqual(recipe.plan_runs([3, 6, 12], 100.0, 10), [3])

    def test_parts(self):
        self.assertEqual(recipe.part_names("x.tar.gz", 3), ["x.tar.gz.part-aa", "x.tar.gz.part-ab", "x.tar.gz.part-ac"])
        data = bytes(range(256)) * 10
        parts = recipe.split_bytes(data, 1000)
        self.assertEqual([len(p) for p in parts], [1000, 1000, 560])
        self.assertEqual(b"".join(parts), data)

    def test_fill_template(self):
        out, missing = recipe.fill_template("a ${x} b ${y} ${x}", {"x": 1, "y": None})
        self.assertEqual(out, "a 1 b n/a 1")
        self.assertEqual(missing, ["y"])


class ChatTemplateTest(unittest.TestCase):
    def test_jinja_matches_python(self):
        import jinja2.sandbox  # transformers renders with jinja2 (sandboxed, trim_blocks, lstrip_blocks)
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        t = env.from_string(recipe.CHAT_TEMPLATE)
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is x?\nSay."},
                {"role": "assistant", "content": "A thing."}, {"role": "user", "content": "More?"}]
        for gen in (True, False):
            self.assertEqual(t.render(messages=msgs, add_generation_prompt=gen), recipe.render_chatml(msgs, gen))
        # The training chats are exactly the template's rendering of a user/assistant pair.
        q, a = "What does x() do?", "``x()``\n\nIt does."
        self.assertEqual(pc.chat_text(q, a), recipe.render_chatml(
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}], False))


RST = """:mod:`copy` --- Shallow and deep copy operations
================================================

.. module:: copy
   :synopsis: Shallow and deep copy operations.

.. moduleauthor:: Someone

**Source code:** :source:`Lib/copy.py`

--------------

.. index:: module: pickle

Assignment statements do not copy objects; see :func:`deepcopy`, the
:ref:`reference manual <datamodel>` and `the site <https://example.org/>`_.

.. function:: deepcopy(x[, memo])

   Return a deep copy of *x*.
   See :pep:`8` and :class:`~collections.OrderedDict`.

.. class:: Copier(a)

   A copier object that copies objects.

   .. method:: run(y)

      Run the copier on *y* and return the result.

.. This is a comment
   that spans two lines.

.. _target-label:

Trailing text with |version|.
"""


class CorpusTest(unittest.TestCase):
    def test_clean_lines(self):
        text = pc.clean_lines(pc.normalize(RST), "3.11", "3.11.2")
        self.assertIn("``copy`` --- Shallow and deep copy operations", text)
        self.assertIn("see ``deepcopy()``, the\nreference manual and the site.", text)
        self.assertIn("See PEP 8 and ``OrderedDict``.", text)
        self.assertIn("Trailing text with 3.11.", text)
        self.assertIn(".. function:: deepcopy(x[, memo])", text)
        for gone in ("moduleauthor", ".. index::", "This is a comment", "target-label", ".. module::", "synopsis"):
            self.assertNotIn(gone, text)
        self.assertNotIn("\n\n\n", text)

    def test_chats(self):
        by_q = dict(pc.extract_chats("library/copy", pc.normalize(RST), "3.11", "3.11.2"))
        qs = list(by_q)
        fn = [q for q in qs if "copy.deepcopy()" in q]
        self.assertEqual(len(fn), 1, qs)
        self.assertTrue(by_q[fn[0]].startswith("``copy.deepcopy(x[, memo])``\n\nReturn a deep copy of *x*."))
        meth = [q for q in qs if "copy.Copier.run()" in q]
        self.assertEqual(len(meth), 1, qs)
        self.assertIn("Run the copier", by_q[meth[0]])
        cls = [q for q in qs if "copy.Copier" in q and "run" not in q]
        self.assertEqual(len(cls), 1, qs)
        self.assertNotIn("Run the copier", by_q[cls[0]])  # only the text before nested directives
        mod = [q for q in qs if "module" in q]
        self.assertEqual(len(mod), 1, qs)
        self.assertIn("Assignment statements do not copy objects", by_q[mod[0]])

    def test_split_is_deterministic_and_sized(self):
        docs = [("d%03d" % i, "x" * (3000 + 37 * i)) for i in range(200)]
        a = pc.split_docs(docs, 0.02, 0.02, 0.01)
        b = pc.split_docs(list(reversed(docs)), 0.02, 0.02, 0.01)
        self.assertEqual(a, b)
        total = sum(len(t) for _, t in docs)
        for name in ("test", "val"):
            got = sum(len(t) for d, t in docs if a[d] == name)
            self.assertGreaterEqual(got, 0.02 * total)
            self.assertLess(got, 0.02 * total + 0.01 * total)


class CardTest(unittest.TestCase):
    def test_render_fills_every_placeholder(self):
        cfg = recipe.moe_config()
        dcfg = recipe.draft_config()
        run = {"name": "moe/run1", "epochs_planned": 3, "steps": 300, "steps_scheduled": 300, "tokens": 9_000_000,
               "best_val_ppl": 12.5, "best_epoch": 2.75, "stop": "schedule done", "seconds": 40.0,
               "tokens_per_s": 500_000,
               "curve": [{"epoch": 0.25 * i, "tokens": 100_000 * i, "train_loss": 3.0, "val_loss": 2.9 - 0.01 * i,
                          "val_ppl": 18.0, "lr": 1e-3} for i in range(1, 30)]}
        summary = {
            "smoke": False, "stages": [{"stage": "moe", "status": "ok"}], "elapsed_s": 300.0,
            "corpus": {"package": "python3.11-doc", "package_version": "3.11.2-6+deb12u9", "deb_sha256": "ab",
                       "licence": {"summary": "PSF.", "spdx": "PSF-2.0"}, "rules_version": "v1", "split_rule": "rule",
                       "splits": {s: {"docs": 1, "chats": 2, "doc_text_bytes": 3, "chat_text_bytes": 4} for s in ("train", "val", "test")}},
            "data": {s: {"tokens": 10, "bytes_per_token": 3.5} for s in ("train", "val", "test")},
            "tokenizer": {"bpe_entries": 8188, "special_tokens": recipe.special_ids(), "vocab_size": 8192},
            "moe": {"config": cfg, "params_recipe": recipe.count_params(cfg, True), "params_model": 1,
                    "runs": [run, {"name": "moe/run2", "epochs_planned": 6, "skipped": "needs 9s"}],
                    "chosen_run": "moe/run1", "best_val_ppl": 12.5, "tokens_seen_all_runs": 9_000_000,
                    "tokens_seen_chosen_run_to_best": 8_000_000, "train_seconds_all_runs": 40.0},
            "draft": {"config": dcfg, "params_recipe": recipe.count_params(dcfg, False), "params_model": 2,
                      "runs": [dict(run, name="draft/run1")]},
            "hyperparameters": recipe.TRAIN_DEFAULTS,
            "quantization": {"format": "MLX affine 8-bit, group size 64", "bits": 8, "group_size": 64,
                             "model_safetensors_bytes": 14_000_000, "bf16_model_safetensors_bytes": 26_000_000,
                             "storage": {"codes": 13_000_000, "scales_biases": 800_000, "other": 9000, "tensors": 300},
                             "relative_error": {"attention": 3e-3, "embedding": 4e-3}},
            "reference": {"slice_ppl_cpu_fp32": 13.0, "slice_tokens": 16000,
                          "test_split": {"ppl": 13.5, "tokens_scored": 60000,
                                         "bf16_before_quantization": {"ppl": 13.4, "slice_ppl": 12.9}},
                          "draft": {"ppl": 20.0, "test_split_ppl_cuda": 21.0},
                          "greedy": [{"name": "prose", "prompt": "'The'", "output_text": "text", "stopped_on_eos": False},
                                     {"name": "chat", "prompt": "(ChatML) 'Q?'", "output_text": "answer<|im_end|>",
                                      "stopped_on_eos": True}],
                          "expert_usage": [{"layer": 0, "min_share": 0.05, "max_share": 0.08, "unused_experts": 0,
                                            "normalized_entropy": 0.99}]},
            "versions": {"device": "H100", "python": "3.12", "torch": "2.11", "cuda_runtime": "13.0",
                         "transformers": "5.17.0", "tokenizers": "0.23", "safetensors": "0.8"},
        }
        text, missing = card.render(summary, "/nonexistent")
        self.assertEqual(missing, [])
        self.assertNotIn("${", text)
        self.assertIn("| moe/run2 | 6 |", text)
        self.assertIn("answer<|im_end|>", text)
        self.assertIn("**chat** — prompt (ChatML) 'Q?' (stopped at eos)", text)
        self.assertIn("stored as MLX affine 8-bit, group size 64 (norms bfloat16)", text)
        self.assertIn("13.5000 from the 8-bit weights against 13.4000 from the bf16 ones (+0.75%)", text)

    def test_greedy_prompts(self):
        names = [k["name"] for k in recipe.GREEDY_PROMPTS]
        self.assertEqual(names, ["prose", "code", "chat"])
        for k in recipe.GREEDY_PROMPTS:
            self.assertGreaterEqual(len(k["candidates"]), 2)
            for c in k["candidates"]:
                self.assertEqual(("messages" in c), k["name"] == "chat")
        self.assertEqual(recipe.prompt_label({"text": "a\n"}), "'a\\n'")


if __name__ == "__main__":
    unittest.main()
