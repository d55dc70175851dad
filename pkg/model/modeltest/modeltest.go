// Package modeltest is what the architecture packages' tests share: the CPU
// backends every parity test runs on, binding a reference fixture
// (testdata/models), fresh sequences, greedy decoding, and the checks that
// compare a model with transformers' logits, with itself across ragged
// batches, and with its experts streamed from an exported sidecar.
package modeltest

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/stretchr/testify/require"
)

// Backends are the CPU backend with its fast paths and the plain-Go
// reference, by name; both must pass.
func Backends() map[string]func() *cpu.Backend {
	return map[string]func() *cpu.Backend{
		"cpu":       func() *cpu.Backend { return cpu.New(cpu.Options{}) },
		"reference": func() *cpu.Backend { return cpu.New(cpu.Options{Reference: true}) },
	}
}

// ForEach runs f as the subtest "name/backend" for every fixture name and
// backend of Backends, closing the backend after it.
func ForEach(t *testing.T, names []string, f func(t *testing.T, name string, b kernels.Backend)) {
	for _, name := range names {
		for bname, mk := range Backends() {
			t.Run(name+"/"+bname, func(t *testing.T) {
				b := mk()
				defer b.Close()
				f(t, name, b)
			})
		}
	}
}

// Load binds the reference fixture name on b with an architecture's
// LoadFunc (its Loader: the default options); the model is closed when
// the test ends.
func Load(t testing.TB, name string, b kernels.Backend, load model.LoadFunc) (*fixture.Model, model.Model) {
	t.Helper()
	fx, err := fixture.Load(name)
	require.NoError(t, err)
	return fx, LoadDir(t, fx.Dir, b, load)
}

