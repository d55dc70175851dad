package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/sample"
	"github.com/stretchr/testify/require"
)

// start runs a scheduler until the test ends.
func start(t *testing.T, m model.Model, opts Options) *Scheduler {
	t.Helper()
	s, err := New(m, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.ErrorIs(t, recv(t, done, "Run after cancel"), context.Canceled)
	})
	return s
}

// generate runs req and returns the ids streamed.
func generate(ctx context.Context, s *Scheduler, req *Request) ([]int32, *Result, error) {
	var ids []int32
	res, err := s.Generate(ctx, req, func(tk engine.Token) error {
		if tk.ID >= 0 {
			ids = append(ids, tk.ID)
		}
		return nil
	})
	return ids, res, err
}

func randomPrompt(rng *rand.Rand, n, vocab int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32(3 + rng.IntN(vocab-6))
	}
	return p
}

// recv receives from ch, failing the test (instead of hanging it) when
// nothing comes within 30 seconds.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: nothing after 30 s", what)
		var zero T
		return zero
	}
}

// eventually polls cond for up to two seconds.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 2*time.Second, time.Millisecond, msg)
}

// realModels are the fixtures of every architecture the scheduler is
// tested on, one per cache kind this build batches (standard, rotating,
// hybrid_gdn).
var realModels = []string{"qwen3_moe", "gemma4", "gpt_oss", "qwen3_5_moe"}

