package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/stretchr/testify/require"
)

func runApp(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	app := newApp()
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	code := cliapp.Run(context.Background(), app, cliapp.Interspersed(app, append([]string{"mach-export-sidecar"}, args...)), &errb)
	return out.String(), errb.String(), code
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "models", name))
	require.NoError(t, err)
	return p
}

// withConfig returns a copy of checkpoint src (weights linked) whose
// config.json has the given keys replaced.
func withConfig(t *testing.T, src string, set map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(raw, &cfg))
	maps.Copy(cfg, set)
	raw, err = json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644))
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		if e.Name() != "config.json" && !e.IsDir() {
			require.NoError(t, os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dir, e.Name())))
		}
	}
	return dir
}

// The seed's flags: --checkpoint, --output, --num-experts, --bits.
func TestExport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sc")
	stdout, stderr, code := runApp(t, "--checkpoint", fixture(t, "qwen3_moe_bf16"), "--output", out, "--num-experts", "8", "--bits", "4", "--json")
	require.Equal(t, 0, code, stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	require.Equal(t, out, res["output"])
	require.Equal(t, true, res["quantized"])
	require.Equal(t, map[string]any{"mode": "affine", "bits": 4.0, "group_size": 64.0}, res["quant"])
	require.Equal(t, 2.0, res["layers"])
	for _, k := range []string{"model_type", "num_experts", "expert_stride", "bytes", "seconds"} {
		require.Contains(t, res, k)
	}
	l, err := sidecar.Load(out)
	require.NoError(t, err)
	require.NoError(t, l.VerifyChecksums(context.Background(), out, nil))

	stdout, stderr, code = runApp(t, "--checkpoint", fixture(t, "qwen3_moe_mlx4"), "--output", out)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "2 layers × 8 experts, affine (4-bit, group 64) experts (copied unchanged)")
}

// A checkpoint pruned to different expert counts per layer is summed up
// with the range and the total, not as a uniform grid.
func TestExportUnevenLayers(t *testing.T) {
	ckpt := filepath.Join(t.TempDir(), "pruned")
	_, err := prune.Run(t.Context(), prune.Options{Source: fixture(t, "gpt_oss"), Output: ckpt, Candidate: &pruneplan.Candidate{
		ID: "uneven", NumExperts: 8, Keep: map[int][]int{0: {1, 6}, 1: {0, 1, 2, 3, 4, 5, 6}, 2: {0, 2, 3, 4, 5, 6, 7}, 3: {1, 2, 3, 4, 5, 6, 7}}}})
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "sc")
	stdout, stderr, code := runApp(t, "--checkpoint", ckpt, "--output", out)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "4 layers, 2–7 experts (23 in all), f32 (32-bit) experts (copied unchanged)")
	require.NotContains(t, stdout, "×")

	stdout, stderr, code = runApp(t, "--checkpoint", ckpt, "--output", out, "--json")
	require.Equal(t, 0, code, stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	require.Equal(t, []any{2.0, 7.0, 7.0, 7.0}, res["experts_per_layer"])
}

func TestExportErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, cliapp.ExitUsage, "missing --checkpoint"},
		{[]string{"--checkpoint", "/no/such/dir"}, cliapp.ExitUsage, "not a directory"},
		{[]string{"--checkpoint", "x", "extra"}, cliapp.ExitUsage, "unexpected argument"},
		{[]string{"--checkpoint", "x", "--bits", "-1"}, cliapp.ExitUsage, "--bits"},
		{[]string{"--checkpoint", "x", "--group-size", "32"}, cliapp.ExitUsage, "--group-size applies to --bits"},
		{[]string{"--checkpoint", "NUM", "--num-experts", "16"}, cliapp.ExitUsage, "--num-experts 16 disagrees with the checkpoint"},
		{[]string{"--checkpoint", "MLX", "--bits", "8"}, cliapp.ExitUsage, "never requantizes"},
		// A config the qwen3_moe loader refuses: its sidecar could never be served.
		{[]string{"--checkpoint", "TOPK"}, cliapp.ExitNo, "the qwen3_moe loader refuses this config.json"},
	}
	for _, tt := range tests {
		args := append([]string(nil), tt.args...)
		for i, a := range args {
			switch a {
			case "NUM":
				args[i] = fixture(t, "qwen3_moe")
			case "MLX":
				args[i] = fixture(t, "qwen3_moe_mlx4")
			case "TOPK":
				args[i] = withConfig(t, fixture(t, "qwen3_moe"), map[string]any{"num_experts_per_tok": 20})
			}
		}
		out := t.TempDir()
		_, stderr, code := runApp(t, append(args, "--output", out)...)
		require.Equal(t, tt.code, code, "%v: %s", tt.args, stderr)
		require.Contains(t, stderr, tt.msg, "%v", tt.args)
		ents, _ := os.ReadDir(out)
		require.Empty(t, ents)
	}
}

func TestHelp(t *testing.T) {
	stdout, _, code := runApp(t, "--help")
	require.Equal(t, 0, code)
	for _, s := range []string{"--checkpoint", "--output", "--num-experts", "--bits", "--group-size", "layout.json", "CRC-32C", "EXAMPLES", "mach check CHECKPOINT --verify"} {
		require.True(t, strings.Contains(stdout, s), "help lacks %q", s)
	}
}
