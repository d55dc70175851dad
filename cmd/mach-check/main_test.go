package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ct "github.com/maniac-ai/mach/pkg/checkpoint/checkpointtest"
	"github.com/maniac-ai/mach/pkg/cliapp"
	models "github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/golden"
	"github.com/maniac-ai/mach/pkg/hostmem"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/stretchr/testify/require"
)

// testDeps are the real dependencies with a fixed 32 GB host.
func testDeps() deps {
	d := defaultDeps()
	d.host = func() (hostmem.Info, error) {
		return hostmem.Info{Total: 64e9, Available: 32e9, Source: "test"}, nil
	}
	d.getenv = func(string) string { return "" }
	return d
}

func runApp(t *testing.T, d deps, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	app := newApp(d)
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	argv := cliapp.Interspersed(app, append([]string{"mach-check"}, args...))
	code = cliapp.Run(context.Background(), app, argv, &errb)
	return out.String(), errb.String(), code
}

// fixture materializes a header-only checkpoint and returns its directory.
func fixture(t *testing.T, name string) string {
	return ct.Materialize(t, filepath.Join("testdata", name))
}

func TestReportGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		why  string
	}{
		{"qwen3_moe", cliapp.ExitOK, ""},        // per-expert: served with resident experts
		{"gpt_oss_mxfp4", cliapp.ExitOK, ""},    // stacked: served resident (resident_stacked)
		{"qwen3_5_moe_mlx4", cliapp.ExitOK, ""}, // stacked MLX: served resident
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixture(t, tc.name)
			out, errOut, code := runApp(t, testDeps(), dir)
			require.Equal(t, tc.code, code, errOut)
			if tc.why != "" {
				require.Contains(t, errOut, tc.why)
			}
			golden.Check(t, "report_"+tc.name+".golden", strings.ReplaceAll(out, dir, "$CKPT"))
		})
	}
}

func TestReportJSON(t *testing.T) {
	dir := fixture(t, "gpt_oss_mxfp4")
	out, _, code := runApp(t, testDeps(), dir, "--json", "--context-length", "256", "--expert-cache-gb", "0.00005")
	require.Equal(t, cliapp.ExitOK, code) // stacked MXFP4 experts serve resident
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Equal(t, dir, r["model"])
	require.Equal(t, "gpt_oss", r["model_type"])
	require.Equal(t, true, r["supported"])
	require.Equal(t, "stacked", r["layout"])
	require.Equal(t, map[string]any{"mode": "mxfp4", "bits": 4.0, "group_size": 32.0}, r["quant"])
	require.Equal(t, map[string]any{"sidecar": false, "draft_dir": nil}, r["artifacts"])
	mem := r["memory"].(map[string]any)
	require.Equal(t, "fits", mem["verdict"])
	require.Equal(t, 256.0, mem["context_length"])
	require.Equal(t, 32e9, mem["available_bytes"])
	require.Equal(t, 50000+mem["non_expert_bytes"].(float64)+mem["kv_bytes"].(float64), mem["working_set_bytes"], "the expert cache caps the experts")
	paths := r["paths"].(map[string]any)
	require.Len(t, paths, 10)
	require.Equal(t, map[string]any{"status": "n/a", "reason": "gpt_oss has no speculative-decoding family"}, paths["specdec"])
	require.Equal(t, map[string]any{"status": "ok", "reason": "stacked-layout checkpoint usable for resident serving"}, paths["resident_stacked"])
	require.Equal(t, "needs_artifact", paths["expert_streaming"].(map[string]any)["status"])
	require.Equal(t, "supported", r["verdict"])
	require.Equal(t, "mach-serve --checkpoint "+dir, r["serve_command"])
}

