package hub_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/stretchr/testify/require"
)

func TestWanted(t *testing.T) {
	const (
		C  = hub.NeedConfig
		T  = hub.NeedTokenizer
		W  = hub.NeedWeights
		WT = hub.NeedWeights | hub.NeedTokenizer
		S  = hub.NeedWeights | hub.NeedSidecar
	)
	index := map[string]bool{"model-00001-of-00002.safetensors": true, "model-00002-of-00002.safetensors": true}
	tests := []struct {
		path   string
		need   hub.Need
		shards map[string]bool
		want   bool
	}{
		{"config.json", C, nil, true},
		{"config.json", T, nil, true},
		{"config.json", S, nil, true},
		{"expert_sidecar/layout.json", C, nil, true}, // mach check probes it
		{"expert_sidecar/layout.json", W, nil, false},
		{"expert_sidecar/layout.json", S, nil, true},
		{"expert_sidecar/layer_00.bin", C, nil, false},
		{"expert_sidecar/layer_00.bin", WT, nil, false}, // resident paths never read it
		{"expert_sidecar/layer_00.bin", S, nil, true},
		{"tokenizer.json", C, nil, false},
		{"tokenizer.json", T, nil, true},
		{"tokenizer.json", W, nil, true}, // small, and a later text prompt needs it
		{"tokenizer_config.json", T, nil, true},
		{"special_tokens_map.json", T, nil, true},
		{"generation_config.json", T, nil, true},
		{"chat_template.jinja", T, nil, true},
		{"chat_template.json", W, nil, true},
		{"model.safetensors.index.json", T, nil, false},
		{"model.safetensors.index.json", W, nil, true},
		{"model.safetensors", W, nil, true},
		{"model.safetensors", T, nil, false},
		{"model-00001-of-00002.safetensors", W, nil, true},
		{"model-00001-of-00002.safetensors", W, index, true},
		{"model-00002-of-00002.safetensors", S, index, true},
		{"model-fp16.safetensors", W, index, false}, // another quantization beside the indexed one
		{"consolidated.safetensors", W, nil, false},
		{"model.gguf", W, nil, false},
		{"model-Q4_K_M.gguf", S, nil, false},
		{"original/model.safetensors", W, nil, false},
		{"original/config.json", W, nil, false},
		{"4bit/model.safetensors", W, nil, false},
		{"metal/model.bin", W, nil, false},
		{"pytorch_model.bin", W, nil, false},
		{"README.md", S, nil, false},
		{".gitattributes", S, nil, false},
		{"images/diagram.png", S, nil, false},
		{"tokenizer.model", WT, nil, false},
		{"vocab.json", WT, nil, false},
		{"draft/config.json", S, nil, false},
		{"expert_sidecar", S, nil, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, hub.Wanted(tt.path, tt.need, tt.shards), "%s with %v (index: %v)", tt.path, tt.need, tt.shards != nil)
	}
}

func TestNeedString(t *testing.T) {
	require.Equal(t, "config", hub.NeedConfig.String())
	require.Equal(t, "tokenizer+weights+sidecar", (hub.NeedTokenizer | hub.NeedWeights | hub.NeedSidecar).String())
}

func TestMissing(t *testing.T) {
	write := func(dir, name, body string) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	empty := t.TempDir()
	require.Equal(t, []string{"config.json"}, hub.Missing(empty, hub.NeedConfig))
	require.Equal(t, []string{"config.json", "tokenizer.json", "model*.safetensors (or model.safetensors.index.json and its shards)"},
		hub.Missing(empty, hub.NeedTokenizer|hub.NeedWeights))

	sharded := t.TempDir()
	write(sharded, "config.json", "{}")
	write(sharded, "model.safetensors.index.json", `{"weight_map":{"a":"model-1.safetensors","b":"model-2.safetensors","c":"model-2.safetensors"}}`)
	write(sharded, "model-1.safetensors", "x")
	require.Equal(t, []string{"model-2.safetensors"}, hub.Missing(sharded, hub.NeedWeights))
	write(sharded, "model-2.safetensors", "x")
	require.Empty(t, hub.Missing(sharded, hub.NeedWeights))
	require.Equal(t, []string{"expert_sidecar/layout.json"}, hub.Missing(sharded, hub.NeedWeights|hub.NeedSidecar))

	// A dangling link (its blob deleted) is missing.
	require.NoError(t, os.Remove(filepath.Join(sharded, "model-2.safetensors")))
	require.NoError(t, os.Symlink("../../blobs/gone", filepath.Join(sharded, "model-2.safetensors")))
	require.Equal(t, []string{"model-2.safetensors"}, hub.Missing(sharded, hub.NeedWeights))

	// The sidecar's layer files come from its layout.
	side := t.TempDir()
	write(side, "config.json", "{}")
	write(side, "model.safetensors", "x")
	layout, err := os.ReadFile(filepath.Join("testdata", "layout.json"))
	require.NoError(t, err)
	write(side, "expert_sidecar/layout.json", string(layout))
	write(side, "expert_sidecar/layer_00.bin", "x")
	require.Equal(t, []string{"expert_sidecar/layer_01.bin"}, hub.Missing(side, hub.NeedWeights|hub.NeedSidecar))
}
