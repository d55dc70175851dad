package prune_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	ct "github.com/maniac-ai/mach/pkg/checkpoint/checkpointtest"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/stretchr/testify/require"
)

func fixtureDir(t *testing.T, name string) string {
	t.Helper()
	root, err := fixture.Dir()
	require.NoError(t, err)
	return filepath.Join(root, name)
}

// copyDir copies a fixture so a test can add files to it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	require.NoError(t, os.CopyFS(dst, os.DirFS(src)))
	return dst
}

func keepAll(n int, layers ...int) map[int][]int {
	m := map[int][]int{}
	for _, l := range layers {
		for e := range n {
			m[l] = append(m[l], e)
		}
	}
	return m
}

// Plans that do not fit the checkpoint are usage errors that say why.
func TestPlanMismatch(t *testing.T) {
	qwen := fixtureDir(t, "qwen3_moe") // MoE layers 0 and 2, 8 experts, top-2
	tests := []struct {
		name, dir string
		c         pruneplan.Candidate
		want      string
	}{
		{"expert count", qwen, pruneplan.Candidate{ID: "k", NumExperts: 16, Keep: keepAll(16, 0, 2)},
			`candidate "k" is for a model with num_experts 16, but ` + qwen + ` has 8 routed experts per layer`},
		{"missing layer", qwen, pruneplan.Candidate{ID: "k", NumExperts: 8, Keep: keepAll(8, 0)},
			"has no keep list for MoE layer(s) 2 of " + qwen + " (its MoE layers are 0, 2)"},
		{"dense layer", qwen, pruneplan.Candidate{ID: "k", NumExperts: 8, Keep: keepAll(8, 0, 1, 2)},
			"lists layer(s) 1, which are not MoE layers"},
		{"fewer than top-k", qwen, pruneplan.Candidate{ID: "k", NumExperts: 8, Keep: map[int][]int{0: {3}, 2: {0, 1}}},
			"keeps 1 experts in layer 0, fewer than the 2 each token is routed to (num_experts_per_tok)"},
		{"hash layer", fixtureDir(t, "deepseek_v4"), pruneplan.Candidate{ID: "k", NumExperts: 8,
			Keep: map[int][]int{0: {0, 1, 2, 3, 4, 5, 6}, 1: {0, 1}, 2: {0, 1}, 3: {0, 1}}},
			"layer 0 is a hash-routed layer: its table model.layers.0.ffn.gate.tid2eid sends tokens to 8 experts, and the plan removes 1 of them (7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			_, err := prune.Run(t.Context(), prune.Options{Source: tt.dir, Output: out, Candidate: &tt.c})
			require.ErrorIs(t, err, prune.ErrPlan)
			require.ErrorIs(t, err, fault.ErrUsage)
			require.Contains(t, err.Error(), tt.want)
			require.NoDirExists(t, out)
		})
	}
	// Malformed candidates built in code fail the plan format's checks.
	_, err := prune.Run(t.Context(), prune.Options{Source: qwen, Output: filepath.Join(t.TempDir(), "o"),
		Candidate: &pruneplan.Candidate{ID: "k", NumExperts: 8, Keep: map[int][]int{0: {1, 1}, 2: {0, 9}}}})
	require.ErrorIs(t, err, pruneplan.ErrInvalid)
	require.ErrorContains(t, err, `keep["0"]: expert 1 is listed twice`)
}

