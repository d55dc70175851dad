package deepseekv4_test

import (
	"context"
	"sync"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4/deepseekv4test"
	"github.com/maniac-ai/mach/pkg/scheduler"
	"github.com/stretchr/testify/require"
)

// servable writes the synthetic upstream-form checkpoint with enginetest's
// tiny tokenizer and loads it through the engine, as mach-generate and
// mach-serve do (registry, checkpoint inspection, archs.Loaders).
func servable(t *testing.T) *engine.Engine {
	t.Helper()
	dir := t.TempDir()
	shape := deepseekv4test.Tiny()
	require.NoError(t, deepseekv4test.Write(dir, shape, deepseekv4test.Options{Seed: 21}))
	enginetest.WriteTokenizer(t, dir, shape.Vocab)
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders(), CacheType: kernels.F32, PrefillChunk: 16})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func engineTokens(t *testing.T, e *engine.Engine, prompt []int32, maxTokens int) []int32 {
	t.Helper()
	var ids []int32
	require.NoError(t, e.Generate(t.Context(), &engine.Request{PromptTokens: prompt, MaxTokens: maxTokens}, func(tk engine.Token) error {
		if tk.ID >= 0 {
			ids = append(ids, tk.ID)
		}
		return nil
	}))
	return ids
}

func startScheduler(t *testing.T, e *engine.Engine, opts scheduler.Options) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(e.Model(), opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
	return s
}

func schedule(ctx context.Context, s *scheduler.Scheduler, req *scheduler.Request) ([]int32, *scheduler.Result, error) {
	var ids []int32
	res, err := s.Generate(ctx, req, func(tk engine.Token) error {
		if tk.ID >= 0 {
			ids = append(ids, tk.ID)
		}
		return nil
	})
	return ids, res, err
}

// TestSchedulerBatchInvariance: greedy generations through the continuous
// batching scheduler (chunked prefill mixed with decodes of other
// sequences, up to 8 at once) give the engine's tokens, one request at a
// time and all at once.
func TestSchedulerBatchInvariance(t *testing.T) {
	e := servable(t)
	vocab := e.Info().Vocab
	lengths := []int{5, 17, 40, 3, 64, 29, 11, 50}
	prompts := make([][]int32, len(lengths))
	want := make([][]int32, len(lengths))
	for i, n := range lengths {
		prompts[i] = prompt(uint64(60+i), n, vocab-3)
		want[i] = engineTokens(t, e, prompts[i], 12)
		require.Len(t, want[i], 12, "prompt %d reaches no end-of-sequence id", i)
	}
	s := startScheduler(t, e, scheduler.Options{EOS: e.EOS(), CacheType: kernels.F32, StepTokens: 24, MaxBatch: 8, PrefixBlock: -1})
	for i, p := range prompts {
		got, _, err := schedule(t.Context(), s, &scheduler.Request{Prompt: p, MaxTokens: 12})
		require.NoError(t, err)
		require.Equal(t, want[i], got, "sequential %d", i)
	}
	got := make([][]int32, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			ids, _, err := schedule(t.Context(), s, &scheduler.Request{Prompt: p, MaxTokens: 12})
			if err == nil {
				got[i] = ids
			}
		})
	}
	wg.Wait()
	for i := range prompts {
		require.Equal(t, want[i], got[i], "concurrent %d", i)
	}
}

// TestSchedulerPrefixReuse: a request that extends an earlier conversation
// continues from its compressed cache (the shared tokens reported cached)
// and generates what a cold run does; a different continuation of the
// first prompt goes back to its end through a snapshot.
func TestSchedulerPrefixReuse(t *testing.T) {
	e := servable(t)
	vocab := e.Info().Vocab
	p1 := prompt(40, 40, vocab-3)
	s := startScheduler(t, e, scheduler.Options{EOS: e.EOS(), CacheType: kernels.F32, StepTokens: 32, PrefixBlock: 8})
	first, res1, err := schedule(t.Context(), s, &scheduler.Request{Prompt: p1, MaxTokens: 6})
	require.NoError(t, err)
	require.Zero(t, res1.CachedTokens)
	require.NotEmpty(t, first)
	p2 := append(append(append([]int32{}, p1...), first...), prompt(41, 7, vocab-3)...)
	got, res2, err := schedule(t.Context(), s, &scheduler.Request{Prompt: p2, MaxTokens: 8})
	require.NoError(t, err)
	require.Greater(t, res2.CachedTokens, len(p1)-8, "most of the first conversation is reused")
	require.Equal(t, engineTokens(t, e, p2, 8), got)
	again, res3, err := schedule(t.Context(), s, &scheduler.Request{Prompt: p2, MaxTokens: 8})
	require.NoError(t, err)
	require.Equal(t, got, again)
	require.Equal(t, len(p2)-1, res3.CachedTokens)
	branch := append(append([]int32{}, p1...), prompt(42, 5, vocab-3)...)
	got4, res4, err := schedule(t.Context(), s, &scheduler.Request{Prompt: branch, MaxTokens: 8})
	require.NoError(t, err)
	require.Equal(t, len(p1), res4.CachedTokens)
	require.Equal(t, engineTokens(t, e, branch, 8), got4)
}
