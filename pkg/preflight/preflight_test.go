package preflight_test

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/golden"
	"github.com/maniac-ai/mach/pkg/hostmem"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/stretchr/testify/require"
)

// TestThisBuildMatrix pins what this build claims for every path and
// architecture. A commit that lands a feature flips its flag in ThisBuild
// and regenerates this file with -update.
func TestThisBuildMatrix(t *testing.T) {
	b := preflight.ThisBuild(registry.Default())
	got, err := json.MarshalIndent(b.Matrix(), "", "  ")
	require.NoError(t, err)
	golden.Check(t, "matrix.golden.json", string(append(got, '\n')))
}

// The build claims nothing it does not have: an architecture without a
// forward pass has no ok path, a path whose feature flag is off is never ok,
// and nothing is supported while there is no HTTP server.
func TestThisBuildIsHonest(t *testing.T) {
	b := preflight.ThisBuild(registry.Default())
	featureOf := map[capability.Path]bool{
		capability.OpenAIHTTP: b.Features.HTTPServer, capability.ExpertStreaming: b.Features.ExpertStreaming,
		capability.ResidentStacked: b.Features.ResidentStacked, capability.BF16Streaming: b.Features.BF16Streaming,
		capability.GGUFExperts2Bit: b.Features.GGUFExperts2Bit, capability.Specdec: b.Features.Specdec,
		capability.TurboquantKV: b.Features.TurboQuantKV, capability.NativeToolGrammar: b.Features.NativeToolGrammar,
	}
	for _, a := range b.Registry.All() {
		paths := b.Paths(a, nil)
		for _, p := range paths {
			require.True(t, p.Status.Valid())
			require.NotEmpty(t, p.Reason)
			if p.Status != capability.OK {
				continue
			}
			require.True(t, a.Support.Forward, "%s/%s ok without a forward pass", a.ModelType, p.Path)
			if on, gated := featureOf[p.Path]; gated {
				require.True(t, on, "%s/%s ok while its feature is off", a.ModelType, p.Path)
			}
		}
		v := preflight.Decide(a, paths)
		if !b.Features.HTTPServer {
			require.False(t, v.Supported)
			require.Contains(t, v.Reason, "registered, but not servable by this build")
		}
	}
}

// everything returns a build where every feature and every architecture's
// support is on, to exercise the checkpoint-dependent logic that later
// builds will reach.
func everything(t *testing.T) preflight.Build {
	t.Helper()
	var archs []registry.Arch
	for _, a := range registry.Default().All() {
		a.Support = registry.Support{Forward: true, Batching: true, PrefixReuse: true, Streaming: true}
		archs = append(archs, a)
	}
	reg, err := registry.New(archs...)
	require.NoError(t, err)
	return preflight.Build{Registry: reg, Features: preflight.Features{
		HTTPServer: true, ExpertStreaming: true, ResidentStacked: true, BF16Streaming: true,
		GGUFExperts2Bit: true, Specdec: true, TurboQuantKV: true, NativeToolGrammar: true,
	}}
}

func loadConfig(t *testing.T, name string) *modelconfig.Config {
	t.Helper()
	c, err := modelconfig.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	return c
}

func statuses(paths []preflight.PathResult) map[capability.Path]capability.Status {
	m := map[capability.Path]capability.Status{}
	for _, p := range paths {
		m[p.Path] = p.Status
	}
	return m
}

