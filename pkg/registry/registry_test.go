package registry_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/stretchr/testify/require"
)

func TestDefaultFacts(t *testing.T) {
	r := registry.Default()
	require.Equal(t, []string{"deepseek_v4", "gemma4", "gpt_oss", "qwen3_5_moe", "qwen3_moe"}, r.Names())
	tests := []struct {
		modelType  string
		act        registry.Activation
		stacked    bool
		expertBias bool
		wrapped    bool
		kv         registry.KVCacheKind
		specdec    registry.SpecdecKind
	}{
		{"deepseek_v4", registry.SiLULimited, false, false, false, registry.KVCompressed, registry.MTPEagle3},
		{"gemma4", registry.PlainGeGLU, true, false, true, registry.KVRotating, registry.SpecdecNone},
		{"gpt_oss", registry.SiLULimited, true, true, false, registry.KVRotating, registry.SpecdecNone},
		{"qwen3_5_moe", registry.PlainSwiGLU, true, false, true, registry.KVHybridGDN, registry.SpecdecV7},
		{"qwen3_moe", registry.PlainSwiGLU, true, false, false, registry.KVStandard, registry.SpecdecV7},
	}
	for _, tt := range tests {
		t.Run(tt.modelType, func(t *testing.T) {
			a, ok := r.Lookup(tt.modelType)
			require.True(t, ok)
			require.Equal(t, tt.act, a.Activation)
			require.Equal(t, tt.stacked, a.Stacked)
			require.Equal(t, tt.expertBias, a.ExpertBias)
			require.Equal(t, tt.wrapped, a.Wrapped)
			require.Equal(t, tt.kv, a.KVCache)
			require.Equal(t, tt.specdec, a.Specdec)
		})
	}
	g, _ := r.Lookup("gpt_oss")
	require.InDelta(t, 1.702, g.ActivationParams.Alpha, 0)
	require.InDelta(t, 7.0, g.ActivationParams.DefaultLimit, 0)
	require.InDelta(t, 1.0, g.ActivationParams.UpOffset, 0)
	d, _ := r.Lookup("deepseek_v4")
	require.Equal(t, "swiglu_limit", d.ActivationParams.LimitKey)
	require.InDelta(t, 0.0, d.ActivationParams.UpOffset, 0)
}

func TestNewRejects(t *testing.T) {
	ok := registry.Arch{ModelType: "x", Activation: registry.PlainSwiGLU, KVCache: registry.KVStandard, DefaultBits: 4, DefaultGroup: 64}
	_, err := registry.New(ok, ok)
	require.ErrorIs(t, err, registry.ErrDuplicate)
	bad := ok
	bad.Activation = "relu"
	_, err = registry.New(bad)
	require.Error(t, err)
	bad = ok
	bad.ModelType = ""
	_, err = registry.New(bad)
	require.Error(t, err)
	r, err := registry.New(ok)
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, r.Names())
}

func TestRequireUnknown(t *testing.T) {
	_, err := registry.Default().Require("llama")
	var ue *registry.UnknownError
	require.ErrorAs(t, err, &ue)
	require.Contains(t, err.Error(), "qwen3_moe")
	require.Contains(t, err.Error(), `"llama"`)
}

func TestContinuousBatchingDerivation(t *testing.T) {
	base := registry.Arch{ModelType: "x", Activation: registry.PlainSwiGLU, DefaultBits: 4, DefaultGroup: 64}
	tests := []struct {
		kv      registry.KVCacheKind
		support registry.Support
		want    capability.Status
	}{
		{registry.KVStandard, registry.Support{}, capability.Blocked},
		{registry.KVStandard, registry.Support{Forward: true}, capability.Blocked},
		{registry.KVStandard, registry.Support{Forward: true, Batching: true}, capability.OK},
		{registry.KVHybridGDN, registry.Support{Forward: true, Batching: true}, capability.OK},
		{registry.KVRotating, registry.Support{Forward: true, Batching: true}, capability.OK},
		{registry.KVCompressed, registry.Support{Forward: true}, capability.Blocked},
		{registry.KVCompressed, registry.Support{Forward: true, Batching: true}, capability.OK},
	}
	for _, tt := range tests {
		a := base
		a.KVCache, a.Support = tt.kv, tt.support
		got := a.ContinuousBatching()
		require.Equal(t, tt.want, got.Status, "%s %+v: %s", tt.kv, tt.support, got.Reason)
		require.NotEmpty(t, got.Reason)
	}
}