// LoadDir binds the checkpoint in dir on b with load; the model is closed
// when the test ends.
func LoadDir(t testing.TB, dir string, b kernels.Backend, load model.LoadFunc) model.Model {
	t.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	m, err := load(t.Context(), dir, cfg, b)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// NewSeq returns a sequence with an empty cache of m for capacity tokens
// stored as dt, released when the test ends.
func NewSeq(t testing.TB, m model.Model, capacity int, dt kernels.DType) model.Seq {
	t.Helper()
	c, err := m.NewCache(capacity, dt)
	require.NoError(t, err)
	t.Cleanup(c.Release)
	return model.Seq{Cache: c}
}

// Argmax returns the index of the largest value (the first of equals).
func Argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// Forward runs one step over seqs and requires it to succeed.
func Forward(t testing.TB, m model.Model, seqs ...model.Seq) *model.Output {
	t.Helper()
	out, err := m.Forward(t.Context(), &model.Batch{Seqs: seqs})
	require.NoError(t, err)
	return out
}

// Generate feeds prompt to seq in one step with every position's logits,
// then decodes n greedy tokens through its cache, the first chosen from
// the prompt's last logits. It returns the prompt's logits and the tokens.
func Generate(t testing.TB, m model.Model, seq model.Seq, prompt []int32, n int) ([]float32, []int32) {
	t.Helper()
	seq.Tokens, seq.Logits = prompt, model.AllLogits
	all := slices.Clone(Forward(t, m, seq).Logits[0])
	last := all[len(all)-m.Info().Vocab:]
	var toks []int32
	for len(toks) < n {
		tok := Argmax(last)
		toks = append(toks, tok)
		seq.Tokens, seq.Logits = []int32{tok}, model.LastLogits
		last = Forward(t, m, seq).Logits[0]
	}
	return all, toks
}

// Parity runs the fixture's prompt through a fresh f32 sequence of m,
// requires every position's logits within tol (relative L2) of
// transformers', logs the worst, and returns the greedy continuation (as
// long as fx.Greedy) decoded through the cache.
func Parity(t testing.TB, m model.Model, fx *fixture.Model, tol float64) []int32 {
	t.Helper()
	logits, greedy := Generate(t, m, NewSeq(t, m, 256, kernels.F32), fx.InputIDs, len(fx.Greedy))
	worst := 0.0
	for p := 0; p < fx.T; p++ {
		e := fixture.RelL2(logits[p*fx.Vocab:(p+1)*fx.Vocab], fx.Row(p))
		worst = math.Max(worst, e)
		require.LessOrEqual(t, e, tol, "%s: logits at position %d: relative L2 error %.3g", fx.Name, p, e)
	}
	t.Logf("%s on %s: max relative L2 of logits over %d positions = %.3g", fx.Name, m.Info().Backend, fx.T, worst)
	return greedy
}

// Run feeds tokens to seq in steps of the given sizes (the rest in one
// step when the sizes run out) and returns every token's logits.
func Run(t testing.TB, m model.Model, seq model.Seq, tokens []int32, sizes ...int) [][]float32 {
	t.Helper()
	var out [][]float32
	vocab := m.Info().Vocab
	for len(tokens) > 0 {
		n := len(tokens)
		if len(sizes) > 0 {
			n, sizes = min(sizes[0], n), sizes[1:]
		}
		seq.Tokens, seq.Logits = tokens[:n], model.AllLogits
		o := Forward(t, m, seq)
		for j := 0; j < n; j++ {
			out = append(out, slices.Clone(o.Logits[0][j*vocab:(j+1)*vocab]))
		}
		tokens = tokens[n:]
	}
	return out
}

// DecodeAlone prefills prompt into a fresh f32 sequence and decodes n
// greedy tokens, returning the tokens and every step's logits.
func DecodeAlone(t testing.TB, m model.Model, prompt []int32, n int) ([]int32, [][]float32) {
	t.Helper()
	seq := NewSeq(t, m, 256, kernels.F32)
	seq.Tokens, seq.Logits = prompt, model.LastLogits
	var toks []int32
	var logits [][]float32
	for len(toks) < n {
		out := Forward(t, m, seq)
		logits = append(logits, slices.Clone(out.Logits[0]))
		next := Argmax(out.Logits[0])
		toks = append(toks, next)
		seq.Tokens = []int32{next}
	}
	return toks, logits
}

// BatchInvariance decodes n greedy tokens after each prompt alone, then
// after all of them together in ragged batches — prompt late joining
// lateSteps steps late, so its prefill shares steps with the others'
// decoding — and requires the same tokens and bit-identical logits.
func BatchInvariance(t testing.TB, m model.Model, prompts [][]int32, n, late, lateSteps int) {
	t.Helper()
	var alone [][]int32
	var aloneLogits [][][]float32
	for _, p := range prompts {
		toks, lg := DecodeAlone(t, m, p, n)
		alone, aloneLogits = append(alone, toks), append(aloneLogits, lg)
	}
	seqs := make([]model.Seq, len(prompts))
	got := make([][]int32, len(prompts))
	for i := range seqs {
		seqs[i] = NewSeq(t, m, 256, kernels.F32)
		seqs[i].Tokens, seqs[i].Logits = prompts[i], model.LastLogits
	}
	for stepNo := 0; ; stepNo++ {
		var batch []model.Seq
		var who []int
		for i := range seqs {
			if (i == late && stepNo < lateSteps) || len(got[i]) == n {
				continue
			}
			batch = append(batch, seqs[i])
			who = append(who, i)
		}
		if len(who) == 0 {
			break
		}
		out := Forward(t, m, batch...)
		for j, i := range who {
			step := len(got[i])
			require.Equal(t, aloneLogits[i][step], out.Logits[j], "sequence %d step %d logits differ between batched and alone", i, step)
			next := Argmax(out.Logits[j])
			got[i] = append(got[i], next)
			seqs[i].Tokens = []int32{next}
		}
	}
	require.Equal(t, alone, got, "batched tokens")
}

// Sidecar exports the routed experts of the checkpoint in dir into an
// expert_sidecar/ (as mach-export-sidecar does) and opens a streaming store
// over it with a one-byte cache, which forces a miss and an eviction on
// every use. It returns the store (closed with the model that takes it)
// and the checkpoint's config; an error is the store's refusal.
func Sidecar(t testing.TB, dir string, b kernels.Backend) (*expertstream.Store, *modelconfig.Config, error) {
	t.Helper()
	sc := t.TempDir()
	_, err := export.Run(t.Context(), export.Options{Checkpoint: dir, Output: sc})
	require.NoError(t, err, dir)
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	store, err := expertstream.Open(sc, b, expertstream.Options{CacheBytes: 1, Hidden: cfg.HiddenSize, Width: cfg.MoEIntermediateSize,
		Log: slog.New(slog.DiscardHandler)})
	return store, cfg, err
}

// Hiddener is a model that returns every layer's output for a step.
type Hiddener interface {
	model.Model
	Hidden(ctx context.Context, batch *model.Batch) ([][]float32, error)
}

// LayerOutputs runs fx's prompt through a fresh f32 sequence of m,
// collecting every layer's output (per values each; 0: whatever one layer
// returns), requires one per entry of the fixture's layer_outputs, each
// within tol (relative L2) of it — which localizes a parity failure — and
// returns them.
func LayerOutputs(t testing.TB, m Hiddener, fx *fixture.Model, per int, tol float64) [][]float32 {
	t.Helper()
	require.NotNil(t, fx.LayerOutputs)
	seq := NewSeq(t, m, 256, kernels.F32)
	seq.Tokens = fx.InputIDs
	hs, err := m.Hidden(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	require.NotEmpty(t, hs)
	if per == 0 {
		per = len(hs[0])
	}
	require.Len(t, hs, len(fx.LayerOutputs.Data)/per)
	for l, h := range hs {
		e := fixture.RelL2(h, fx.LayerOutputs.Data[l*per:(l+1)*per])
		t.Logf("layer %d: relative L2 %.3g", l, e)
		require.LessOrEqual(t, e, tol, "layer %d output", l)
	}
	return hs
}

// RefusedSteps fills a fresh f32 cache of capacity tokens with the first
// prefix tokens of fx's prompt, then requires a step past the capacity
// (kvcache.ErrCacheFull), one with a token outside the vocabulary and a
// cancelled one each to fail and leave the cache holding prefix tokens. It
// returns the sequence, for the test to check that it continues exactly.
func RefusedSteps(t testing.TB, m model.Model, fx *fixture.Model, capacity, prefix int) model.Seq {
	t.Helper()
	seq := NewSeq(t, m, capacity, kernels.F32)
	seq.Tokens, seq.Logits = fx.InputIDs[:prefix], model.LastLogits
	Forward(t, m, seq)
	step := func(ctx context.Context, tokens []int32) error {
		seq.Tokens = tokens
		_, err := m.Forward(ctx, &model.Batch{Seqs: []model.Seq{seq}})
		return err
	}
	require.ErrorIs(t, step(t.Context(), fx.InputIDs[prefix:capacity+1]), kvcache.ErrCacheFull)
	require.Equal(t, prefix, seq.Cache.Len())
	require.Error(t, step(t.Context(), []int32{int32(fx.Vocab)}), "token id beyond the vocabulary")
	require.Equal(t, prefix, seq.Cache.Len())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, step(ctx, fx.InputIDs[prefix:prefix+1]), context.Canceled)
	require.Equal(t, prefix, seq.Cache.Len())
	return seq
}
