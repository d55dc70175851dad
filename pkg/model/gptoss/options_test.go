package gptoss_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/stretchr/testify/require"
)

func fixtureConfig(t *testing.T, edit func(map[string]any)) (*modelconfig.Config, error) {
	t.Helper()
	dir, err := fixture.Dir()
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, "gpt_oss", "config.json"))
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(raw, &c))
	edit(c)
	out, err := json.Marshal(c)
	require.NoError(t, err)
	cfg, err := modelconfig.Parse(out)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func TestParseOptions(t *testing.T) {
	cfg, err := fixtureConfig(t, func(map[string]any) {})
	require.NoError(t, err)
	o, err := gptoss.ParseOptions(cfg)
	require.NoError(t, err)
	require.Equal(t, 64, o.Hidden)
	require.Equal(t, 32, o.ExpertWidth, "gpt_oss's intermediate_size is the expert width")
	require.Equal(t, 2, o.TopK)
	require.Equal(t, float32(1e-5), o.Eps)
	require.Equal(t, float32(7), o.Act.Limit)
	// YaRN: factor 32 gives the attention factor 0.1·ln 32 + 1 on cos/sin.
	require.InDelta(t, 0.1*math.Log(32)+1, float64(o.RoPE.Scale), 1e-6)
	require.Len(t, o.RoPE.InvFreq, 8)

	// The activation constants are the registry's.
	a, ok := registry.Default().Lookup(gptoss.ModelType)
	require.True(t, ok)
	require.Equal(t, registry.SiLULimited, a.Activation)
	require.InDelta(t, a.ActivationParams.Alpha, gptoss.Alpha, 0)
	require.InDelta(t, a.ActivationParams.UpOffset, gptoss.UpOffset, 0)
	require.InDelta(t, a.ActivationParams.DefaultLimit, gptoss.DefaultLimit, 0)
	require.Equal(t, "swiglu_limit", a.ActivationParams.LimitKey)

	// Defaults when keys are absent: window 128, layers alternating from
	// sliding.
	cfg, err = fixtureConfig(t, func(c map[string]any) {
		delete(c, "sliding_window")
		delete(c, "layer_types")
		c["swiglu_limit"] = 5.5
	})
	require.NoError(t, err)
	o, err = gptoss.ParseOptions(cfg)
	require.NoError(t, err)
	require.Equal(t, gptoss.DefaultWindow, o.Window)
	require.Equal(t, []bool{true, false, true, false}, o.Sliding)
	require.Equal(t, float32(5.5), o.Act.Limit)
}

func TestParseOptionsRefuses(t *testing.T) {
	for name, edit := range map[string]func(map[string]any){
		"other model_type":   func(c map[string]any) { c["model_type"] = "qwen3_moe" },
		"no attention bias":  func(c map[string]any) { c["attention_bias"] = false },
		"heads not multiple": func(c map[string]any) { c["num_key_value_heads"] = 3 },
		"top-k over experts": func(c map[string]any) { c["num_experts_per_tok"] = 9; c["experts_per_token"] = 9 },
		"chunked layer": func(c map[string]any) {
			c["layer_types"] = []string{"sliding_attention", "chunked_attention", "full_attention", "full_attention"}
		},
		"zero limit":   func(c map[string]any) { c["swiglu_limit"] = 0 },
		"unknown rope": func(c map[string]any) { c["rope_parameters"].(map[string]any)["rope_type"] = "longrope" },
		"no experts":   func(c map[string]any) { c["num_local_experts"] = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := fixtureConfig(t, edit)
			if err != nil {
				return // the normalizer refused it already
			}
			_, err = gptoss.ParseOptions(cfg)
			require.Error(t, err)
			require.ErrorIs(t, err, fault.ErrUnsupported)
		})
	}
}