func TestOutputDirectory(t *testing.T) {
	src := fixtureDir(t, "qwen3_moe_stacked")
	run := func(out string, force bool) error {
		_, err := prune.Run(t.Context(), prune.Options{Source: src, Output: out, Force: force})
		return err
	}
	t.Run("empty directory is used", func(t *testing.T) {
		out := t.TempDir()
		require.NoError(t, run(out, false))
		require.FileExists(t, filepath.Join(out, "config.json"))
	})
	t.Run("not empty", func(t *testing.T) {
		out := t.TempDir()
		ct.WriteFile(t, out, "notes.txt", "mine")
		err := run(out, false)
		require.ErrorIs(t, err, fault.ErrUsage)
		require.ErrorContains(t, err, "exists and is not empty; choose another --output or pass --force")
		err = run(out, true)
		require.ErrorIs(t, err, fault.ErrUsage)
		require.ErrorContains(t, err, "holds no config.json; --force only replaces a checkpoint directory")
		require.FileExists(t, filepath.Join(out, "notes.txt"))
	})
	t.Run("force replaces a checkpoint", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		require.NoError(t, run(out, false))
		ct.WriteFile(t, out, "stale.txt", "old")
		require.ErrorContains(t, run(out, false), "exists and is not empty")
		require.NoError(t, run(out, true))
		require.NoFileExists(t, filepath.Join(out, "stale.txt"))
		require.FileExists(t, filepath.Join(out, prune.ExpertMapName))
		entries, err := os.ReadDir(filepath.Dir(out))
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary or replaced directories are left beside the output")
	})
	t.Run("not a directory", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(out, nil, 0o644))
		require.ErrorContains(t, run(out, true), "exists and is not a directory")
	})
	t.Run("source", func(t *testing.T) {
		copied := copyDir(t, src)
		for _, out := range []string{copied, filepath.Dir(copied), copied + "/."} {
			_, err := prune.Run(t.Context(), prune.Options{Source: copied, Output: out, Force: true})
			require.ErrorIs(t, err, fault.ErrUsage, out)
			require.ErrorContains(t, err, "would replace the source checkpoint")
		}
		require.FileExists(t, filepath.Join(copied, "model.safetensors"))
	})
}

// An interrupted run leaves neither the output nor a temporary directory.
func TestCancel(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	_, err := prune.Run(ctx, prune.Options{Source: fixtureDir(t, "qwen3_moe"), Output: out, MaxShardSize: 100_000,
		Progress: func(p prune.Progress) {
			calls++
			if calls == 20 {
				cancel()
			}
		}})
	require.ErrorIs(t, err, context.Canceled)
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestFilesShardsAndSummary(t *testing.T) {
	src := copyDir(t, fixtureDir(t, "qwen3_moe"))
	for name, content := range map[string]string{
		"tokenizer.json": `{"model":{}}`, "tokenizer_config.json": `{}`, "chat_template.jinja": "{{ messages }}",
		"special_tokens_map.json": `{}`, "LICENSE": "Apache-2.0", "DATA_LICENSE.txt": "PSF", "README.md": "about the source",
		"expert_sidecar/layout.json": "{}",
	} {
		ct.WriteFile(t, src, name, content)
	}
	c := candidate("k6", 8, []int{0, 2}, func(l, e int) bool { return e != 3 && e != l })
	out := filepath.Join(t.TempDir(), "out")
	var last prune.Progress
	sum, err := prune.Run(t.Context(), prune.Options{Source: src, Output: out, Candidate: c, MaxShardSize: 100_000,
		Progress: func(p prune.Progress) { last = p }})
	require.NoError(t, err)
	require.Equal(t, []string{"DATA_LICENSE.txt", "LICENSE", "chat_template.jinja", "generation_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"}, sum.CopiedFiles)
	for _, f := range sum.CopiedFiles {
		want, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(out, f))
		require.NoError(t, err)
		require.Equal(t, want, got, f)
	}
	for _, f := range []string{"README.md", "fixture.json", "reference.safetensors", "expert_sidecar"} {
		require.NoFileExists(t, filepath.Join(out, f))
	}
	require.Len(t, sum.Notes, 2)
	require.Contains(t, sum.Notes[0], "source: "+src+"/expert_sidecar/layout.json: invalid expert sidecar layout", "the inspection's warnings are passed on")
	require.Contains(t, sum.Notes[1], "expert_sidecar/ is not copied")

	// Shards stay under the bound and the index names each tensor's shard.
	require.Greater(t, len(sum.Shards), 5)
	require.Equal(t, last.Total, last.Done)
	require.Equal(t, len(sum.Shards), last.Shards)
	hs, err := safetensors.ReadHeaders(out)
	require.NoError(t, err)
	require.Len(t, hs.Files, len(sum.Shards))
	require.Len(t, hs.Names(), sum.Tensors)
	require.Equal(t, sum.BytesAfter, hs.TotalBytes())
	for i, f := range hs.Files {
		require.Equal(t, filepath.Join(out, fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(sum.Shards))), f)
		h, err := safetensors.ReadFileHeader(f)
		require.NoError(t, err)
		var n int64
		for _, x := range h.Tensors {
			n += x.Size()
			require.Zero(t, (h.DataOffset+x.Begin)%int64(x.DType.Bits()/8), "%s is aligned to its element size", x.Name)
		}
		require.True(t, n <= 100_000 || len(h.Tensors) == 1, "shard %s holds %d bytes", f, n)
		require.Equal(t, map[string]string{"format": "pt"}, h.Metadata)
	}
	idx, err := safetensors.ReadIndex(out)
	require.NoError(t, err)
	require.Equal(t, float64(sum.BytesAfter), idx.Metadata["total_size"])

	require.Equal(t, "qwen3_moe", sum.ModelType)
	require.Equal(t, "k6", *sum.CandidateID)
	require.Equal(t, checkpoint.PerExpert, sum.SourceLayout)
	require.Equal(t, 8, sum.SourceExperts)
	require.Equal(t, 6, sum.Experts)
	require.Equal(t, 2, sum.TopK)
	require.Equal(t, []prune.LayerSummary{{Layer: 0, Source: 8, Kept: 6, Removed: 2}, {Layer: 2, Source: 8, Kept: 6, Removed: 2}}, sum.Layers)
	require.True(t, sum.Uniform())
	require.Equal(t, sum.ExpertBytesBefore*6/8, sum.ExpertBytesAfter)
	require.Equal(t, sum.BytesBefore-sum.ExpertBytesBefore+sum.ExpertBytesAfter-2*2*64*4, sum.BytesAfter, "two router rows of 64 f32 fewer per layer")

	// A dry run reports the same and writes nothing.
	dry := filepath.Join(t.TempDir(), "dry")
	ds, err := prune.Run(t.Context(), prune.Options{Source: src, Output: dry, Candidate: c, MaxShardSize: 100_000, DryRun: true})
	require.NoError(t, err)
	require.NoDirExists(t, dry)
	require.True(t, ds.DryRun)
	ds.DryRun, ds.Seconds, ds.Output, sum.Seconds, sum.Output = false, 0, "", 0, ""
	require.Equal(t, sum, ds)
}