func TestAllArchs(t *testing.T) {
	out, _, code := runApp(t, testDeps(), "--all-archs")
	require.Equal(t, cliapp.ExitOK, code)
	golden.Check(t, "all_archs.golden", out)
	out, _, code = runApp(t, testDeps(), "--all-archs", "--json")
	require.Equal(t, cliapp.ExitOK, code)
	golden.Check(t, "all_archs.json.golden", out)
	var m struct {
		Paths []string                                `json:"paths"`
		Archs map[string]map[string]map[string]string `json:"archs"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	require.Len(t, m.Paths, 10)
	require.Len(t, m.Archs, 5)
}

// An engine-layout checkpoint with a sidecar and a draft directory.
func TestEngineLayoutReport(t *testing.T) {
	dir := t.TempDir()
	ct.WriteFile(t, dir, "config.json", `{"model_type":"qwen3_5_moe","text_config":{"hidden_size":64,"num_hidden_layers":1,
		"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":100,"num_experts":2,"num_experts_per_tok":1,
		"moe_intermediate_size":32,"shared_expert_intermediate_size":32,"layer_types":["full_attention"],"max_position_embeddings":4096},"torch_dtype":"bfloat16"}`)
	var ts []ct.Tensor
	for e := range 2 {
		p := fmt.Sprintf("model.language_model.layers.0.mlp.experts.%d.", e)
		ts = append(ts, ct.T(p+"gate_proj.weight", "BF16", 32, 64), ct.T(p+"up_proj.weight", "BF16", 32, 64), ct.T(p+"down_proj.weight", "BF16", 64, 32))
	}
	ts = append(ts, ct.T("model.language_model.embed_tokens.weight", "BF16", 100, 64))
	ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), ts)
	l := &sidecar.Layout{Format: sidecar.Format, Version: sidecar.Version, ModelType: "qwen3_5_moe", NumExperts: 2,
		Quant: sidecar.Quant{Mode: "bf16", Bits: 16}, ExpertStride: 12288, Components: []sidecar.Component{
			{Name: "gate_proj.weight", DType: "BF16", Shape: []int64{32, 64}, Offset: 0, Size: 4096},
			{Name: "up_proj.weight", DType: "BF16", Shape: []int64{32, 64}, Offset: 4096, Size: 4096},
			{Name: "down_proj.weight", DType: "BF16", Shape: []int64{64, 32}, Offset: 8192, Size: 4096},
		}, Layers: []sidecar.Layer{{Index: 0, File: "layer_00.bin", Size: 24576}}}
	sd := filepath.Join(dir, sidecar.DirName)
	require.NoError(t, os.MkdirAll(sd, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(sd, "layer_00.bin"), make([]byte, 24576), 0o644))
	require.NoError(t, l.WriteFile(sd))
	draft := filepath.Join(dir, "draft")
	ct.WriteFile(t, draft, "config.json", `{"model_type":"qwen3"}`)
	ct.WriteSafetensors(t, filepath.Join(draft, "model.safetensors"), []ct.Tensor{ct.T("fc.weight", "BF16", 2, 2)})

	out, errOut, code := runApp(t, testDeps(), dir)
	require.Equal(t, cliapp.ExitOK, code, errOut)
	golden.Check(t, "report_engine.golden", strings.ReplaceAll(out, dir, "$CKPT"))

	// The sidecar loses a layer file: a warning, and sidecar=invalid (the
	// engine-layout experts are still served resident).
	require.NoError(t, os.Remove(filepath.Join(sd, "layer_00.bin")))
	out, errOut, code = runApp(t, testDeps(), dir)
	require.Equal(t, cliapp.ExitOK, code)
	require.Contains(t, out, "layout:     per_expert\n")
	require.Contains(t, out, "sidecar=invalid")
	require.Contains(t, errOut, "warning: incomplete expert sidecar: layout.json declares layer 0 but")
}

func TestBadInput(t *testing.T) {
	good := `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":1,"num_experts":2,"moe_intermediate_size":32}`
	tensors := func(experts int) []ct.Tensor {
		var ts []ct.Tensor
		for e := range experts {
			p := fmt.Sprintf("model.layers.0.mlp.experts.%d.", e)
			ts = append(ts, ct.T(p+"gate_proj.weight", "BF16", 32, 64), ct.T(p+"up_proj.weight", "BF16", 32, 64), ct.T(p+"down_proj.weight", "BF16", 64, 32))
		}
		return ts
	}
	ckpt := func(t *testing.T, cfg string, ts []ct.Tensor) string {
		dir := t.TempDir()
		if cfg != "" {
			ct.WriteFile(t, dir, "config.json", cfg)
		}
		if ts != nil {
			ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), ts)
		}
		return dir
	}
	tests := []struct {
		name string
		args func(t *testing.T) []string
		code int
		want string
	}{
		{"unknown model_type", func(t *testing.T) []string {
			return []string{ckpt(t, `{"model_type":"llama"}`, nil)}
		}, cliapp.ExitNo, `unsupported model_type "llama"; supported: deepseek_v4, gemma4, gpt_oss, qwen3_5_moe, qwen3_moe`},
		{"no model_type", func(t *testing.T) []string { return []string{ckpt(t, `{}`, nil)} }, cliapp.ExitNo, "config.json has no model_type"},
		{"missing config.json", func(t *testing.T) []string { return []string{t.TempDir()} }, cliapp.ExitIO, "must contain config.json"},
		{"invalid JSON", func(t *testing.T) []string { return []string{ckpt(t, `{"model_type":`, nil)} }, cliapp.ExitIO, "invalid config.json"},
		{"truncated safetensors", func(t *testing.T) []string {
			dir := ckpt(t, good, tensors(2))
			p := filepath.Join(dir, "model.safetensors")
			st, _ := os.Stat(p)
			require.NoError(t, os.Truncate(p, st.Size()-1))
			return []string{dir}
		}, cliapp.ExitIO, "outside the"},
		{"header length larger than the file", func(t *testing.T) []string {
			dir := ckpt(t, good, nil)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte{0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'}, 0o644))
			return []string{dir}
		}, cliapp.ExitIO, "larger than the file"},
		{"shapes disagree", func(t *testing.T) []string { return []string{ckpt(t, good, tensors(3))} }, cliapp.ExitIO, "holds 3 routed experts"},
		{"model is a file", func(t *testing.T) []string {
			return []string{ct.WriteFile(t, t.TempDir(), "x.json", "{}")}
		}, cliapp.ExitUsage, "is a file"},
		{"no such directory", func(t *testing.T) []string { return []string{"./does/not/exist"} }, cliapp.ExitIO, "no such directory"},
		{"absolute path", func(t *testing.T) []string { return []string{"/does/not/exist"} }, cliapp.ExitIO, "no such directory"},
		{"repo id with ..", func(t *testing.T) []string { return []string{"org/.."} }, cliapp.ExitUsage, `".." and "--" are not allowed`},
		{"repo id characters", func(t *testing.T) []string { return []string{"org/na$me"} }, cliapp.ExitUsage, "not allowed"},
		{"local-only with an uncached repo id", func(t *testing.T) []string { return []string{"org/name", "--local-only"} }, cliapp.ExitIO, "not in the model caches"},
		{"no model", func(t *testing.T) []string { return nil }, cliapp.ExitUsage, "missing MODEL"},
		{"two models", func(t *testing.T) []string { return []string{"a", "b"} }, cliapp.ExitUsage, "want one MODEL"},
		{"all-archs with a model", func(t *testing.T) []string { return []string{"--all-archs", "org/x"} }, cliapp.ExitUsage, "omit MODEL"},
		{"negative context", func(t *testing.T) []string { return []string{"x", "--context-length", "-1"} }, cliapp.ExitUsage, "--context-length"},
		{"context beyond the model's", func(t *testing.T) []string {
			return []string{ckpt(t, `{"model_type":"qwen3_moe","max_position_embeddings":1024}`, nil), "--context-length", "4096"}
		}, cliapp.ExitUsage, "--context-length 4096 exceeds the model's 1024 (max_position_embeddings in"},
		{"negative cache", func(t *testing.T) []string { return []string{"x", "--expert-cache-gb", "-2"} }, cliapp.ExitUsage, "--expert-cache-gb"},
		{"unknown flag", func(t *testing.T) []string { return []string{"--nope"} }, cliapp.ExitUsage, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runApp(t, testDeps(), tt.args(t)...)
			require.Equal(t, tt.code, code, errOut)
			require.Contains(t, errOut, tt.want)
			require.NotContains(t, errOut, "panic")
		})
	}
}

