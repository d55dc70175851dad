package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/golden"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/stretchr/testify/require"
)

func runApp(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	app := newApp()
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	code = cliapp.Run(context.Background(), app, append([]string{"mach-prune"}, args...), &errb)
	return out.String(), errb.String(), code
}

func source(t *testing.T) string {
	t.Helper()
	root, err := fixture.Dir()
	require.NoError(t, err)
	return filepath.Join(root, "qwen3_moe_mlx4") // MoE layers 0 and 2, 8 experts, top-2
}

const plan = `{"candidate_id":"tiny_k6","num_experts":8,"keep":{"0":[0,2,3,5,6,7],"2":[1,2,3,4,5,7]}}
{"candidate_id":"tiny_mixed","num_experts":8,"method":"manual","keep":{"0":[0,2,3,5,6,7],"2":[4,7]}}
`

func writePlan(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keep_list.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func TestPrune(t *testing.T) {
	src := source(t)
	p := writePlan(t, plan)
	for _, id := range []string{"tiny_k6", "tiny_mixed"} {
		t.Run(id, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			stdout, stderr, code := runApp(t, "--source", src, "--output", out, "--plan", p, "--candidate-id", id)
			require.Equal(t, cliapp.ExitOK, code, stderr)
			require.Empty(t, stderr, "no progress when stderr is not a terminal")
			golden.Check(t, id+".golden", strings.NewReplacer(src, "$SRC", out, "$OUT").Replace(stdout))
			require.FileExists(t, filepath.Join(out, "expert_map.json"))
		})
	}
}

func TestKeepAllJSON(t *testing.T) {
	src := source(t)
	for _, args := range [][]string{{}, {"--keep", "all"}} {
		out := filepath.Join(t.TempDir(), "out")
		stdout, stderr, code := runApp(t, append([]string{"--source", src, "--output", out, "--json", "--max-shard-size", "50KB"}, args...)...)
		require.Equal(t, cliapp.ExitOK, code, stderr)
		var s map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &s))
		require.Nil(t, s["candidate_id"])
		require.Equal(t, "stacked", s["source_layout"])
		require.Equal(t, "per_expert", s["layout"])
		require.Equal(t, 8.0, s["num_experts"])
		require.Equal(t, []any{
			map[string]any{"layer": 0.0, "source_experts": 8.0, "kept": 8.0, "removed": 0.0},
			map[string]any{"layer": 2.0, "source_experts": 8.0, "kept": 8.0, "removed": 0.0},
		}, s["layers"])
		require.Len(t, s["shards"], 4)
		require.Equal(t, s["bytes_before"], s["bytes_after"])
		require.Equal(t, []any{"generation_config.json"}, s["copied_files"])
		require.Equal(t, false, s["dry_run"])
	}
}

func TestDryRunAndSingleCandidate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := writePlan(t, strings.Split(plan, "\n")[0])
	stdout, stderr, code := runApp(t, "--source", source(t), "--output", out, "--plan", p, "--dry-run")
	require.Equal(t, cliapp.ExitOK, code, stderr)
	require.Contains(t, stdout, "candidate: tiny_k6\n")
	require.Contains(t, stdout, "dry run:   nothing written (--dry-run)\n")
	require.NoDirExists(t, out)
}