// MLX per-module quantization overrides of stacked experts move to the
// engine layout's per-expert modules.
func TestQuantOverridesFollowExperts(t *testing.T) {
	src := fixtureDir(t, "gpt_oss_mlx")
	out := filepath.Join(t.TempDir(), "out")
	c := candidate("k3", 8, []int{0, 1, 2, 3}, func(l, e int) bool { return e < 3 })
	_, err := prune.Run(t.Context(), prune.Options{Source: src, Output: out, Candidate: c})
	require.NoError(t, err)
	cfg, err := modelconfig.Load(out)
	require.NoError(t, err)
	mx := modelconfig.ModuleQuant{Quantized: true, Mode: "mxfp4", Bits: 4, GroupSize: 32}
	for _, m := range []string{"model.layers.0.mlp.experts.0.gate_proj", "model.layers.3.mlp.experts.2.down_proj", "model.layers.1.mlp.experts.1.up_proj"} {
		require.Equal(t, mx, cfg.Quant.ForModule(m), m)
	}
	_, stale := cfg.Quant.Overrides["model.layers.0.mlp.experts.gate_proj"]
	require.False(t, stale)
	_, removed := cfg.Quant.Overrides["model.layers.0.mlp.experts.3.gate_proj"]
	require.False(t, removed, "no override for an expert that does not exist")
	require.Equal(t, modelconfig.ModuleQuant{Quantized: true, Mode: "affine", Bits: 8, GroupSize: 64}, cfg.Quant.ForModule("model.layers.0.mlp.router"))
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	require.NoError(t, err)
	require.Contains(t, string(raw), `"rms_norm_eps": 1e-05`, "numbers keep their text")
}

