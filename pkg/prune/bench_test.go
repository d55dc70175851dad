package prune_test

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/stretchr/testify/require"
)

// writeStacked writes a qwen3_moe checkpoint with MLX-stacked bf16 experts
// of random bytes: hidden h, expert width i, e experts, l layers.
func writeStacked(b *testing.B, dir string, h, i, e, l int) int64 {
	cfg := fmt.Sprintf(`{"model_type":"qwen3_moe","hidden_size":%d,"num_hidden_layers":%d,"num_attention_heads":4,"num_key_value_heads":2,
		"head_dim":16,"vocab_size":256,"num_experts":%d,"num_experts_per_tok":2,"moe_intermediate_size":%d,"torch_dtype":"bfloat16"}`, h, l, e, i)
	require.NoError(b, os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644))
	type ent struct {
		DType   string   `json:"dtype"`
		Shape   []int64  `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	hdr := map[string]any{"__metadata__": map[string]string{"format": "mlx"}}
	var off int64
	add := func(name string, shape ...int64) {
		n := int64(2)
		for _, d := range shape {
			n *= d
		}
		hdr[name] = ent{"BF16", shape, [2]int64{off, off + n}}
		off += n
	}
	add("model.embed_tokens.weight", 256, int64(h))
	for x := range l {
		p := fmt.Sprintf("model.layers.%d.mlp.", x)
		add(p+"gate.weight", int64(e), int64(h))
		add(p+"switch_mlp.gate_proj.weight", int64(e), int64(i), int64(h))
		add(p+"switch_mlp.up_proj.weight", int64(e), int64(i), int64(h))
		add(p+"switch_mlp.down_proj.weight", int64(e), int64(h), int64(i))
	}
	js, err := json.Marshal(hdr)
	require.NoError(b, err)
	for (8+len(js))%8 != 0 {
		js = append(js, ' ')
	}
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	require.NoError(b, err)
	defer f.Close()
	require.NoError(b, binary.Write(f, binary.LittleEndian, uint64(len(js))))
	_, err = f.Write(js)
	require.NoError(b, err)
	_, err = io.CopyN(f, rand.Reader, off)
	require.NoError(b, err)
	return off
}

// BenchmarkConvert converts a 192 MB stacked checkpoint to the engine
// layout (keep-all) and reports the throughput as a ratio to the limit
// measured on the same disk in the same iterations (the disk's speed
// drifts): copying the source file to a new file and fsyncing it.
func BenchmarkConvert(b *testing.B) {
	src := b.TempDir()
	size := writeStacked(b, src, 1024, 512, 64, 1) // 3 × 64 MB of experts
	copyOnce := func() time.Duration {
		start := time.Now()
		in, err := os.Open(filepath.Join(src, "model.safetensors"))
		require.NoError(b, err)
		defer in.Close()
		p := filepath.Join(b.TempDir(), "copy")
		out, err := os.Create(p)
		require.NoError(b, err)
		defer os.Remove(p)
		defer out.Close()
		_, err = io.CopyBuffer(out, in, make([]byte, 4<<20))
		require.NoError(b, err)
		require.NoError(b, out.Sync())
		return time.Since(start)
	}
	var pruneTime, copyTime time.Duration
	for b.Loop() {
		out := filepath.Join(b.TempDir(), "out")
		start := time.Now()
		_, err := prune.Run(b.Context(), prune.Options{Source: src, Output: out})
		require.NoError(b, err)
		pruneTime += time.Since(start)
		b.StopTimer()
		require.NoError(b, os.RemoveAll(out))
		copyTime += copyOnce()
		b.StartTimer()
	}
	b.SetBytes(size)
	b.ReportMetric(float64(size)*float64(b.N)/pruneTime.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(size)*float64(b.N)/copyTime.Seconds()/1e6, "copy_MB/s")
	b.ReportMetric(copyTime.Seconds()/pruneTime.Seconds(), "ratio")
}
