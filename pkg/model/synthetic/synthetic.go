// Package synthetic is what the synthetic checkpoint writers share (the
// architectures' *test packages and expertstream/streamtest write real
// shapes with random weights, so throughput and memory can be measured and
// loaders tested without downloading a model): safetensors shards with
// their index and config.json, random bytes, and random MLX affine
// weights.
package synthetic

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Checkpoint collects tensors into safetensors shards written to Dir.
type Checkpoint struct {
	Dir string
	// Metadata goes into every shard's header (MLX conversions say
	// {"format": "mlx"}); nil for none.
	Metadata map[string]string
	shard    []safetensors.WriteTensor
	index    map[string]string
	total    int64
}

// New returns an empty checkpoint writing into dir.
func New(dir string, metadata map[string]string) *Checkpoint {
	return &Checkpoint{Dir: dir, Metadata: metadata, index: map[string]string{}}
}

// Add adds tensors to the shard being collected.
func (c *Checkpoint) Add(ts ...safetensors.WriteTensor) { c.shard = append(c.shard, ts...) }

// Flush writes the tensors added since the last flush as the shard name.
// It is a plain buffered write, not safetensors.WriteFile: synthetic data
// need no fsync, and skipping it keeps the build fast on slow disks.
func (c *Checkpoint) Flush(name string) error {
	for _, t := range c.shard {
		c.index[t.Name] = name
		c.total += int64(len(t.Data))
	}
	f, err := os.Create(filepath.Join(c.Dir, name))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 4<<20)
	err = safetensors.Write(w, c.shard, c.Metadata)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	c.shard = nil
	return err
}

// ShardName is the file name of shard n (from 1) of total, as the hub
// names them.
func ShardName(n, total int) string { return fmt.Sprintf("model-%05d-of-%05d.safetensors", n, total) }

// Finish writes the shard index (with the total size) and config (as
// config.json) and returns the flushed tensors' bytes.
func (c *Checkpoint) Finish(config map[string]any) (int64, error) {
	idx, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": c.total}, "weight_map": c.index})
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, safetensors.IndexName), idx, 0o644); err != nil {
		return 0, err
	}
	b, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return 0, err
	}
	return c.total, os.WriteFile(filepath.Join(c.Dir, "config.json"), b, 0o644)
}

// Fill fills b with random bytes from rng.
func Fill(rng *rand.Rand, b []byte) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for ; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

// Affine returns a random MLX affine weight name of shape [lead, out, in]
// ([out, in] when lead is 1) — bits-bit codes, bf16 scales and biases per
// group of group values — as its .weight, .scales and .biases tensors. The
// values are zero-mean with std ≈ 1/√in.
func Affine(rng *rand.Rand, name string, lead, out, in, bits, group int) []safetensors.WriteTensor {
	rows := lead * out
	groups := in / group
	codes := make([]byte, rows*in*bits/8)
	Fill(rng, codes)
	// Uniform codes have std levels/√12.
	levels := float32(int(1)<<bits - 1)
	sc := float32(math.Sqrt(12) / (float64(levels) * math.Sqrt(float64(in))))
	scales := make([]float32, rows*groups)
	biases := make([]float32, rows*groups)
	for i := range scales {
		v := sc * (0.5 + rng.Float32())
		scales[i] = v
		biases[i] = -v * levels / 2
	}
	shape := func(last int) []int64 {
		if lead == 1 {
			return []int64{int64(out), int64(last)}
		}
		return []int64{int64(lead), int64(out), int64(last)}
	}
	return []safetensors.WriteTensor{
		{Name: name + ".weight", DType: safetensors.U32, Shape: shape(in * bits / 32), Data: codes},
		{Name: name + ".scales", DType: safetensors.BF16, Shape: shape(groups), Data: quant.BF16Bytes(scales)},
		{Name: name + ".biases", DType: safetensors.BF16, Shape: shape(groups), Data: quant.BF16Bytes(biases)},
	}
}

// Const returns a bf16 vector name of n values v (a norm's weight of ones,
// say).
func Const(name string, n int, v float32) safetensors.WriteTensor {
	x := make([]float32, n)
	for i := range x {
		x[i] = v
	}
	return safetensors.WriteTensor{Name: name, DType: safetensors.BF16, Shape: []int64{int64(n)}, Data: quant.BF16Bytes(x)}
}