// A checkpoint with an MTP head converts with every expert kept, but a
// plan that prunes is refused: the MTP layer has its own experts and no
// plan for them.
func TestMTPHead(t *testing.T) {
	dir := t.TempDir()
	ct.WriteFile(t, dir, "config.json", `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,
		"num_key_value_heads":2,"head_dim":16,"vocab_size":100,"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":32,
		"mtp_num_hidden_layers":1,"torch_dtype":"bfloat16"}`)
	ts := []ct.Tensor{ct.T("model.embed_tokens.weight", "BF16", 100, 64), ct.T("model.layers.0.mlp.gate.weight", "BF16", 4, 64),
		ct.T("mtp.layers.0.mlp.gate.weight", "BF16", 4, 64)}
	for _, p := range []string{"model.layers.0.mlp.switch_mlp.", "mtp.layers.0.mlp.switch_mlp."} {
		ts = append(ts, ct.T(p+"gate_proj.weight", "BF16", 4, 32, 64), ct.T(p+"up_proj.weight", "BF16", 4, 32, 64), ct.T(p+"down_proj.weight", "BF16", 4, 64, 32))
	}
	ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), ts)
	_, err := prune.Run(t.Context(), prune.Options{Source: dir, Output: filepath.Join(t.TempDir(), "o"),
		Candidate: &pruneplan.Candidate{ID: "k3", NumExperts: 4, Keep: map[int][]int{0: {0, 1, 3}}}})
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.ErrorContains(t, err, "MTP head with its own routed experts")

	out := filepath.Join(t.TempDir(), "o")
	sum, err := prune.Run(t.Context(), prune.Options{Source: dir, Output: out})
	require.NoError(t, err)
	require.Equal(t, []int{0}, sum.MTPLayers)
	hs, err := safetensors.ReadHeaders(out)
	require.NoError(t, err)
	for _, n := range []string{"mtp.layers.0.mlp.experts.3.down_proj.weight", "model.layers.0.mlp.experts.3.up_proj.weight", "mtp.layers.0.mlp.gate.weight"} {
		_, ok := hs.Lookup(n)
		require.True(t, ok, n)
	}
}

// With group-limited routing every group must keep the same number of
// experts, or the pruned model would route differently.
func TestGroupLimitedRouting(t *testing.T) {
	dir := copyDir(t, fixtureDir(t, "deepseek_v4"))
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	ct.WriteFile(t, dir, "config.json", strings.Replace(string(raw), `"n_routed_experts": 8,`, `"n_routed_experts": 8, "n_group": 2,`, 1))
	keep := map[int][]int{0: {0, 1, 2, 3, 4, 5, 6, 7}, 1: {0, 1, 4, 5}, 2: {0, 1, 2, 4}, 3: {2, 3, 6, 7}}
	_, err = prune.Run(t.Context(), prune.Options{Source: dir, Output: filepath.Join(t.TempDir(), "o"),
		Candidate: &pruneplan.Candidate{ID: "g", NumExperts: 8, Keep: keep}})
	require.ErrorIs(t, err, prune.ErrPlan)
	require.ErrorContains(t, err, "keeps 3, 1 experts of the 2 routing groups of layer 2")
	keep[2] = []int{0, 3, 4, 7}
	_, err = prune.Run(t.Context(), prune.Options{Source: dir, Output: filepath.Join(t.TempDir(), "o"),
		Candidate: &pruneplan.Candidate{ID: "g", NumExperts: 8, Keep: keep}})
	require.NoError(t, err)
}

func TestUnsupportedSources(t *testing.T) {
	dir := t.TempDir()
	ct.WriteFile(t, dir, "config.json", `{"model_type":"mixtral","num_hidden_layers":1,"num_local_experts":8}`)
	_, err := prune.Run(t.Context(), prune.Options{Source: dir, Output: filepath.Join(t.TempDir(), "o")})
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.ErrorContains(t, err, "mixtral")

	ct.WriteFile(t, dir, "config.json", `{"model_type":"qwen3_moe","num_hidden_layers":1,"num_experts":8,"hidden_size":64,"moe_intermediate_size":32}`)
	_, err = prune.Run(t.Context(), prune.Options{Source: dir, Output: filepath.Join(t.TempDir(), "o")})
	require.ErrorContains(t, err, "no routed-expert tensors in safetensors weights")

	_, err = prune.Run(t.Context(), prune.Options{Source: filepath.Join(dir, "missing"), Output: filepath.Join(t.TempDir(), "o")})
	require.ErrorIs(t, err, fault.ErrIO)
}

