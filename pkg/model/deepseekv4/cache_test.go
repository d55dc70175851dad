package deepseekv4_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4/deepseekv4test"
	"github.com/maniac-ai/mach/pkg/model/modeltest"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/stretchr/testify/require"
)

// synthetic writes a tiny deepseek_v4 checkpoint in DeepSeek's upstream
// form and loads it.
func synthetic(t testing.TB, b kernels.Backend, o deepseekv4test.Options) (string, *deepseekv4.Model) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, deepseekv4test.Write(dir, deepseekv4test.Tiny(), o))
	return dir, loadDir(t, dir, b)
}

func loadDir(t testing.TB, dir string, b kernels.Backend) *deepseekv4.Model {
	t.Helper()
	return modeltest.LoadDir(t, dir, b, deepseekv4.Loader).(*deepseekv4.Model)
}

func prompt(seed uint64, n, vocab int) []int32 {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(2 + r.IntN(vocab-2))
	}
	return out
}

// run feeds tokens to a fresh sequence in steps of the given sizes (the
// rest in one step when they run out) and returns every token's logits.
func run(t testing.TB, m model.Model, tokens []int32, steps []int, dt kernels.DType) ([]float32, kvcache.Cache) {
	t.Helper()
	seq := newSeq(t, m, dt)
	var out []float32
	for at := 0; at < len(tokens); {
		n := len(tokens) - at
		if len(steps) > 0 {
			n = min(steps[0], n)
			steps = steps[1:]
		}
		seq.Tokens, seq.Logits = tokens[at:at+n], model.AllLogits
		o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
		require.NoError(t, err)
		out = append(out, o.Logits[0]...)
		at += n
	}
	return out, seq.Cache
}

// TestUpstreamFormsAgree: the FP8/FP4 checkpoint computed on as stored
// gives the same bits as the f32 checkpoint of its dequantized values, on
// both CPU paths (the kernels decode exactly; batch size does not change a
// product) — through DeepSeek's config spelling (compress_ratios,
// num_hash_layers, rope_scaling YaRN, qk_rope_head_dim).
func TestUpstreamFormsAgree(t *testing.T) {
	for bname, mk := range modeltest.Backends() {
		t.Run(bname, func(t *testing.T) {
			b := mk()
			defer b.Close()
			_, fp8 := synthetic(t, b, deepseekv4test.Options{Format: deepseekv4test.FP8, Seed: 3})
			_, f32 := synthetic(t, b, deepseekv4test.Options{Format: deepseekv4test.F32, Seed: 3})
			o := fp8.Options()
			require.Equal(t, []deepseekv4.Kind{deepseekv4.HCA, deepseekv4.CSA, deepseekv4.Sliding, deepseekv4.CSA}, o.Kinds)
			require.Equal(t, []int{8, 4, 0, 4}, o.Ratios)
			require.Equal(t, []bool{true, false, false, false}, o.Hash)
			require.Equal(t, float32(1), o.CompressRoPE.Scale, "YaRN attention factor 1")
			require.NotEqual(t, o.MainRoPE.InvFreq, o.CompressRoPE.InvFreq)
			require.Less(t, fp8.Info().WeightBytes*3, f32.Info().WeightBytes, "FP8/FP4 weights stay small")
			toks := prompt(1, 70, o.Vocab)
			a, _ := run(t, fp8, toks, nil, kernels.F32)
			c, _ := run(t, f32, toks, nil, kernels.F32)
			sameLogits(t, c, a, o.Vocab, "FP8/FP4 against f32")
		})
	}
}

// TestChunking: a prompt longer than the window and every ratio gives the
// same logits prefilled at once, in uneven chunks, and token by token
// (windows, entries and the compressors' pending projections carried by
// the cache across steps).
func TestChunking(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	_, m := synthetic(t, b, deepseekv4test.Options{Seed: 5})
	toks := prompt(2, 75, m.Options().Vocab)
	whole, _ := run(t, m, toks, nil, kernels.F32)
	for _, steps := range [][]int{{5, 1, 13, 8, 3, 2, 9}, {1, 1, 1, 7, 16, 16}, ones(len(toks))} {
		got, c := run(t, m, toks, steps, kernels.F32)
		sameLogits(t, whole, got, m.Options().Vocab, "steps %v", steps[:min(len(steps), 8)])
		require.Equal(t, len(toks), c.Len())
	}
	// f16 storage stays close.
	half, _ := run(t, m, toks, []int{20, 1, 1, 53}, kernels.F16)
	require.Less(t, relL2(half, whole), 2e-2)
}

// sameLogits requires got == want bit for bit, naming the first position
// that differs.
func sameLogits(t testing.TB, want, got []float32, vocab int, format string, args ...any) {
	t.Helper()
	require.Equal(t, len(want), len(got), fmt.Sprintf(format, args...))
	for i := range want {
		if got[i] != want[i] {
			p := i / vocab
			require.Failf(t, "logits differ", "%s: first at position %d (element %d: %g, want %g; relative L2 of the row %.3g)",
				fmt.Sprintf(format, args...), p, i%vocab, got[i], want[i], relL2(got[p*vocab:(p+1)*vocab], want[p*vocab:(p+1)*vocab]))
		}
	}
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return num / den
}

