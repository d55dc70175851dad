package expertstream_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/stretchr/testify/require"
)

// exported writes fixture name's sidecar into a temporary directory (in
// dir when given) and returns the fixture and the sidecar directory.
func exported(t *testing.T, name, dir string) (*fixture.Model, string) {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	if dir == "" {
		dir = t.TempDir()
	}
	_, err = export.Run(context.Background(), export.Options{Checkpoint: fx.Dir, Output: dir})
	require.NoError(t, err)
	return fx, dir
}

// generate runs the prompt with every position's logits, then n greedy
// tokens.
func generate(t *testing.T, m model.Model, prompt []int32, n int) ([]float32, []int32) {
	t.Helper()
	return modeltest.Generate(t, m, modeltest.NewSeq(t, m, len(prompt)+n, kernels.F32), prompt, n)
}

var quiet = slog.New(slog.DiscardHandler)

func loadModel(t *testing.T, b kernels.Backend, dir string, store *expertstream.Store) model.Model {
	t.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	lo := qwen3moe.LoadOptions{}
	if store != nil {
		lo.Store = store
	}
	m, err := qwen3moe.Load(t.Context(), dir, cfg, b, lo)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// Streaming gives exactly the resident logits and tokens, for every expert
// layout and format, whatever the policy, with a cache of one layer that
// forces misses and evictions on every step.
func TestStreamingMatchesResident(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 2})
	defer b.Close()
	for _, name := range []string{"qwen3_moe", "qwen3_moe_bf16", "qwen3_moe_stacked", "qwen3_moe_mlx4", "qwen3_moe_nonorm"} {
		t.Run(name, func(t *testing.T) {
			fx, sc := exported(t, name, "")
			resident := loadModel(t, b, fx.Dir, nil)
			wantLogits, wantToks := generate(t, resident, fx.InputIDs, len(fx.Greedy))
			require.Equal(t, fx.Greedy, wantToks)
			for _, o := range []expertstream.Options{
				{CacheBytes: 1, Policy: expertstream.LRFU, Speculate: true, Log: quiet},
				{CacheBytes: 1, Policy: expertstream.LayerLRU, Log: quiet},
				{CacheBytes: 1, Log: quiet},
				{CacheBytes: 1, Policy: expertstream.LRU, Readers: 1, Log: quiet},
				{Policy: expertstream.Adaptive, Speculate: true, BufferedIO: true},
			} {
				cfg, err := modelconfig.Load(fx.Dir)
				require.NoError(t, err)
				o.Hidden, o.Width = cfg.HiddenSize, cfg.MoEIntermediateSize
				store, err := expertstream.Open(sc, b, o)
				require.NoError(t, err)
				m := loadModel(t, b, fx.Dir, store)
				gotLogits, gotToks := generate(t, m, fx.InputIDs, len(fx.Greedy))
				require.Equal(t, wantToks, gotToks, "%+v", o)
				require.True(t, slices.Equal(wantLogits, gotLogits), "logits differ with %+v", o)

				st := store.Stats()
				require.Equal(t, st.Requests, st.Hits+st.Misses)
				require.Equal(t, int64(len(fx.Greedy))+1, st.Steps, "prompt, then one step per generated token")
				_, stride := store.Slots()
				require.Equal(t, st.Reads*stride, st.BytesRead)
				require.Equal(t, st.Misses+st.SpecReads, st.Reads)
				require.Positive(t, st.Hits)
				if o.CacheBytes == 1 {
					require.Equal(t, 8, st.Slots, "raised to one layer of experts")
					require.Positive(t, st.Evictions)
					require.Positive(t, st.Misses)
				} else {
					require.Zero(t, st.Evictions, "the default budget holds the whole tiny sidecar")
					require.False(t, st.DirectIO)
				}
				require.InDelta(t, float64(st.Hits)/float64(st.Requests), st.HitRate(), 1e-12)
				if o.CacheBytes == 1 && o.Policy == "" {
					require.Positive(t, st.SpecReads, "early-routing hints are read while decoding")
				}
				var hist int64
				for _, n := range st.ReadLatency {
					hist += n
				}
				require.Equal(t, st.Reads, hist)
				require.NoError(t, m.Close())
			}
		})
	}
}

// A corrupted expert fails the step with an error naming the layer and
// the expert, every time it is asked for, instead of computing garbage.
func TestCorruptExpert(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, sc := exported(t, "qwen3_moe", "")
	l, err := sidecar.Load(sc)
	require.NoError(t, err)
	p := filepath.Join(sc, "layer_02.bin")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	data[5*l.ExpertStride+100] ^= 1
	require.NoError(t, os.WriteFile(p, data, 0o644))

	store, err := expertstream.Open(sc, b, expertstream.Options{CacheBytes: 1, Log: quiet})
	require.NoError(t, err)
	defer store.Close()
	_, err = store.Acquire(t.Context(), 2, []int{4, 5})
	var ce *sidecar.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 2, ce.Layer)
	require.Equal(t, 5, ce.Expert)
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "layer 2 expert 5")
	// Sticky: not re-read into garbage.
	_, err = store.Acquire(t.Context(), 2, []int{5})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, int64(1), store.Stats().Corruptions)
	// The healthy expert still works, and nothing stays pinned.
	es, err := store.Acquire(t.Context(), 2, []int{4})
	require.NoError(t, err)
	require.Len(t, es, 1)
	store.Release(2, []int{4})

	// Through the model: the generation fails naming the expert.
	data[5*l.ExpertStride+100] ^= 1
	for e := 0; e < l.NumExperts; e++ {
		data[int64(e)*l.ExpertStride+7] ^= 0x80
	}
	require.NoError(t, os.WriteFile(p, data, 0o644))
	store2, err := expertstream.Open(sc, b, expertstream.Options{})
	require.NoError(t, err)
	m := loadModel(t, b, fx.Dir, store2)
	c, err := m.NewCache(64, kernels.F32)
	require.NoError(t, err)
	_, err = m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{{Tokens: fx.InputIDs, Cache: c, Logits: model.LastLogits}}})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 2, ce.Layer)
	require.Contains(t, err.Error(), "layer_02.bin")
}