// The architecture-only matrix of a complete build matches the seed's
// documented matrix where the seed is about architectures (statuses that
// depend on a checkpoint are unknown).
func TestMatrixWhenEverythingIsImplemented(t *testing.T) {
	b := everything(t)
	m := b.Matrix()
	ok, bl, na, un, need := capability.OK, capability.Blocked, capability.NA, capability.Unknown, capability.NeedsArtifact
	want := map[string]map[capability.Path]capability.Status{
		"deepseek_v4": {"openai_http": ok, "expert_streaming": ok, "resident_stacked": bl, "bf16_streaming": un, "gguf_experts_2bit": un,
			"specdec": need, "continuous_batching": ok, "turboquant_kv": ok, "prefix_kv_reuse": ok, "native_tool_grammar": na},
		"gemma4": {"openai_http": ok, "expert_streaming": ok, "resident_stacked": un, "bf16_streaming": un, "gguf_experts_2bit": un,
			"specdec": na, "continuous_batching": ok, "turboquant_kv": ok, "prefix_kv_reuse": ok, "native_tool_grammar": na},
		"qwen3_moe": {"openai_http": ok, "expert_streaming": ok, "resident_stacked": un, "bf16_streaming": un, "gguf_experts_2bit": un,
			"specdec": need, "continuous_batching": ok, "turboquant_kv": ok, "prefix_kv_reuse": ok, "native_tool_grammar": ok},
	}
	for arch, paths := range want {
		for p, s := range paths {
			require.Equal(t, s, m[arch][p].Status, "%s/%s: %s", arch, p, m[arch][p].Reason)
		}
	}
}

func inspection(cfg *modelconfig.Config, layout checkpoint.Layout, q checkpoint.Quant) *checkpoint.Inspection {
	return &checkpoint.Inspection{Dir: "/ckpt", Config: cfg, WeightsInspected: true, Layout: layout, Quant: q,
		Experts: checkpoint.Experts{Bytes: 1000}, NonExpertBytes: 500}
}

func validSidecar(mode string, bits int) checkpoint.SidecarProbe {
	return checkpoint.SidecarProbe{Present: true, Valid: true, Verified: true, Layout: &sidecar.Layout{
		Quant: sidecar.Quant{Mode: mode, Bits: bits}, ExpertStride: 100,
		Layers: []sidecar.Layer{{Index: 0, File: "layer_00.bin", Size: 800}}, NumExperts: 8}}
}