// TestBatchInvariance: sequences stepped together (ragged prefill chunks
// and decode steps in one batch) get exactly the logits they get alone.
func TestBatchInvariance(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	_, m := synthetic(t, b, deepseekv4test.Options{Seed: 7})
	vocab := m.Options().Vocab
	prompts := [][]int32{prompt(3, 44, vocab), prompt(4, 11, vocab), prompt(5, 68, vocab)}
	steps := [][]int{{41, 1, 1, 1}, {3, 6, 1, 1}, {30, 36, 1, 1}}
	alone := make([][]float32, len(prompts))
	for i, p := range prompts {
		alone[i], _ = run(t, m, p, steps[i], kernels.F32)
	}
	seqs := make([]model.Seq, len(prompts))
	for i := range seqs {
		seqs[i] = newSeq(t, m, kernels.F32)
	}
	got := make([][]float32, len(prompts))
	at := make([]int, len(prompts))
	for s := 0; s < 4; s++ {
		for i := range seqs {
			n := steps[i][s]
			seqs[i].Tokens, seqs[i].Logits = prompts[i][at[i]:at[i]+n], model.AllLogits
			at[i] += n
		}
		out, err := m.Forward(t.Context(), &model.Batch{Seqs: seqs})
		require.NoError(t, err)
		for i := range seqs {
			got[i] = append(got[i], out.Logits[i]...)
		}
	}
	for i := range prompts {
		sameLogits(t, alone[i], got[i], vocab, "sequence %d", i)
	}
}

// TestPrefixReuse: cutting a sequence back to a snapshot (or to a point
// whose window is still held) and feeding the same tokens again gives the
// same logits; cutting back further without a snapshot is refused.
func TestPrefixReuse(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	_, m := synthetic(t, b, deepseekv4test.Options{Seed: 9})
	toks := prompt(6, 60, m.Options().Vocab)
	want, _ := run(t, m, toks, []int{20, 5, 35}, kernels.F32)
	vocab := m.Options().Vocab

	seq := newSeq(t, m, kernels.F32)
	c := seq.Cache.(*kvcache.Compressed)
	require.NoError(t, c.SnapshotAt(23))
	step := func(a, e int) []float32 {
		seq.Tokens, seq.Logits = toks[a:e], model.AllLogits
		o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
		require.NoError(t, err)
		return o.Logits[0]
	}
	step(0, 20)
	step(20, 25)
	step(25, 60)
	require.Equal(t, []int{23}, c.Snapshots())
	// The window and pending projections of position 30 are still held
	// (the last step started at 25): an exact cut.
	require.Equal(t, 30, c.Restorable(30))
	require.Equal(t, 23, c.Restorable(24))
	require.Equal(t, 0, c.Restorable(22))
	require.ErrorIs(t, c.Truncate(10), kvcache.ErrNoSnapshot)
	require.Equal(t, 60, c.Len(), "a refused truncation changes nothing")

	require.NoError(t, c.Truncate(30))
	sameLogits(t, want[30*vocab:], step(30, 60), vocab, "after an exact cut to 30")
	require.NoError(t, c.Truncate(23))
	sameLogits(t, want[23*vocab:], step(23, 60), vocab, "after restoring the snapshot at 23")
	// The last few tokens are still held: an exact cut, no snapshot.
	require.Equal(t, 59, c.Restorable(59))
	require.NoError(t, c.Truncate(59))
	sameLogits(t, want[59*vocab:], step(59, 60), vocab, "after an exact cut to 59")
	require.NoError(t, c.Truncate(0))
	sameLogits(t, want[:10*vocab], step(0, 10), vocab, "after a cut to 0")
}

// TestAbortedStep: a step that fails leaves the cache as it was.
func TestAbortedStep(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	_, m := synthetic(t, b, deepseekv4test.Options{Seed: 11})
	toks := prompt(8, 30, m.Options().Vocab)
	want, _ := run(t, m, toks, []int{17, 13}, kernels.F32)
	seq := newSeq(t, m, kernels.F32)
	seq.Tokens = toks[:17]
	_, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	seq.Tokens = toks[17:]
	_, err = m.Forward(ctx, &model.Batch{Seqs: []model.Seq{seq}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 17, seq.Cache.Len())
	seq.Logits = model.AllLogits
	o, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{seq}})
	require.NoError(t, err)
	sameLogits(t, want[17*m.Options().Vocab:], o.Logits[0], m.Options().Vocab, "after an aborted step")
}

// TestStackedExpertsRefused: routed experts stacked on one axis (DeepSeek's
// MLX conversions) are refused with the reason; mach-prune's per-expert
// output of the same checkpoint loads and equals the per-expert form.
func TestStackedExpertsRefused(t *testing.T) {
	b := cpu.New(cpu.Options{})
	defer b.Close()
	dir := t.TempDir()
	require.NoError(t, deepseekv4test.Write(dir, deepseekv4test.Tiny(), deepseekv4test.Options{Format: deepseekv4test.F32, Stacked: true, Seed: 13}))
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	_, err = deepseekv4.Load(t.Context(), dir, cfg, b, deepseekv4.LoadOptions{})
	require.ErrorIs(t, err, deepseekv4.ErrStacked)
	require.ErrorIs(t, err, fault.ErrUnsupported)
	require.ErrorContains(t, err, "slice it with mach-prune first")

	out := filepath.Join(t.TempDir(), "engine")
	_, err = prune.Run(t.Context(), prune.Options{Source: dir, Output: out})
	require.NoError(t, err)
	sliced := loadDir(t, out, b)
	_, per := synthetic(t, b, deepseekv4test.Options{Format: deepseekv4test.F32, Seed: 13})
	toks := prompt(9, 40, per.Options().Vocab)
	a, _ := run(t, sliced, toks, nil, kernels.F32)
	c, _ := run(t, per, toks, nil, kernels.F32)
	sameLogits(t, c, a, per.Options().Vocab, "mach-prune's slices against the per-expert form")
}