func TestErrors(t *testing.T) {
	src := source(t)
	p := writePlan(t, plan)
	out := filepath.Join(t.TempDir(), "out")
	notEmpty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(notEmpty, "x"), nil, 0o644))
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no source", []string{"--output", out}, cliapp.ExitUsage, "missing --source"},
		{"no output", []string{"--source", src}, cliapp.ExitUsage, "missing --output"},
		{"argument", []string{"--source", src, "--output", out, "extra"}, cliapp.ExitUsage, `unexpected argument "extra"`},
		{"keep value", []string{"--source", src, "--output", out, "--keep", "half"}, cliapp.ExitUsage, `--keep "half": the only value is 'all'`},
		{"keep and plan", []string{"--source", src, "--output", out, "--keep", "all", "--plan", p}, cliapp.ExitUsage, "--keep all and --plan exclude each other"},
		{"candidate without plan", []string{"--source", src, "--output", out, "--candidate-id", "x"}, cliapp.ExitUsage, `--candidate-id "x" needs --plan`},
		{"shard size", []string{"--source", src, "--output", out, "--max-shard-size", "big"}, cliapp.ExitUsage, `--max-shard-size "big"`},
		{"which candidate", []string{"--source", src, "--output", out, "--plan", p}, cliapp.ExitUsage,
			"missing --candidate-id: " + p + " has 2 candidates: tiny_k6, tiny_mixed"},
		{"unknown candidate", []string{"--source", src, "--output", out, "--plan", p, "--candidate-id", "k5"}, cliapp.ExitUsage,
			`unknown candidate "k5": ` + p + ` has 2 candidate(s): "tiny_k6", "tiny_mixed"`},
		{"missing plan", []string{"--source", src, "--output", out, "--plan", p + ".nope"}, cliapp.ExitIO, "no such file"},
		{"malformed plan", []string{"--source", src, "--output", out, "--plan", writePlan(t, `{"candidate_id":"a","num_experts":8,"keep":{"0":[3,1]}}`)},
			cliapp.ExitIO, `line 1: keep["0"]: expert ids must be ascending, but 1 follows 3`},
		{"out of range", []string{"--source", src, "--output", out, "--plan", writePlan(t, `{"candidate_id":"a","num_experts":8,"keep":{"0":[0,8],"2":[0,1]}}`)},
			cliapp.ExitIO, `expert 8 is out of range: num_experts is 8`},
		{"duplicated", []string{"--source", src, "--output", out, "--plan", writePlan(t, `{"candidate_id":"a","num_experts":8,"keep":{"0":[0,0],"2":[0,1]}}`)},
			cliapp.ExitIO, `expert 0 is listed twice`},
		{"other model", []string{"--source", src, "--output", out, "--plan", writePlan(t, `{"candidate_id":"a","num_experts":128,"keep":{"0":[0,1],"2":[0,1]}}`)},
			cliapp.ExitUsage, `is for a model with num_experts 128, but ` + src + ` has 8 routed experts per layer`},
		{"below top-k", []string{"--source", src, "--output", out, "--plan", writePlan(t, `{"candidate_id":"a","num_experts":8,"keep":{"0":[5],"2":[0,1]}}`)},
			cliapp.ExitUsage, "keeps 1 experts in layer 0, fewer than the 2 each token is routed to"},
		{"output not empty", []string{"--source", src, "--output", notEmpty}, cliapp.ExitUsage, "exists and is not empty; choose another --output or pass --force"},
		{"source missing", []string{"--source", src + "-nope", "--output", out}, cliapp.ExitIO, "is not a checkpoint directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runApp(t, tt.args...)
			require.Equal(t, tt.code, code, stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.want)
			require.NoDirExists(t, out)
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"5GB": 5e9, "500MB": 5e8, "2GiB": 2 << 30, "64KiB": 64 << 10, "1000": 1000, "1.5 GB": 1.5e9, "12b": 12} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1GB", "GB", "1e30", "five"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
}

func TestHelp(t *testing.T) {
	stdout, _, code := runApp(t, "--help")
	require.Equal(t, cliapp.ExitOK, code)
	for _, s := range []string{"--plan", "--candidate-id", "--keep", "--force", "--max-shard-size", "--dry-run", "--json",
		"PLAN (--plan)", "num_experts_per_layer", "expert_map.json", "EXAMPLES:", "mach-prune --source ./src --output ./engine_k256 --keep all", "EXIT STATUS"} {
		require.Contains(t, stdout, s)
	}
}

// A plan keeping different expert counts per layer of a gemma4 checkpoint
// is refused before anything is written: the gemma4 loader (the same
// config validation, registry.Arch.CheckConfig) cannot run it. A uniform
// plan on the same checkpoint prunes.
func TestGemma4NonUniformRefused(t *testing.T) {
	root, err := fixture.Dir()
	require.NoError(t, err)
	src := filepath.Join(root, "gemma4") // 4 layers, all MoE, 8 experts, top-2
	out := filepath.Join(t.TempDir(), "out")
	p := writePlan(t, `{"candidate_id":"mixed","num_experts":8,"keep":{"0":[0,1,2,3,4,5],"1":[0,1,2,3],"2":[0,1,2,3,4,5],"3":[0,1,2,3,4,5]}}`)
	stdout, stderr, code := runApp(t, "--source", src, "--output", out, "--plan", p)
	require.Equal(t, cliapp.ExitUsage, code, stdout+stderr)
	require.Contains(t, stderr, "the pruned checkpoint would not load: the gemma4 loader refuses its config.json: "+
		"num_experts_per_layer (a non-uniformly pruned checkpoint) is not supported for gemma4 by this build")
	_, err = os.Stat(out)
	require.True(t, os.IsNotExist(err), "nothing is written: %v", err)

	p = writePlan(t, `{"candidate_id":"k6","num_experts":8,"keep":{"0":[0,1,2,3,4,5],"1":[0,1,2,3,4,7],"2":[0,1,2,3,4,5],"3":[0,1,2,3,4,5]}}`)
	stdout, stderr, code = runApp(t, "--source", src, "--output", out, "--plan", p)
	require.Equal(t, cliapp.ExitOK, code, stdout+stderr)
}

// The progress line is cleared once, before the summary is written.
func TestProgressFinishClearsOnce(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b}
	p.finish()
	require.Empty(t, b.String(), "nothing drawn, nothing to clear")
	p.update(prune.Progress{Shard: 1, Shards: 1, Done: 10, Total: 10})
	require.Contains(t, b.String(), "shard 1/1  100.0%")
	b.Reset()
	p.finish()
	require.Equal(t, "\r\033[K", b.String())
	b.Reset()
	p.finish()
	require.Empty(t, b.String(), "cleared once")
}