func TestGatesForCheckpoints(t *testing.T) {
	b := everything(t)
	qwen := loadConfig(t, "qwen3_moe")
	// The fixture's config with GGUF-sized expert rows (the loader's
	// config validation still passes).
	bigCfg := *qwen
	bigCfg.HiddenSize, bigCfg.MoEIntermediateSize = 2048, 768
	big := &bigCfg
	gptossCfg := *loadConfig(t, "gpt_oss")
	gptossCfg.HiddenSize, gptossCfg.MoEIntermediateSize = 2880, 2880
	gptoss := &gptossCfg
	bf16 := checkpoint.Quant{Mode: "bf16", Bits: 16, Source: "tensors"}
	mx := checkpoint.Quant{Mode: "mxfp4", Bits: 4, GroupSize: 32, Source: "tensors"}
	ok, bl, na, need := capability.OK, capability.Blocked, capability.NA, capability.NeedsArtifact
	tests := []struct {
		name      string
		arch      string
		in        func() *checkpoint.Inspection
		want      map[capability.Path]capability.Status
		supported bool
		serve     string
	}{
		{"engine layout with a bf16 sidecar", "qwen3_moe", func() *checkpoint.Inspection {
			in := inspection(qwen, checkpoint.Engine, bf16)
			in.Sidecar = validSidecar("bf16", 16)
			return in
		}, map[capability.Path]capability.Status{"openai_http": ok, "expert_streaming": ok, "resident_stacked": na, "bf16_streaming": ok,
			"gguf_experts_2bit": na, "specdec": need}, true, "mach-serve --checkpoint /ckpt --streaming --target-only"},
		{"stacked mxfp4 without sidecar", "gpt_oss", func() *checkpoint.Inspection {
			return inspection(gptoss, checkpoint.Stacked, mx)
		}, map[capability.Path]capability.Status{"openai_http": ok, "expert_streaming": need, "resident_stacked": ok, "bf16_streaming": na,
			"gguf_experts_2bit": na, "specdec": na}, true, "mach-serve --checkpoint /ckpt"},
		{"per-expert bf16 without sidecar", "qwen3_moe", func() *checkpoint.Inspection {
			return inspection(qwen, checkpoint.PerExpert, bf16)
		}, map[capability.Path]capability.Status{"openai_http": need, "expert_streaming": need, "resident_stacked": na, "bf16_streaming": need}, false, ""},
		{"deepseek stacked upstream", "deepseek_v4", func() *checkpoint.Inspection {
			return inspection(loadConfig(t, "deepseek_v4"), checkpoint.Stacked, mx)
		}, map[capability.Path]capability.Status{"openai_http": need, "expert_streaming": need, "resident_stacked": bl, "specdec": need}, false, ""},
		{"deepseek with its MTP head", "deepseek_v4", func() *checkpoint.Inspection {
			in := inspection(loadConfig(t, "deepseek_v4"), checkpoint.Engine, mx)
			in.Sidecar, in.MTPTensors = validSidecar("mxfp4", 4), true
			return in
		}, map[capability.Path]capability.Status{"openai_http": ok, "specdec": ok}, true, "mach-serve --checkpoint /ckpt --streaming"},
		{"usable draft", "qwen3_moe", func() *checkpoint.Inspection {
			in := inspection(qwen, checkpoint.Engine, bf16)
			in.Sidecar = validSidecar("bf16", 16)
			in.Draft = checkpoint.DraftProbe{Dir: "/drafts/d 1", Usable: true}
			return in
		}, map[capability.Path]capability.Status{"specdec": ok}, true, "mach-serve --checkpoint /ckpt --streaming --draft-dir '/drafts/d 1'"},
		{"unusable draft", "qwen3_moe", func() *checkpoint.Inspection {
			in := inspection(qwen, checkpoint.Engine, bf16)
			in.Sidecar = validSidecar("bf16", 16)
			in.Draft = checkpoint.DraftProbe{Dir: "/d", Explicit: true, Reason: "no weights"}
			return in
		}, map[capability.Path]capability.Status{"specdec": need}, true, "mach-serve --checkpoint /ckpt --streaming --target-only"},
		{"gguf 2-bit sidecar", "qwen3_moe", func() *checkpoint.Inspection {
			in := inspection(big, checkpoint.Engine, checkpoint.Quant{Mode: "iq2_xxs", Bits: 2, Source: "sidecar"})
			in.Sidecar = validSidecar("iq2_xxs", 2)
			return in
		}, map[capability.Path]capability.Status{"gguf_experts_2bit": ok, "bf16_streaming": na, "expert_streaming": ok}, true, "mach-serve --checkpoint /ckpt --streaming --target-only"},
		{"invalid sidecar", "qwen3_moe", func() *checkpoint.Inspection {
			in := inspection(qwen, checkpoint.PerExpert, bf16)
			in.Sidecar = checkpoint.SidecarProbe{Present: true, Err: errors.New("layer_01.bin is missing")}
			return in
		}, map[capability.Path]capability.Status{"expert_streaming": need, "openai_http": need}, false, ""},
		{"remote config only", "qwen3_moe", func() *checkpoint.Inspection {
			in := checkpoint.InspectConfig("/cache", qwen, nil, "")
			return in
		}, map[capability.Path]capability.Status{"openai_http": ok, "resident_stacked": capability.Unknown, "bf16_streaming": need}, true, "mach-serve --checkpoint /ckpt --target-only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arch, ok := b.Registry.Lookup(tt.arch)
			require.True(t, ok)
			in := tt.in()
			paths := b.Paths(arch, in)
			got := statuses(paths)
			for p, s := range tt.want {
				require.Equal(t, s, got[p], "%s", p)
			}
			v := preflight.Decide(arch, paths)
			require.Equal(t, tt.supported, v.Supported, v.Reason)
			require.Equal(t, tt.serve, preflight.ServeCommand("/ckpt", v, paths, in.Draft.Dir))
		})
	}
}

