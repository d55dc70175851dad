package rope

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefault(t *testing.T) {
	f, scale, err := Params{Theta: 10000, Dims: 8}.InvFreq()
	require.NoError(t, err)
	require.Equal(t, float32(1), scale)
	require.Equal(t, []float32{1, 0.1, 0.01, 0.001}, f)
}

func TestYaRN(t *testing.T) {
	// gpt-oss: theta 150000, factor 32, original 4096, head dim 64.
	p := Params{Type: "yarn", Theta: 150000, Dims: 64, Factor: 32, OriginalMax: 4096, Truncate: false}
	f, scale, err := p.InvFreq()
	require.NoError(t, err)
	require.InDelta(t, 0.1*math.Log(32)+1, float64(scale), 1e-6, "1.3466 for factor 32")
	base, _, _ := Params{Theta: 150000, Dims: 64}.InvFreq()
	// High frequencies are kept, low ones divided by the factor.
	require.InDelta(t, float64(base[0]), float64(f[0]), 1e-9)
	require.InDelta(t, float64(base[31])/32, float64(f[31]), 1e-12)
	for i := 1; i < 32; i++ {
		require.LessOrEqual(t, f[i], f[i-1])
	}
}

func TestProportionalAndLinear(t *testing.T) {
	f, _, err := Params{Type: "proportional", Theta: 1e6, Dims: 8, RopeAngles: 2}.InvFreq()
	require.NoError(t, err)
	require.NotZero(t, f[1])
	require.Zero(t, f[2])
	g, _, err := Params{Type: "linear", Theta: 1e4, Dims: 4, Factor: 2}.InvFreq()
	require.NoError(t, err)
	require.Equal(t, []float32{0.5, 0.005}, g)
	_, _, err = Params{Type: "dynamic", Theta: 1e4, Dims: 4}.InvFreq()
	require.Error(t, err)
	_, _, err = Params{Theta: 1e4, Dims: 3}.InvFreq()
	require.Error(t, err)
}

func TestFromConfig(t *testing.T) {
	tests := []struct {
		name string
		json string
		want Params
	}{
		{"transformers5", `{"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}`,
			Params{Type: "default", Theta: 1e6, Dims: 128, Truncate: true}},
		{"legacy", `{"rope_theta": 5e5, "rope_scaling": null}`,
			Params{Type: "default", Theta: 5e5, Dims: 128, Truncate: true}},
		{"partial", `{"rope_parameters": {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25}}`,
			Params{Type: "default", Theta: 1e7, Dims: 32, Truncate: true}},
		{"yarn", `{"rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": false}}`,
			Params{Type: "yarn", Theta: 150000, Dims: 128, Factor: 32, OriginalMax: 4096, BetaFast: 32, BetaSlow: 1}},
	}
	for _, tc := range tests {
		got, err := FromConfig([]byte(tc.json), 128)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
	_, err := FromConfig([]byte(`{"rope_parameters": 3}`), 64)
	require.Error(t, err)
}

// Kernel hands FromConfig's settings to the kernels: partial rotation,
// YaRN's scale, the base from rope_parameters.
func TestKernel(t *testing.T) {
	k, err := Kernel([]byte(`{"rope_theta": 1e6, "rope_parameters": {"rope_type": "yarn", "rope_theta": 150000, "factor": 32,
		"original_max_position_embeddings": 4096, "partial_rotary_factor": 0.5}}`), 64)
	require.NoError(t, err)
	require.Equal(t, 64, k.HeadDim)
	require.Equal(t, 32, k.Dims)
	require.Len(t, k.InvFreq, 16)
	require.InDelta(t, 0.1*math.Log(32)+1, float64(k.Scale), 1e-6)
	require.Equal(t, float32(1), k.InvFreq[0], "theta^0")
	_, err = Kernel([]byte(`{"rope_parameters": {"rope_type": "dynamic"}}`), 64)
	require.Error(t, err)
}

// Dict.Apply sets what the dict has, the base only when asked to.
func TestDictApply(t *testing.T) {
	theta, factor, partial := 5e5, 4.0, 0.25
	d := Dict{Type: "yarn", Theta: &theta, Factor: &factor, Partial: &partial}
	require.Equal(t, "yarn", d.Kind())
	p, got := d.Apply(Params{Theta: 1e4, Dims: 8}, 1, false)
	require.Equal(t, Params{Theta: 5e5, Dims: 8, Factor: 4}, p)
	require.Equal(t, 0.25, got)
	p, _ = d.Apply(Params{Theta: 1e4}, 1, true)
	require.Equal(t, 1e4, p.Theta, "the base kept")
	require.Equal(t, "default", Dict{RopeType: "default", Type: "yarn"}.Kind(), "rope_type wins")
}
