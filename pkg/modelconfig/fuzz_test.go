package modelconfig_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// FuzzParse feeds arbitrary bytes to the normalizer: it must return a
// config or an error, never panic, and a config it returns must be
// self-consistent. The seed corpus is testdata/fuzz/FuzzParse plus the
// fixture configs.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := modelconfig.Parse(data)
		if err != nil {
			return
		}
		if len(c.LayerTypes) != c.NumLayers {
			t.Fatalf("%d layer types for %d layers", len(c.LayerTypes), c.NumLayers)
		}
		for _, l := range c.MoELayers() {
			if l < 0 || l >= c.NumLayers {
				t.Fatalf("MoE layer %d out of range", l)
			}
		}
		for i := range c.NumLayers {
			kv, hd := c.LayerAttention(i)
			if kv < 0 || hd < 0 {
				t.Fatalf("layer %d: negative attention dims", i)
			}
		}
		if c.CompressRatios != nil && len(c.CompressRatios) != c.NumLayers {
			t.Fatalf("%d compress ratios for %d layers", len(c.CompressRatios), c.NumLayers)
		}
		_ = c.Quant.ForModule("model.layers.0.mlp.gate")
	})
}