func TestKVBytes(t *testing.T) {
	tests := []struct {
		config string
		kind   registry.KVCacheKind
		ctx    int
		want   int64
	}{
		// 3 layers × K,V × 2 heads × 16 dims × 512 tokens × 2 bytes.
		{"qwen3_moe", registry.KVStandard, 512, 3 * 2 * 2 * 16 * 512 * 2},
		// Two sliding layers keep the 8-token window, two full layers 512.
		{"gpt_oss", registry.KVRotating, 512, 2*(2*2*16*2*8) + 2*(2*2*16*2*512)},
		// One full layer; three GDN layers of conv (3 × 128 × fp32) and
		// state (4 heads × 16 × 16 × fp32), double-buffered as
		// kvcache.Hybrid keeps them.
		{"qwen3_5_moe", registry.KVHybridGDN, 512, 2*2*16*2*512 + 3*2*(3*128*4+4*16*16*4)},
		// Window 8 × 32 dims on every layer; HCA (ratio 8): 64 entries and
		// 7 tokens' pending projections (kv and gate, f32); two CSA layers
		// (ratio 4): 128 entries, 128 f32 indexer keys of 16, 7 tokens'
		// pending projections of two series, and the indexer's (4 × 16).
		{"deepseek_v4", registry.KVCompressed, 512, 4*(8*32*2) + 64*32*2 + 7*2*32*4 +
			2*(128*32*2+128*16*4+7*2*2*32*4+7*4*16*4)},
		// Gemma 4: three sliding layers (window 8, 2 heads × 16), one full
		// layer with per_layer_config head_dim 512.
		{"gemma4", registry.KVRotating, 512, 3*(2*2*16*2*8) + 2*2*512*2*512},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			require.Equal(t, tt.want, preflight.KVBytes(loadConfig(t, tt.config), tt.kind, tt.ctx))
		})
	}
}

func TestMemoryVerdict(t *testing.T) {
	tests := []struct {
		ws, avail int64
		want      string
	}{
		{80, 100, preflight.Fits},
		{81, 100, preflight.Tight},
		{100, 100, preflight.Tight},
		{101, 100, preflight.WontFit},
		{10, 0, preflight.Unknown},
		{0, 100, preflight.Unknown},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, preflight.MemoryVerdict(tt.ws, tt.avail), "%d of %d", tt.ws, tt.avail)
	}
}

func host(avail uint64) func() (hostmem.Info, error) {
	return func() (hostmem.Info, error) {
		return hostmem.Info{Total: 2 * avail, Available: avail, Source: "test"}, nil
	}
}

