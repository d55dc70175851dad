package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/golden"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/stretchr/testify/require"
)

func runApp(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	app := newApp(registry.Default())
	var out, errb bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errb
	code := cliapp.Run(context.Background(), app, append([]string{"mach-archs"}, args...), &errb)
	return out.String(), errb.String(), code
}

func TestTable(t *testing.T) {
	out, _, code := runApp(t)
	require.Equal(t, 0, code)
	golden.Check(t, "archs.golden", out)
	for _, n := range []string{"deepseek_v4", "gemma4", "gpt_oss", "qwen3_5_moe", "qwen3_moe"} {
		require.Contains(t, out, n)
	}
}

func TestJSON(t *testing.T) {
	out, _, code := runApp(t, "--json")
	require.Equal(t, 0, code)
	golden.Check(t, "archs.json.golden", out)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 5)
	var types []string
	for _, o := range got {
		types = append(types, o["model_type"].(string))
		for _, k := range []string{"swiglu", "stacked", "expert_bias", "wrapped", "bits", "group", "model_module", "kv_cache_kind", "specdec_kind", "continuous_batching"} {
			require.Contains(t, o, k, "%s lacks %s", o["model_type"], k)
		}
	}
	require.IsIncreasing(t, types)
}

func TestUsageError(t *testing.T) {
	_, errOut, code := runApp(t, "--nosuch")
	require.Equal(t, cliapp.ExitUsage, code)
	require.Contains(t, errOut, "nosuch")
	_, _, code = runApp(t, "extra")
	require.Equal(t, cliapp.ExitUsage, code)
}
