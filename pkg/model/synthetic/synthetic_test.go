package synthetic_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/model/synthetic"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/stretchr/testify/require"
)

// A checkpoint of two shards reads back through the index: every tensor
// where it was flushed, the sizes summed, the config as given, and the
// affine weights with the std they promise.
func TestCheckpoint(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	c := synthetic.New(dir, map[string]string{"format": "mlx"})
	c.Add(synthetic.Affine(rng, "w", 1, 64, 256, 4, 64)...)
	c.Add(synthetic.Const("norm.weight", 8, 1))
	require.NoError(t, c.Flush(synthetic.ShardName(1, 2)))
	c.Add(synthetic.Affine(rng, "experts", 3, 16, 128, 8, 64)...)
	require.NoError(t, c.Flush(synthetic.ShardName(2, 2)))
	total, err := c.Finish(map[string]any{"model_type": "test"})
	require.NoError(t, err)

	h, err := safetensors.ReadHeaders(dir)
	require.NoError(t, err)
	require.Equal(t, total, h.TotalBytes())
	require.ElementsMatch(t, []string{"w.weight", "w.scales", "w.biases", "norm.weight",
		"experts.weight", "experts.scales", "experts.biases"}, h.Names())
	e, ok := h.Lookup("experts.scales")
	require.True(t, ok)
	require.Equal(t, []int64{3, 16, 2}, e.Shape)
	require.Equal(t, "model-00002-of-00002.safetensors", filepath.Base(e.File))

	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(raw, &cfg))
	require.Equal(t, "test", cfg["model_type"])

	set, err := safetensors.OpenSet(dir)
	require.NoError(t, err)
	defer set.Close()
	get := func(name string) []byte {
		b, _, err := set.Bytes(name)
		require.NoError(t, err)
		return b
	}
	m := &quant.Matrix{Format: quant.Format{Kind: quant.Affine, Bits: 4, GroupSize: 64, Scale: quant.ScaleBF16},
		Rows: 64, Cols: 256, Data: get("w.weight"), Scales: get("w.scales"), Biases: get("w.biases")}
	var sum, sq float64
	for _, v := range m.Dequantize() {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(64 * 256)
	mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	require.InDelta(t, 0, mean, 0.01)
	require.InDelta(t, 1/math.Sqrt(256), std, 0.25/math.Sqrt(256), "std ≈ 1/√in")
}