func TestEstimateMemory(t *testing.T) {
	arch, _ := registry.Default().Lookup("qwen3_moe")
	qwen := loadConfig(t, "qwen3_moe")
	t.Run("from tensors", func(t *testing.T) {
		in := inspection(qwen, checkpoint.Stacked, checkpoint.Quant{Mode: "f32", Bits: 32})
		m := preflight.EstimateMemory(in, arch, preflight.MemoryOptions{Host: host(1 << 30)})
		require.Equal(t, 512, m.ContextLength, "min(max_position_embeddings, 8192)")
		require.Equal(t, int64(1000), m.ExpertsBytes)
		require.Equal(t, int64(500), m.NonExpertBytes)
		require.Equal(t, int64(3*2*2*16*512*2), m.KVBytes)
		require.Equal(t, 1000+500+m.KVBytes, m.WorkingSetBytes)
		require.Equal(t, preflight.Fits, m.Verdict)
		require.False(t, m.FromConfig)
	})
	t.Run("expert cache", func(t *testing.T) {
		in := inspection(qwen, checkpoint.Stacked, checkpoint.Quant{Mode: "f32", Bits: 32})
		m := preflight.EstimateMemory(in, arch, preflight.MemoryOptions{ContextLength: 100, ExpertCacheBytes: 300, Host: host(1 << 30)})
		require.Equal(t, 100, m.ContextLength)
		require.Equal(t, 300+500+m.KVBytes, m.WorkingSetBytes)
	})
	t.Run("wont fit", func(t *testing.T) {
		in := inspection(qwen, checkpoint.Stacked, checkpoint.Quant{Mode: "f32", Bits: 32})
		m := preflight.EstimateMemory(in, arch, preflight.MemoryOptions{Host: host(1000)})
		require.Equal(t, preflight.WontFit, m.Verdict)
		require.Equal(t, int64(1000), m.AvailableBytes)
	})
	t.Run("host unknown", func(t *testing.T) {
		in := inspection(qwen, checkpoint.Stacked, checkpoint.Quant{Mode: "f32", Bits: 32})
		m := preflight.EstimateMemory(in, arch, preflight.MemoryOptions{Host: func() (hostmem.Info, error) { return hostmem.Info{}, hostmem.ErrUnsupported }})
		require.Equal(t, preflight.Unknown, m.Verdict)
		require.Positive(t, m.WorkingSetBytes, "the byte math still works")
		require.Contains(t, m.Note, "not measurable")
	})
	t.Run("from config", func(t *testing.T) {
		// 48 MoE layers × 128 experts × 3 × 2048 × 768 at 4.5 bits (affine
		// 4-bit, group 64) — Qwen3-30B-A3B in MLX 4-bit.
		cfg, err := modelconfig.Parse([]byte(`{"model_type":"qwen3_moe","hidden_size":2048,"num_hidden_layers":48,"num_attention_heads":32,
			"num_key_value_heads":4,"head_dim":128,"vocab_size":151936,"num_experts":128,"moe_intermediate_size":768,
			"max_position_embeddings":40960,"quantization":{"bits":4,"group_size":64}}`))
		require.NoError(t, err)
		in := checkpoint.InspectConfig("/cache", cfg, nil, "")
		m := preflight.EstimateMemory(in, arch, preflight.MemoryOptions{Host: host(64e9)})
		require.True(t, m.FromConfig)
		require.Equal(t, int64(48*128*3*2048*768*4.5/8), m.ExpertsBytes)
		// Embeddings and head (2 × 151936 × 2048), attention (48 × (2 ×
		// 2048 × 4096 + 2 × 2048 × 512)) and routers (48 × 128 × 2048).
		params := 2*151936*2048 + 48*(2*2048*4096+2*2048*512) + 48*128*2048
		require.Equal(t, int64(float64(params)*4.5/8), m.NonExpertBytes)
		require.Equal(t, int64(48*2*4*128*8192*2), m.KVBytes)
		require.Equal(t, 8192, m.ContextLength)
		require.Equal(t, preflight.Fits, m.Verdict)
		// The real MLX 4-bit checkpoint is about 17.2 GB of weights; KV at
		// 8192 tokens adds 0.8 GB.
		require.InDelta(t, 18.0e9, float64(m.WorkingSetBytes), 0.5e9)
	})
	t.Run("config lacks dimensions", func(t *testing.T) {
		cfg, err := modelconfig.Parse([]byte(`{"model_type":"qwen3_moe"}`))
		require.NoError(t, err)
		m := preflight.EstimateMemory(checkpoint.InspectConfig("", cfg, nil, ""), arch, preflight.MemoryOptions{Host: host(1e9)})
		require.Equal(t, preflight.Unknown, m.Verdict)
	})
}

func TestReportJSONKeys(t *testing.T) {
	b := preflight.ThisBuild(registry.Default())
	arch, _ := b.Registry.Lookup("qwen3_moe")
	in := inspection(loadConfig(t, "qwen3_moe"), checkpoint.PerExpert, checkpoint.Quant{Mode: "f32", Bits: 32})
	r := b.Check("/ckpt", arch, in, preflight.CheckOptions{Memory: preflight.MemoryOptions{Host: host(1e9)}})
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	keys := func(m map[string]json.RawMessage) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		return out
	}
	require.ElementsMatch(t, []string{"model", "model_type", "supported", "layout", "quant", "experts", "artifacts", "memory", "paths", "verdict", "serve_command"}, keys(m))
	sub := func(k string) map[string]json.RawMessage {
		var s map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(m[k], &s))
		return s
	}
	require.ElementsMatch(t, []string{"mode", "bits", "group_size"}, keys(sub("quant")))
	require.ElementsMatch(t, []string{"sidecar", "draft_dir"}, keys(sub("artifacts")))
	require.ElementsMatch(t, []string{"routed", "per_layer", "top_k"}, keys(sub("experts")))
	require.JSONEq(t, `{"routed": 8, "per_layer": null, "top_k": 2}`, string(m["experts"]))
	require.ElementsMatch(t, []string{"verdict", "experts_bytes", "non_expert_bytes", "kv_bytes", "context_length", "working_set_bytes", "available_bytes"}, keys(sub("memory")))
	paths := sub("paths")
	require.Len(t, paths, len(capability.Paths()))
	for _, p := range capability.Paths() {
		var res map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(paths[string(p)], &res))
		require.ElementsMatch(t, []string{"status", "reason"}, keys(res), "%s", p)
	}
	// Served with its experts resident (no sidecar, so no --streaming).
	require.Equal(t, `"mach-serve --checkpoint /ckpt --target-only"`, string(m["serve_command"]))
	require.True(t, r.Supported)
}

