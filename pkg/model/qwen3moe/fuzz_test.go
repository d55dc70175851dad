package qwen3moe_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// FuzzParseOptions: any config.json either fails to parse or yields
// options (or a refusal) without panicking.
func FuzzParseOptions(f *testing.F) {
	for _, name := range []string{"qwen3_moe", "qwen3_moe_mlx4", "qwen3_moe_nonorm"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "models", name, "config.json"))
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"model_type": "qwen3_moe", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 4, "num_experts": 2, "num_experts_per_tok": 3, "moe_intermediate_size": 4}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := modelconfig.Parse(data)
		if err != nil {
			return
		}
		o, err := qwen3moe.ParseOptions(cfg)
		if err != nil {
			return
		}
		if len(o.MoE) != o.Layers || o.HeadDim <= 0 && o.RoPE.Dims > 0 {
			t.Fatalf("inconsistent options %+v", o)
		}
	})
}