func loadFixture(t *testing.T, name string) *engine.Engine {
	t.Helper()
	dir := enginetest.Checkpoint(t, name, nil)
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

// Greedy generations through the scheduler give the engine's tokens, one
// at a time and all at once (batch invariance: a sequence's tokens do not
// depend on what else is in the batch, chunked prefill mixed in).
func TestBatchInvariance(t *testing.T) {
	for _, name := range realModels {
		t.Run(name, func(t *testing.T) { testBatchInvariance(t, name) })
	}
}

func testBatchInvariance(t *testing.T, name string) {
	e := loadFixture(t, name)
	vocab := e.Info().Vocab
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{5, 17, 40, 3, 64, 29, 11, 50}
	prompts := make([][]int32, len(lengths))
	want := make([][]int32, len(lengths))
	for i, n := range lengths {
		prompts[i] = randomPrompt(rng, n, vocab)
		want[i] = engineTokens(t, e, prompts[i], 12)
		require.NotEmpty(t, want[i])
	}
	s := start(t, e.Model(), Options{EOS: e.EOS(), CacheType: kernels.F32, StepTokens: 24, MaxBatch: 8, PrefixBlock: -1})
	for i, p := range prompts {
		got, res, err := generate(t.Context(), s, &Request{Prompt: p, MaxTokens: 12})
		require.NoError(t, err)
		require.Equal(t, want[i], got, "sequential %d", i)
		require.Equal(t, want[i], res.Tokens)
		require.Equal(t, len(p), res.PromptTokens)
		require.Zero(t, res.CachedTokens)
	}
	for round := range 2 {
		got := make([][]int32, len(prompts))
		var wg sync.WaitGroup
		for i, p := range prompts {
			wg.Go(func() {
				ids, _, err := generate(t.Context(), s, &Request{Prompt: p, MaxTokens: 12})
				if err == nil {
					got[i] = ids
				}
			})
		}
		wg.Wait()
		for i := range prompts {
			require.Equal(t, want[i], got[i], "round %d, concurrent %d", round, i)
		}
	}
	st := s.Stats()
	require.Greater(t, st.Steps, uint64(0))
	require.Equal(t, uint64(3*len(prompts)), st.Finished)
}

// A follow-up request that extends an earlier conversation continues from
// its cache: the shared tokens are reported as cached and the output is
// what a cold run gives.
func TestPrefixReuseRealModel(t *testing.T) {
	for _, name := range realModels {
		t.Run(name, func(t *testing.T) { testPrefixReuse(t, name) })
	}
}

func testPrefixReuse(t *testing.T, name string) {
	e := loadFixture(t, name)
	vocab := e.Info().Vocab
	rng := rand.New(rand.NewPCG(3, 4))
	p1 := randomPrompt(rng, 40, vocab)
	s := start(t, e.Model(), Options{EOS: e.EOS(), CacheType: kernels.F32, StepTokens: 32, PrefixBlock: 8})
	first, res1, err := generate(t.Context(), s, &Request{Prompt: p1, MaxTokens: 6})
	require.NoError(t, err)
	require.Zero(t, res1.CachedTokens)
	require.Len(t, first, 6, "the fixture emits no end-of-sequence id this early")
	p2 := append(append(append([]int32{}, p1...), first...), randomPrompt(rng, 7, vocab)...)
	got, res2, err := generate(t.Context(), s, &Request{Prompt: p2, MaxTokens: 8})
	require.NoError(t, err)
	// The cache holds the prompt and every generated token but the last,
	// which was sampled and never fed.
	require.Equal(t, len(p1)+len(first)-1, res2.CachedTokens)
	require.Equal(t, engineTokens(t, e, p2, 8), got)
	// The same prompt again reuses all of it but the last token.
	again, res3, err := generate(t.Context(), s, &Request{Prompt: p2, MaxTokens: 8})
	require.NoError(t, err)
	require.Equal(t, got, again)
	require.Equal(t, len(p2)-1, res3.CachedTokens)
	// A different continuation of the first prompt goes back to its end
	// (a snapshot of the window or recurrent state where the cache needs
	// one).
	branch := append(append([]int32{}, p1...), randomPrompt(rng, 5, vocab)...)
	got4, res4, err := generate(t.Context(), s, &Request{Prompt: branch, MaxTokens: 8})
	require.NoError(t, err)
	require.Equal(t, len(p1), res4.CachedTokens)
	require.Equal(t, engineTokens(t, e, branch, 8), got4)
	st := s.Stats()
	require.Equal(t, uint64(res2.CachedTokens+res3.CachedTokens+res4.CachedTokens), st.PrefixHitTokens)
	require.Equal(t, uint64(len(p1)+2*len(p2)+len(branch)), st.PromptTokens)
}

func TestPrefixReuseFake(t *testing.T) {
	for _, hybrid := range []bool{false, true} {
		t.Run(map[bool]string{false: "standard", true: "hybrid"}[hybrid], func(t *testing.T) {
			f := newFake(1000, 4096)
			var m model.Model = f
			if hybrid {
				m = hybridFake{f}
			}
			cold := start(t, newFake(1000, 4096), Options{PrefixBlock: -1})
			s := start(t, m, Options{PrefixBlock: 4})
			rng := rand.New(rand.NewPCG(5, 6))
			p := randomPrompt(rng, 30, 1000)
			out1, _, err := generate(t.Context(), s, &Request{Prompt: p, MaxTokens: 10})
			require.NoError(t, err)
			// A new turn: prompt, answer, question.
			turn := append(append(append([]int32{}, p...), out1...), randomPrompt(rng, 9, 1000)...)
			got, res, err := generate(t.Context(), s, &Request{Prompt: turn, MaxTokens: 10})
			require.NoError(t, err)
			want, _, err := generate(t.Context(), cold, &Request{Prompt: turn, MaxTokens: 10})
			require.NoError(t, err)
			require.Equal(t, want, got)
			require.Equal(t, len(p)+len(out1)-1, res.CachedTokens, "the whole earlier sequence is reusable")
			// A different answer to the first prompt: a hybrid cache goes
			// back to the snapshot at the end of the prompt.
			branch := append(append([]int32{}, p...), 7, 8, 9)
			got, res, err = generate(t.Context(), s, &Request{Prompt: branch, MaxTokens: 5})
			require.NoError(t, err)
			want, _, err = generate(t.Context(), cold, &Request{Prompt: branch, MaxTokens: 5})
			require.NoError(t, err)
			require.Equal(t, want, got)
			require.Equal(t, len(p), res.CachedTokens)
			// Gauges are published between steps, just after the result.
			eventually(t, func() bool { return s.Stats().PrefixEntries == 1 }, "each finished sequence's cache went back; the shorter ones are dropped")
		})
	}
}

// The queue is bounded: beyond MaxQueue waiting requests, Generate fails
// at once with ErrQueueFull.
func TestQueueFull(t *testing.T) {
	f := newFake(100, 512)
	f.gate = make(chan struct{})
	s := start(t, f, Options{MaxBatch: 1, MaxQueue: 2, PrefixBlock: -1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, _, err := generate(ctx, s, &Request{Prompt: []int32{1, 2, 3}, MaxTokens: 2})
			errs <- err
		}()
		// One at a time: three at once could all find the queue before
		// the first is admitted, and the third would be refused.
		eventually(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Waiting == i }, "one running, the rest waiting")
	}
	_, _, err := generate(t.Context(), s, &Request{Prompt: []int32{1}, MaxTokens: 1})
	require.ErrorIs(t, err, ErrQueueFull)
	go func() {
		for {
			select {
			case f.gate <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range 3 {
		require.NoError(t, recv(t, errs, "request"))
	}
}

// A cancelled request leaves the batch at the next step; the others go on.
func TestCancel(t *testing.T) {
	f := newFake(100, 512)
	f.gate = make(chan struct{})
	s := start(t, f, Options{MaxBatch: 4, PrefixBlock: -1})
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan struct{})
	errA := make(chan error, 1)
	go func() {
		_, err := s.Generate(ctx, &Request{Prompt: []int32{1, 2}, MaxTokens: 400}, func(engine.Token) error {
			select {
			case first <- struct{}{}:
			default:
			}
			return nil
		})
		errA <- err
	}()
	eventually(t, func() bool { return s.Stats().Running == 1 }, "A admitted")
	errB := make(chan error, 1)
	go func() {
		_, _, err := generate(t.Context(), s, &Request{Prompt: []int32{4, 5}, MaxTokens: 5})
		errB <- err
	}()
	eventually(t, func() bool { return s.Stats().Waiting == 1 }, "B queued")
	f.gate <- struct{}{} // A's prefill; B joins at the next step
	<-first
	cancel()
	require.ErrorIs(t, recv(t, errA, "cancelled request"), context.Canceled)
	pump, stopPump := context.WithCancel(t.Context())
	defer stopPump()
	go func() {
		for {
			select {
			case f.gate <- struct{}{}:
			case <-pump.Done():
				return
			}
		}
	}()
	require.NoError(t, recv(t, errB, "request B"))
	eventually(t, func() bool { return s.Stats().Running == 0 && f.liveCaches() == 0 }, "caches freed")
	require.Equal(t, uint64(1), s.Stats().Cancelled)
	// An error from yield cancels too.
	boom := errors.New("client went away")
	_, err := s.Generate(t.Context(), &Request{Prompt: []int32{1}, MaxTokens: 50}, func(engine.Token) error { return boom })
	require.ErrorIs(t, err, boom)
	eventually(t, func() bool { return f.liveCaches() == 0 }, "cache freed after a yield error")
}

// Chunked prefill: a long prompt arriving while another sequence decodes
// is prefilled a chunk per step, and every one of those steps also
// decodes the running sequence.
func TestChunkedPrefillKeepsDecoding(t *testing.T) {
	f := newFake(100, 4096)
	f.gate = make(chan struct{})
	s := start(t, f, Options{StepTokens: 64, PrefixBlock: -1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	streamed := make(chan int, 1000)
	go func() {
		_, _ = s.Generate(ctx, &Request{Prompt: []int32{1, 2, 3}, MaxTokens: 1000}, func(engine.Token) error {
			streamed <- 1
			return nil
		})
	}()
	f.gate <- struct{}{} // prefill of the short prompt
	<-streamed
	longDone := make(chan error, 1)
	before := len(f.steps())
	go func() {
		_, _, err := generate(ctx, s, &Request{Prompt: randomPrompt(rand.New(rand.NewPCG(1, 1)), 600, 100), MaxTokens: 1})
		longDone <- err
	}()
	eventually(t, func() bool { st := s.Stats(); return st.Running+st.Waiting == 2 }, "long prompt queued")
	for {
		select {
		case f.gate <- struct{}{}:
		case err := <-longDone:
			require.NoError(t, err)
			var mixed int
			for i, st := range f.steps()[before:] {
				total := 0
				for _, n := range st {
					total += n
				}
				require.LessOrEqual(t, total, 64, "step %d stays within the token budget", i)
				if len(st) == 2 {
					mixed++
					require.Equal(t, 1, st[0], "step %d decodes the stream", i)
				}
			}
			require.GreaterOrEqual(t, mixed, 600/63, "the prompt took several steps, each with a decode")
			return
		case <-streamed:
		case <-time.After(5 * time.Second):
			t.Fatal("long prompt never finished")
		}
	}
}

// KV reservations bound admission: with room for two worst-case
// sequences, a third waits although MaxBatch allows it; a request that
// can never fit is refused.
func TestKVBudget(t *testing.T) {
	f := newFake(100, 4096)
	f.gate = make(chan struct{})
	probe, err := New(f, Options{})
	require.NoError(t, err)
	need := probe.cost.bound(3 + 100)
	s := start(t, f, Options{MaxBatch: 4, KVBudget: 2 * need, PrefixBlock: -1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 3 {
		go func() { _, _, _ = generate(ctx, s, &Request{Prompt: []int32{1, 2, 3}, MaxTokens: 100}) }()
	}
	eventually(t, func() bool { st := s.Stats(); return st.Running+st.Waiting == 3 }, "all queued")
	f.gate <- struct{}{}
	eventually(t, func() bool { st := s.Stats(); return st.Running == 2 && st.Waiting == 1 }, "two running, one waiting for KV room")
	require.Equal(t, 2*need, s.Stats().KVReserved)
	_, _, err = generate(t.Context(), s, &Request{Prompt: []int32{1}, MaxTokens: 4000})
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, err, fault.ErrUsage)
	_, _, err = generate(t.Context(), s, &Request{Prompt: []int32{1}, MaxTokens: 5000})
	require.ErrorIs(t, err, ErrTooLarge, "beyond the context length")
}

func TestInvalidRequests(t *testing.T) {
	s := start(t, newFake(100, 512), Options{})
	for name, req := range map[string]*Request{
		"empty prompt": {MaxTokens: 1},
		"no tokens":    {Prompt: []int32{1}},
		"id too large": {Prompt: []int32{100}, MaxTokens: 1},
		"negative id":  {Prompt: []int32{-1}, MaxTokens: 1},
		"bad sampling": {Prompt: []int32{1}, MaxTokens: 1, Sampling: sampleTopP(2)},
	} {
		_, _, err := generate(t.Context(), s, req)
		require.ErrorIs(t, err, fault.ErrUsage, name)
	}
}

// Drain refuses new requests and lets running ones finish; stopping Run
// fails what is left and frees every cache.
func TestDrainAndStop(t *testing.T) {
	f := newFake(100, 512)
	f.gate = make(chan struct{})
	s, err := New(f, Options{PrefixBlock: 4})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := generate(t.Context(), s, &Request{Prompt: []int32{1, 2, 3, 4, 5, 6}, MaxTokens: 100})
			errs <- err
		}()
	}
	eventually(t, func() bool { st := s.Stats(); return st.Running+st.Waiting == 2 }, "queued")
	s.Drain()
	_, _, err = generate(t.Context(), s, &Request{Prompt: []int32{1}, MaxTokens: 1})
	require.ErrorIs(t, err, ErrDraining)
	f.gate <- struct{}{}
	cancel()
	require.ErrorIs(t, recv(t, ran, "Run after cancel"), context.Canceled)
	require.ErrorIs(t, recv(t, errs, "request at stop"), ErrStopped)
	require.ErrorIs(t, recv(t, errs, "request at stop"), ErrStopped)
	require.Zero(t, f.liveCaches())
	_, _, err = generate(t.Context(), s, &Request{Prompt: []int32{1}, MaxTokens: 1})
	require.ErrorIs(t, err, ErrStopped)
}

// A failing step fails the sequences in it, not the scheduler.
func TestForwardError(t *testing.T) {
	f := newFake(100, 512)
	s := start(t, f, Options{PrefixBlock: -1})
	boom := errors.New("device lost")
	f.mu.Lock()
	f.fail = boom
	f.mu.Unlock()
	_, _, err := generate(t.Context(), s, &Request{Prompt: []int32{1, 2}, MaxTokens: 3})
	require.ErrorIs(t, err, boom)
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	_, _, err = generate(t.Context(), s, &Request{Prompt: []int32{1, 2}, MaxTokens: 3})
	require.NoError(t, err)
	require.Zero(t, f.liveCaches())
	require.Equal(t, uint64(1), s.Stats().Failed)
}

// Thousands of requests, some cancelled, leave no goroutine and no cache
// behind beyond the prefix cache's entries.
func TestNoLeaks(t *testing.T) {
	f := newFake(50, 512)
	s, err := New(f, Options{MaxBatch: 16, MaxQueue: 4096, PrefixBlock: 4})
	require.NoError(t, err)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	rng := rand.New(rand.NewPCG(7, 8))
	var wg sync.WaitGroup
	for i := range 3000 {
		p := randomPrompt(rng, 1+rng.IntN(20), 50)
		wg.Go(func() {
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			n := 0
			_, _ = s.Generate(rctx, &Request{Prompt: p, MaxTokens: 8}, func(engine.Token) error {
				if n++; i%7 == 0 && n == 2 {
					rcancel()
				}
				return nil
			})
		})
	}
	wg.Wait()
	eventually(t, func() bool { return s.Stats().Running == 0 && s.Stats().Waiting == 0 }, "idle")
	st := s.Stats()
	require.Equal(t, st.PrefixEntries, f.liveCaches(), "every live cache is a prefix-cache entry")
	require.Equal(t, uint64(3000), st.Finished+st.Cancelled)
	cancel()
	require.ErrorIs(t, recv(t, ran, "Run after cancel"), context.Canceled)
	require.Zero(t, f.liveCaches())
	// Polled here: require.Eventually runs the condition on goroutines of
	// its own.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > base; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), base)
		}
	}
}

func sampleTopP(p float64) sample.Options { return sample.Options{TopP: p} }