// Missing or truncated layer files, and sidecars for another model, fail
// at start-up.
func TestOpenFailures(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	_, sc := exported(t, "qwen3_moe", "")

	_, err := expertstream.Open(sc, b, expertstream.Options{Hidden: 128, Width: 64})
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.Contains(t, err.Error(), "belongs to another model")

	_, err = expertstream.Open(sc, b, expertstream.Options{Policy: "mru"})
	require.ErrorIs(t, err, fault.ErrUsage)

	p := filepath.Join(sc, "layer_02.bin")
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(p, st.Size()-4096))
	_, err = expertstream.Open(sc, b, expertstream.Options{})
	require.ErrorIs(t, err, sidecar.ErrIncomplete)
	require.ErrorIs(t, err, fault.ErrIO)
	require.Contains(t, err.Error(), "layer_02.bin")

	require.NoError(t, os.Remove(p))
	_, err = expertstream.Open(sc, b, expertstream.Options{})
	require.ErrorIs(t, err, sidecar.ErrIncomplete)
	require.Contains(t, err.Error(), "declares layer 2")

	_, err = expertstream.Open(t.TempDir(), b, expertstream.Options{})
	require.ErrorIs(t, err, fault.ErrIO)
}

// On tmpfs (no direct I/O before Linux 6.6) the store still serves the
// right bytes; the read-time fallback itself is tested in io_test.go.
func TestBufferedFallback(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("tmpfs fallback is Linux behaviour")
	}
	shm, err := os.MkdirTemp("/dev/shm", "mach-expertstream-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	fx, sc := exported(t, "qwen3_moe_mlx4", shm)
	store, err := expertstream.Open(sc, b, expertstream.Options{CacheBytes: 1, Log: quiet})
	require.NoError(t, err)
	// tmpfs accepts O_DIRECT since Linux 6.6; either way the bytes are right.
	t.Logf("direct I/O on tmpfs: %v", store.DirectIO())
	m := loadModel(t, b, fx.Dir, store)
	_, toks := generate(t, m, fx.InputIDs, len(fx.Greedy))
	require.Equal(t, fx.Greedy, toks)

	// And on the ordinary disk of the test's temporary directory, direct.
	_, sc2 := exported(t, "qwen3_moe_mlx4", "")
	s2, err := expertstream.Open(sc2, b, expertstream.Options{})
	require.NoError(t, err)
	defer s2.Close()
	_, err = s2.Acquire(t.Context(), 0, []int{1})
	require.NoError(t, err)
	s2.Release(0, []int{1})
	t.Logf("direct I/O on %s: %v", sc2, s2.DirectIO())
}

// Cancelling an Acquire that waits for a read returns promptly and leaves
// nothing pinned.
func TestAcquireCancelled(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	_, sc := exported(t, "qwen3_moe", "")
	store, err := expertstream.Open(sc, b, expertstream.Options{CacheBytes: 1, Log: quiet})
	require.NoError(t, err)
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = store.Acquire(ctx, 0, []int{0, 1, 2})
	if err != nil {
		require.ErrorIs(t, err, context.Canceled)
	} else {
		store.Release(0, []int{0, 1, 2})
	}
	// Every slot can be reused: a full layer of other experts fits.
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	_, err = store.Acquire(t.Context(), 2, all)
	require.NoError(t, err)
	store.Release(2, all)
	_, err = store.Acquire(t.Context(), 0, []int{9})
	require.Error(t, err)
}

// Biases must sit with their projections: separate gate_proj/up_proj
// biases (gpt-oss in MLX's split form) open, and a gate_up_proj bias beside
// separate gate and up weights — which the MoE block would never add — is
// refused at start-up.
func TestSplitBiases(t *testing.T) {
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	_, sc := exported(t, "gpt_oss_mlx", "")
	s, err := expertstream.Open(sc, b, expertstream.Options{Log: quiet})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	p := filepath.Join(sc, sidecar.LayoutName)
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"gate_proj.bias"`)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(raw), `"gate_proj.bias"`, `"gate_up_proj.bias"`, 1)), 0o644))
	_, err = expertstream.Open(sc, b, expertstream.Options{Log: quiet})
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.ErrorContains(t, err, "gate_up_proj.bias beside separate gate_proj and up_proj weights")
}