// withKeys returns the testdata config name with keys set (in text_config
// for a wrapped config), as a config.json written into a fresh directory.
func withKeys(t *testing.T, name string, keys map[string]any) *modelconfig.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	var top map[string]any
	require.NoError(t, json.Unmarshal(data, &top))
	text := top
	if tc, ok := top["text_config"].(map[string]any); ok {
		text = tc
	}
	maps.Copy(text, keys)
	out, err := json.Marshal(top)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(path, out, 0o644))
	c, err := modelconfig.ReadFile(path)
	require.NoError(t, err)
	return c
}

// Checkpoints the architecture's loader refuses are not supported, with
// the loader's reason, in every gate that would otherwise be ok: the same
// validation (pkg/archconfig) runs in both.
func TestLoaderRefusals(t *testing.T) {
	b := preflight.ThisBuild(registry.Default())
	tests := []struct {
		name, arch string
		cfg        func() *modelconfig.Config
		reason     string
	}{
		{"gemma4 pruned to different counts per layer", "gemma4", func() *modelconfig.Config {
			c := loadConfig(t, "gemma4")
			per := make([]any, c.NumLayers)
			for i := range per {
				per[i] = c.NumExperts - i%2
			}
			return withKeys(t, "gemma4", map[string]any{"num_experts_per_layer": per})
		}, "num_experts_per_layer (a non-uniformly pruned checkpoint) is not supported for gemma4 by this build"},
		{"top-k above the expert count", "qwen3_moe", func() *modelconfig.Config {
			return withKeys(t, "qwen3_moe", map[string]any{"num_experts": 8, "num_experts_per_tok": 20})
		}, "layer 0 is a MoE layer but num_experts 8, num_experts_per_tok 20"},
		{"config.json with only model_type", "qwen3_moe", func() *modelconfig.Config {
			path := filepath.Join(t.TempDir(), "config.json")
			require.NoError(t, os.WriteFile(path, []byte(`{"model_type":"qwen3_moe"}`), 0o644))
			c, err := modelconfig.ReadFile(path)
			require.NoError(t, err)
			return c
		}, "hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads and vocab_size must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arch, ok := b.Registry.Lookup(tt.arch)
			require.True(t, ok)
			cfg := tt.cfg()
			loaderErr := arch.ValidateConfig(cfg)
			require.Error(t, loaderErr)
			require.ErrorIs(t, loaderErr, fault.ErrUnsupported)
			require.Contains(t, loaderErr.Error(), tt.reason)
			for _, in := range []*checkpoint.Inspection{
				inspection(cfg, checkpoint.Engine, checkpoint.Quant{Mode: "bf16", Bits: 16, Source: "tensors"}),
				checkpoint.InspectConfig("/cache", cfg, nil, ""),
			} {
				rep := b.Check("/ckpt", arch, in, preflight.CheckOptions{})
				require.False(t, rep.Supported)
				require.Contains(t, rep.Verdict, tt.reason)
				require.Contains(t, rep.Verdict, loaderErr.Error())
				require.Nil(t, rep.ServeCommand)
				for _, p := range rep.PathOrder {
					require.NotEqual(t, capability.OK, p.Status, "%s: %s", p.Path, p.Reason)
				}
				require.Equal(t, capability.Blocked, rep.Paths[capability.OpenAIHTTP].Status)
			}
			// The unmodified testdata config still passes.
			require.NoError(t, arch.ValidateConfig(loadConfig(t, tt.arch)))
		})
	}
}