// fakeHub records requests and serves config.json and layout.json.
type fakeHub struct {
	mu       sync.Mutex
	files    map[string]string
	requests []string
	auth     []string
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.Path)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	body, ok := f.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(body))
}

func TestRepoID(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "qwen3_5_moe_mlx4", "config.json"))
	require.NoError(t, err)
	layout := `{"format":"mach-expert-sidecar","version":1,"model_type":"qwen3_5_moe","num_experts":8,
		"quant":{"mode":"affine","bits":4,"group_size":64},"expert_stride":4096,
		"components":[{"name":"gate_proj.weight","dtype":"U32","shape":[64,8],"offset":0,"size":2048}],
		"layers":[{"index":0,"file":"layer_00.bin","size":32768},{"index":1,"file":"layer_01.bin","size":32768},
		          {"index":2,"file":"layer_02.bin","size":32768},{"index":3,"file":"layer_03.bin","size":32768}]}`
	f := &fakeHub{files: map[string]string{
		"/mlx-community/Tiny-4bit/resolve/main/config.json":                string(b),
		"/mlx-community/Tiny-4bit/resolve/main/expert_sidecar/layout.json": layout,
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_TOKEN", "hf_test")
	cache := t.TempDir()

	out, errOut, code := runApp(t, testDeps(), "mlx-community/Tiny-4bit", "--cache-dir", cache)
	require.Equal(t, cliapp.ExitOK, code, errOut) // qwen3_5_moe with an expert sidecar streams
	require.Equal(t, []string{
		"/mlx-community/Tiny-4bit/resolve/main/config.json",
		"/mlx-community/Tiny-4bit/resolve/main/expert_sidecar/layout.json",
	}, f.requests, "config.json and layout.json only; weights are never requested")
	require.Equal(t, []string{"Bearer hf_test", "Bearer hf_test"}, f.auth)
	golden.Check(t, "report_remote.golden", out)
	_, err = os.Stat(filepath.Join(cache, "hub", "models--mlx-community--Tiny-4bit", "snapshots", "main", "config.json"))
	require.NoError(t, err, "cached under the engine cache root")

	// --local-only never touches the network: the cached config serves.
	f.requests = nil
	remoteCode := code
	local, errOut, code := runApp(t, testDeps(), "mlx-community/Tiny-4bit", "--cache-dir", cache, "--local-only")
	require.Equal(t, remoteCode, code, errOut)
	require.Equal(t, out, local, "the same report from the cached config")
	require.Empty(t, f.requests)
	_, errOut, code = runApp(t, testDeps(), "mlx-community/Other", "--cache-dir", cache, "--local-only")
	require.Equal(t, cliapp.ExitIO, code)
	require.Contains(t, errOut, "missing: every file")
	require.Empty(t, f.requests)

	// Offline: the cached copy is used with a warning.
	srv.Close()
	out, errOut, code = runApp(t, testDeps(), "mlx-community/Tiny-4bit", "--cache-dir", cache, "--json")
	require.Equal(t, cliapp.ExitOK, code)
	require.Contains(t, errOut, "using the cached copy")
	require.Contains(t, out, `"model_type": "qwen3_5_moe"`)

	// Offline without a cache: exit 5 with a clear message.
	_, errOut, code = runApp(t, testDeps(), "mlx-community/Other", "--cache-dir", cache)
	require.Equal(t, cliapp.ExitNetwork, code)
	require.Contains(t, errOut, "are you offline?")
}

// TestRepoIDFromHFCache: a repo id whose snapshot (weights included) is in
// the Hugging Face cache is inspected in full, exactly as its directory
// would be, without any request.
func TestRepoIDFromHFCache(t *testing.T) {
	dir := fixture(t, "qwen3_moe")
	wantOut, wantErr, wantCode := runApp(t, testDeps(), dir)

	hf := t.TempDir()
	snap := filepath.Join(hf, "models--org--tiny", "snapshots", "0123456789abcdef0123456789abcdef01234567")
	require.NoError(t, os.MkdirAll(filepath.Dir(snap), 0o755))
	require.NoError(t, os.Rename(fixture(t, "qwen3_moe"), snap))
	require.NoError(t, os.MkdirAll(filepath.Join(hf, "models--org--tiny", "refs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hf, "models--org--tiny", "refs", "main"), []byte(filepath.Base(snap)), 0o644))
	f := &fakeHub{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL)
	d := testDeps()
	d.getenv = func(k string) string { return map[string]string{"HF_HUB_CACHE": hf}[k] }

	out, errOut, code := runApp(t, d, "org/tiny", "--cache-dir", t.TempDir())
	require.Empty(t, f.requests, "the cached snapshot is used without any request")
	require.Equal(t, wantCode, code, errOut)
	require.Equal(t, strings.ReplaceAll(wantOut, dir, "org/tiny"), out, "the same report as for the directory")
	require.Equal(t, strings.ReplaceAll(wantErr, dir, "org/tiny"), errOut)
}

func TestRepoNotFound(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL)
	_, errOut, code := runApp(t, testDeps(), "org/missing", "--cache-dir", t.TempDir(), "--revision", "v9")
	require.Equal(t, cliapp.ExitNetwork, code)
	require.Contains(t, errOut, "HTTP 404")
	require.Contains(t, errOut, "--revision v9")
}

func TestHelpDocumentsTheContract(t *testing.T) {
	out, _, code := runApp(t, testDeps(), "--help")
	require.Equal(t, cliapp.ExitOK, code)
	for _, s := range []string{"--all-archs", "--draft-dir", "--context-length", "--expert-cache-gb", "--local-only", "--revision", "--cache-dir",
		"fits when", "80%", "HF_ENDPOINT", "HF_TOKEN", "MACH_CACHE_DIR", "EXAMPLES", "EXIT STATUS", "MODEL/draft"} {
		require.Contains(t, out, s)
	}
}

// mach check on mach-prune's output reports the per-expert layout and the
// pruned expert counts (per layer when they differ).
func TestPrunedCheckpoint(t *testing.T) {
	root, err := models.Dir()
	require.NoError(t, err)
	src := filepath.Join(root, "qwen3_moe_mlx4") // MoE layers 0 and 2
	for _, tt := range []struct {
		keep     map[int][]int
		line     string
		perLayer map[string]any
	}{
		{map[int][]int{0: {0, 2, 3, 5, 6, 7}, 2: {1, 2, 3, 4, 5, 7}}, "experts:    6 routed per MoE layer, top-2", nil},
		{map[int][]int{0: {0, 2, 3, 5, 6, 7}, 2: {4, 7}}, "experts:    2–6 routed per MoE layer (layer 0: 6, 2: 2), top-2", map[string]any{"0": 6.0, "2": 2.0}},
	} {
		out := filepath.Join(t.TempDir(), "k6")
		_, err := prune.Run(t.Context(), prune.Options{Source: src, Output: out,
			Candidate: &pruneplan.Candidate{ID: "k6", NumExperts: 8, Keep: tt.keep}})
		require.NoError(t, err)
		stdout, errOut, code := runApp(t, testDeps(), out)
		// Supported or not depends on what this build serves, not on pruning.
		require.Contains(t, []int{cliapp.ExitOK, cliapp.ExitNo}, code, errOut)
		require.Contains(t, stdout, "\nlayout:     per_expert\n")
		require.Contains(t, stdout, "\n"+tt.line+"\n")
		stdout, _, _ = runApp(t, testDeps(), out, "--json")
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &r))
		require.Equal(t, "per_expert", r["layout"])
		var perLayer any
		if tt.perLayer != nil {
			perLayer = tt.perLayer
		}
		require.Equal(t, map[string]any{"routed": 6.0, "per_layer": perLayer, "top_k": 2.0}, r["experts"])
	}
}

// --verify reads the sidecar's layer files and checks every expert's
// checksum: a good sidecar says so, a corrupted one is invalid with the
// expert named and exit status 4, and a checkpoint without one is an
// error.
func TestVerifySidecar(t *testing.T) {
	src, err := filepath.Abs(filepath.Join("..", "..", "testdata", "models", "qwen3_moe_perexpert"))
	require.NoError(t, err)
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	_, stderr, code := runApp(t, testDeps(), dir, "--verify")
	require.Equal(t, cliapp.ExitIO, code, stderr)
	require.Contains(t, stderr, "no expert_sidecar/layout.json to verify")

	_, err = export.Run(context.Background(), export.Options{Checkpoint: dir})
	require.NoError(t, err)
	out, stderr, code := runApp(t, testDeps(), dir, "--verify")
	require.Equal(t, cliapp.ExitOK, code, "verified and servable: %s", stderr)
	require.Contains(t, out, "layout:     engine")
	require.Contains(t, out, "sidecar=yes (checksums verified)")
	require.Contains(t, out, "expert_streaming     ok")
	out, _, _ = runApp(t, testDeps(), dir)
	require.Contains(t, out, "artifacts:  sidecar=yes,", "without --verify only sizes are checked")

	p := filepath.Join(dir, sidecar.DirName, "layer_02.bin")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	l, err := sidecar.ReadFile(filepath.Join(dir, sidecar.DirName, sidecar.LayoutName))
	require.NoError(t, err)
	data[3*l.ExpertStride+10] ^= 4
	require.NoError(t, os.WriteFile(p, data, 0o644))
	out, stderr, code = runApp(t, testDeps(), dir, "--verify")
	require.Equal(t, cliapp.ExitIO, code, stderr)
	require.Contains(t, out, "sidecar=invalid")
	require.Contains(t, out, "layout:     per_expert")
	require.Contains(t, out, "expert_streaming     needs_artifact")
	require.Contains(t, stderr, "layer 2 expert 3")
	require.Contains(t, stderr, "re-run mach-export-sidecar")
	_, _, code = runApp(t, testDeps(), dir)
	require.Equal(t, cliapp.ExitOK, code, "sizes still match, so without --verify the sidecar passes")
}

// Checkpoints the architecture's loader refuses (mach-generate would fail
// with these reasons) are not supported, exit 1, with the loader's reason
// in the human report and in --json.
func TestLoaderRefusals(t *testing.T) {
	gemma, err := os.ReadFile(filepath.Join("..", "..", "pkg", "preflight", "testdata", "gemma4.json"))
	require.NoError(t, err)
	var g map[string]any
	require.NoError(t, json.Unmarshal(gemma, &g))
	text := g["text_config"].(map[string]any)
	layers := int(text["num_hidden_layers"].(float64))
	experts := int(text["num_experts"].(float64))
	per := make([]int, layers)
	for i := range per {
		per[i] = experts - i%2
	}
	text["num_experts_per_layer"] = per
	gemmaPruned, err := json.Marshal(g)
	require.NoError(t, err)

	for _, tc := range []struct {
		name, config, reason string
	}{
		{"gemma4 with num_experts_per_layer", string(gemmaPruned),
			"num_experts_per_layer (a non-uniformly pruned checkpoint) is not supported for gemma4 by this build"},
		{"top-k above the expert count", `{"model_type":"qwen3_moe","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,
			"num_key_value_heads":2,"head_dim":16,"vocab_size":100,"num_experts":8,"num_experts_per_tok":20,"moe_intermediate_size":32,
			"max_position_embeddings":4096,"torch_dtype":"bfloat16"}`,
			"layer 0 is a MoE layer but num_experts 8, num_experts_per_tok 20, moe_intermediate_size 32"},
		{"model_type only", `{"model_type":"qwen3_moe"}`,
			"hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads and vocab_size must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ct.WriteFile(t, dir, "config.json", tc.config)
			ct.WriteSafetensors(t, filepath.Join(dir, "model.safetensors"), []ct.Tensor{ct.T("lm_head.weight", "BF16", 2, 2)})

			out, errOut, code := runApp(t, testDeps(), dir)
			require.Equal(t, cliapp.ExitNo, code, "%s\n%s", out, errOut)
			require.Contains(t, out, "loader refuses this config.json")
			require.Contains(t, out, tc.reason)
			require.Contains(t, errOut, tc.reason)
			require.NotContains(t, out, "mach-serve --checkpoint")

			out, _, code = runApp(t, testDeps(), dir, "--json")
			require.Equal(t, cliapp.ExitNo, code)
			var r struct {
				Supported    bool                         `json:"supported"`
				Verdict      string                       `json:"verdict"`
				ServeCommand *string                      `json:"serve_command"`
				Paths        map[string]map[string]string `json:"paths"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &r))
			require.False(t, r.Supported)
			require.Nil(t, r.ServeCommand)
			require.Contains(t, r.Verdict, tc.reason)
			require.Equal(t, "blocked", r.Paths["openai_http"]["status"])
			require.Contains(t, r.Paths["openai_http"]["reason"], tc.reason)
		})
	}
}
