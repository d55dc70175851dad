package gptoss_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// FuzzParseOptions feeds arbitrary config.json bytes through the
// normalizer and this architecture's options: they must be refused or give
// options the forward pass can use, never panic. The seed corpus is
// testdata/fuzz/FuzzParseOptions (the gpt_oss fixture configs and edits).
func FuzzParseOptions(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := modelconfig.Parse(data)
		if err != nil {
			return
		}
		o, err := gptoss.ParseOptions(cfg)
		if err != nil {
			return
		}
		switch {
		case len(o.Sliding) != o.Layers:
			t.Fatalf("%d layer kinds for %d layers", len(o.Sliding), o.Layers)
		case o.Window <= 0 || o.TopK <= 0 || o.Heads%o.KVHeads != 0:
			t.Fatalf("unusable options %+v", o)
		case len(o.RoPE.InvFreq) != o.RoPE.Dims/2 || o.RoPE.Dims > o.HeadDim:
			t.Fatalf("rope %d dims, %d frequencies, head %d", o.RoPE.Dims, len(o.RoPE.InvFreq), o.HeadDim)
		}
		for i := range o.Layers {
			if n := o.LayerExperts(i); n < o.TopK {
				t.Fatalf("layer %d: %d experts for top-%d", i, n, o.TopK)
			}
		}
	})
}