// DeepSeek's upstream experts stacked per projection (w1/w3/w2, MLX
// affine here) must be sliced before serving; the engine layout keeps the
// native projection names, and the per-expert upstream form (FP4 codes
// with a block scale) is renamed as it is.
func TestDeepSeekNames(t *testing.T) {
	cfg := `{"model_type":"deepseek_v4","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,
		"head_dim":16,"vocab_size":100,"n_routed_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":32,"torch_dtype":"bfloat16",
		"quantization":{"bits":4,"group_size":64}}`
	stacked := []ct.Tensor{ct.T("embed.weight", "BF16", 100, 64)}
	perExpert := []ct.Tensor{ct.T("embed.weight", "BF16", 100, 64)}
	for l := range 2 {
		p := fmt.Sprintf("layers.%d.ffn.", l)
		gate := []ct.Tensor{ct.T(p+"gate.weight", "BF16", 4, 64), ct.T(p+"gate.bias", "F32", 4)}
		stacked = append(stacked, gate...)
		perExpert = append(perExpert, gate...)
		for _, w := range []string{"w1", "w3"} {
			stacked = append(stacked, ct.T(p+"experts."+w+".weight", "U32", 4, 32, 8), ct.T(p+"experts."+w+".scales", "BF16", 4, 32, 1), ct.T(p+"experts."+w+".biases", "BF16", 4, 32, 1))
		}
		stacked = append(stacked, ct.T(p+"experts.w2.weight", "U32", 4, 64, 4), ct.T(p+"experts.w2.scales", "BF16", 4, 64, 1), ct.T(p+"experts.w2.biases", "BF16", 4, 64, 1))
		for e := range 4 {
			q := fmt.Sprintf("%sexperts.%d.", p, e)
			perExpert = append(perExpert, ct.T(q+"w1.weight", "I8", 32, 32), ct.T(q+"w1.scale", "F8_E8M0", 32, 2),
				ct.T(q+"w3.weight", "I8", 32, 32), ct.T(q+"w3.scale", "F8_E8M0", 32, 2), ct.T(q+"w2.weight", "I8", 64, 16), ct.T(q+"w2.scale", "F8_E8M0", 64, 1))
		}
	}
	keep := map[int][]int{0: {0, 2, 3}, 1: {1, 3}}
	for name, ts := range map[string][]ct.Tensor{"stacked": stacked, "per_expert": perExpert} {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			c := cfg
			if name == "per_expert" {
				c = strings.Replace(cfg, `"quantization":{"bits":4,"group_size":64}`, `"quantization_config":{"quant_method":"fp8","weight_block_size":[128,128]}`, 1)
			}
			ct.WriteFile(t, src, "config.json", c)
			ct.WriteSafetensors(t, filepath.Join(src, "model.safetensors"), ts)
			out := filepath.Join(t.TempDir(), "out")
			_, err := prune.Run(t.Context(), prune.Options{Source: src, Output: out, Candidate: &pruneplan.Candidate{ID: "k", NumExperts: 4, Keep: keep}})
			require.NoError(t, err)
			cfg, err := modelconfig.Load(out)
			require.NoError(t, err)
			require.Equal(t, []int{3, 2}, cfg.ExpertsPerLayer)
			in, err := checkpoint.Inspect(out, cfg, checkpoint.Options{})
			require.NoError(t, err)
			require.Equal(t, checkpoint.PerExpert, in.Layout)
			require.Equal(t, map[int]int{0: 3, 1: 2}, in.Experts.PerLayer)
			hs, err := safetensors.ReadHeaders(out)
			require.NoError(t, err)
			want := map[string][]int64{"layers.1.ffn.gate.weight": {2, 64}, "layers.1.ffn.gate.bias": {2}}
			if name == "stacked" {
				want["layers.0.ffn.experts.2.w1.weight"] = []int64{32, 8}
				want["layers.0.ffn.experts.2.w2.biases"] = []int64{64, 1}
				want["layers.1.ffn.experts.1.w3.scales"] = []int64{32, 1}
			} else {
				want["layers.0.ffn.experts.2.w1.weight"] = []int64{32, 32}
				want["layers.0.ffn.experts.2.w2.scale"] = []int64{64, 1}
				want["layers.1.ffn.experts.1.w3.scale"] = []int64{32, 2}
			}
			for n, shape := range want {
				e, ok := hs.Lookup(n)
				require.True(t, ok, n)
				require.Equal(t, shape, e.Shape, n)
			}
			_, ok := hs.Lookup("layers.0.ffn.experts.3.w1.weight")
			require.False(t, ok, "layer 0 keeps 3 experts: ids 0..2")
		})
	}
}
