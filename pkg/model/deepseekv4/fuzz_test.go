package deepseekv4_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// FuzzParseOptions feeds config.json bytes (both spellings, hostile
// values) through the options: they are refused or usable, never a panic,
// and usable ones are consistent (the caches and rotary tables are sized
// from them before any weight is read).
func FuzzParseOptions(f *testing.F) {
	f.Add([]byte(upstream))
	for _, name := range []string{"deepseek_v4", "deepseek_v4_fp8"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "models", name, "config.json")); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := modelconfig.Parse(data)
		if err != nil {
			return
		}
		o, err := deepseekv4.ParseOptions(cfg)
		if err != nil {
			return
		}
		switch {
		case len(o.Kinds) != o.Layers || len(o.Ratios) != o.Layers || len(o.Hash) != o.Layers:
			t.Fatalf("schedules of %d/%d/%d for %d layers", len(o.Kinds), len(o.Ratios), len(o.Hash), o.Layers)
		case o.Window <= 0 || o.HeadDim > 1<<16 || o.RopeDim > o.HeadDim || o.RopeDim%2 != 0:
			t.Fatalf("unusable options %+v", o)
		case len(o.MainRoPE.InvFreq) != o.RopeDim/2 || len(o.CompressRoPE.InvFreq) != o.RopeDim/2:
			t.Fatalf("rope %d dims, frequencies %d/%d", o.RopeDim, len(o.MainRoPE.InvFreq), len(o.CompressRoPE.InvFreq))
		}
		for i, k := range o.Kinds {
			if k != deepseekv4.Sliding && o.Ratios[i] <= 0 {
				t.Fatalf("layer %d %s with ratio %d", i, k, o.Ratios[i])
			}
			if n := o.LayerExperts(i); n < o.TopK {
				t.Fatalf("layer %d: %d experts for top-%d", i, n, o.TopK)
			}
		}
		_ = o.CacheLayers()
	})
}
