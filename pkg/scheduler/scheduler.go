// Package scheduler runs many generations through one model at once:
// continuous batching. One goroutine (Run) owns the model and steps it over
// a ragged batch of every running sequence; sequences join and leave
// between steps. Each step gives every decoding sequence its next token and
// fills the rest of a token budget with prefill chunks, so a long prompt is
// prefilled a chunk at a time while other streams keep decoding.
//
// Admission is bounded three ways: at most MaxBatch sequences run, their
// key/value caches must fit the KV budget (reserved for the worst case when
// a sequence is admitted, so a running sequence never runs out), and at most
// MaxQueue requests wait; beyond that Generate fails at once with
// ErrQueueFull.
//
// Finished sequences leave their caches in a prefix cache (a trie over
// token blocks, least recently used first out, sharing the KV budget): a
// new request continues from the longest prefix it shares with one of
// them, and reports those prompt tokens as cached. Hybrid caches
// (recurrent state) are cut back to snapshots taken at the end of the
// prompt.
//
// Sampling, end-of-sequence ids, stop strings and text decoding are the
// engine's (engine.Output), so a request gives the same tokens here as
// through engine.Generate.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/kvcache"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/sample"
)

// Options configure a Scheduler.
type Options struct {
	// MaxBatch is the most sequences running at once (default 8).
	MaxBatch int
	// MaxQueue is the most requests waiting for a slot (default 64).
	MaxQueue int
	// StepTokens is the most tokens one forward step takes: one per
	// decoding sequence, the rest for prefill chunks (default 256). It
	// bounds how long a step with prefill in it delays the running streams.
	StepTokens int
	// ContextLength is every sequence's capacity, prompt and output
	// (default and maximum: the model's context).
	ContextLength int
	// CacheType stores keys and values (default F16).
	CacheType kernels.DType
	// KVBudget is the most bytes the caches of running sequences (reserved
	// for their worst case) and the prefix cache may take; 0 gives room
	// for MaxBatch sequences of ContextLength tokens.
	KVBudget int64
	// PrefixBlock is the token block of the prefix cache (default 16);
	// a request reuses a cached prefix of at least one block. Negative
	// turns the prefix cache off.
	PrefixBlock int
	// EOS are the end-of-sequence ids (engine.Engine.EOS).
	EOS map[int32]bool
	// Observer receives latencies; nil ignores them.
	Observer Observer
	// Logger receives debug records; nil is slog.Default().
	Logger *slog.Logger
}

// Observer receives per-token latencies from the scheduler's goroutine; it
// must be quick and safe for concurrent use.
type Observer interface {
	// FirstToken: from a request's arrival to its first sampled token.
	FirstToken(d time.Duration)
	// NextToken: between two sampled tokens of one sequence.
	NextToken(d time.Duration)
}

// Errors callers branch on.
var (
	// ErrQueueFull: MaxQueue requests are already waiting.
	ErrQueueFull = errors.New("too many requests waiting")
	// ErrDraining: the scheduler takes no new requests (shutting down).
	ErrDraining = errors.New("shutting down: not accepting new requests")
	// ErrStopped: Run returned; the request did not finish.
	ErrStopped = errors.New("scheduler stopped")
	// ErrTooLarge: the request can never fit (context length or KV budget).
	ErrTooLarge = errors.New("request too large")
)

// Request is one generation.
type Request struct {
	// Prompt is the prompt's token ids (engine.Prompter makes them).
	Prompt    []int32
	MaxTokens int
	Sampling  sample.Options
	// Stop strings end generation (they need a Decoder).
	Stop []string
	// Decoder makes the text (a fresh one per request); nil gives ids only.
	Decoder engine.TextDecoder
	// Constraint, when set, restricts which tokens may be sampled (JSON
	// mode); one per request.
	Constraint Constraint
}

// Constraint restricts sampling, called from the scheduler's goroutine:
// Mask sets the logits of tokens that may not come next to -Inf (the
// reported logprobs are then those of the constrained distribution), and
// Accept records the token sampled.
type Constraint interface {
	Mask(logits []float32)
	Accept(id int32)
}

// Result describes a finished generation.
type Result struct {
	// FinishReason is engine.FinishStop or engine.FinishLength.
	FinishReason string
	PromptTokens int
	// CachedTokens of the prompt came from the prefix cache.
	CachedTokens int
	Tokens       []int32
	Text         string
	// Queued is the wait for a slot, Prefill from admission to the first
	// token, Decode from the first token to the end.
	Queued, Prefill, Decode time.Duration
}

// Stats is a snapshot of the scheduler's state and counters.
type Stats struct {
	Running, Waiting int
	// KVBytes is the memory the caches hold now (running sequences and the
	// prefix cache); KVReserved what running sequences reserved;
	// KVBudget the bound (0 when the model's caches do not report sizes).
	KVBytes, KVReserved, KVBudget int64
	PrefixEntries                 int
	PrefixBytes                   int64
	// Counters since New.
	Steps, StepTokens             uint64
	PromptTokens, PrefixHitTokens uint64
	GeneratedTokens               uint64
	Admitted, Finished, Cancelled uint64
	Failed                        uint64
}

// Scheduler batches generations over one model.
type Scheduler struct {
	m    model.Model
	opts Options
	log  *slog.Logger
	cost cacheCost

	wake chan struct{}
	ids  atomic.Uint64

	mu       sync.Mutex
	waiting  []*seq
	draining bool
	stopped  bool
	stats    Stats

	// owned by Run
	running  []*seq
	prefix   *prefixCache
	reserved int64
}

// New returns a scheduler over m; call Run to start it.
func New(m model.Model, opts Options) (*Scheduler, error) {
	info := m.Info()
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 8
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 64
	}
	if opts.StepTokens <= 0 {
		opts.StepTokens = 256
	}
	if opts.ContextLength <= 0 || (info.MaxContext > 0 && opts.ContextLength > info.MaxContext) {
		if opts.ContextLength > info.MaxContext && info.MaxContext > 0 {
			return nil, fault.Mark(fmt.Errorf("context length %d exceeds the model's %d (max_position_embeddings)", opts.ContextLength, info.MaxContext), fault.ErrUsage)
		}
		opts.ContextLength = info.MaxContext
	}
	if opts.ContextLength <= 0 {
		return nil, fmt.Errorf("scheduler: the model reports no context length; set ContextLength")
	}
	if opts.CacheType == 0 {
		opts.CacheType = kernels.F16
	}
	if opts.PrefixBlock == 0 {
		opts.PrefixBlock = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Scheduler{m: m, opts: opts, log: opts.Logger, wake: make(chan struct{}, 1)}
	var err error
	if s.cost, err = measureCache(m, opts.ContextLength, opts.CacheType); err != nil {
		return nil, err
	}
	if opts.KVBudget <= 0 && s.cost.known() {
		s.opts.KVBudget = int64(opts.MaxBatch) * s.cost.bound(opts.ContextLength)
	}
	if !s.cost.known() {
		s.opts.KVBudget = 0
	}
	if opts.PrefixBlock > 0 {
		s.prefix = newPrefixCache(opts.PrefixBlock)
	}
	s.stats.KVBudget = s.opts.KVBudget
	return s, nil
}

// Options returns the options in effect (defaults filled in).
func (s *Scheduler) Options() Options { return s.opts }

// Vocab is the model's vocabulary size.
func (s *Scheduler) Vocab() int { return s.m.Info().Vocab }

// cacheCost is what a cache of n tokens can take: fixed bytes (recurrent
// state) plus perToken for each allocated row; caches allocate initRows
// up front and at most double the rows they need as they grow.
type cacheCost struct {
	fixed, perToken int64
	initRows, ctx   int
}

type sizer interface{ Bytes() int }

func (c cacheCost) known() bool { return c.perToken > 0 }

// bound is an upper bound on the bytes of a cache that holds n tokens.
func (c cacheCost) bound(n int) int64 {
	rows := min(c.ctx, max(c.initRows, 2*n))
	return c.fixed + c.perToken*int64(rows)
}

func cacheBytes(c kvcache.Cache) int64 {
	if z, ok := c.(sizer); ok {
		return int64(z.Bytes())
	}
	return 0
}

// measureCache reads the cost model off empty caches of 1, 2 and ctx
// tokens (the model's cache kind decides; nothing else knows it).
func measureCache(m model.Model, ctx int, dt kernels.DType) (cacheCost, error) {
	size := func(n int) (int64, bool, error) {
		c, err := m.NewCache(n, dt)
		if err != nil {
			return 0, false, fmt.Errorf("scheduler: a cache of %d tokens: %w", n, err)
		}
		defer c.Release()
		z, ok := c.(sizer)
		if !ok {
			return 0, false, nil
		}
		return int64(z.Bytes()), true, nil
	}
	b1, ok, err := size(1)
	if err != nil || !ok {
		return cacheCost{}, err
	}
	b2, _, err := size(2)
	if err != nil {
		return cacheCost{}, err
	}
	bc, _, err := size(ctx)
	if err != nil {
		return cacheCost{}, err
	}
	c := cacheCost{perToken: b2 - b1, ctx: ctx}
	c.fixed = b1 - c.perToken
	if c.perToken <= 0 {
		return cacheCost{}, nil
	}
	c.initRows = int((bc - c.fixed) / c.perToken)
	return c, nil
}

// seq is one request's sequence.
type seq struct {
	id      uint64
	req     *Request
	sampler *sample.Sampler
	out     *engine.Output
	cache   kvcache.Cache
	hist    []int32 // the tokens the cache holds
	prefill int     // prompt tokens in the cache
	cached  int
	next    int32 // sampled, not yet fed
	hasNext bool
	reserve int64

	arrived, admitted, first, last time.Time

	cancelled atomic.Bool

	mu       sync.Mutex
	pending  []engine.Token
	finished bool
	result   *Result
	err      error
	notify   chan struct{}
}

func (q *seq) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *seq) deliver(t engine.Token) {
	q.mu.Lock()
	q.pending = append(q.pending, t)
	q.mu.Unlock()
	q.signal()
}

func (q *seq) end(res *Result, err error) {
	q.mu.Lock()
	q.finished, q.result, q.err = true, res, err
	q.mu.Unlock()
	q.signal()
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Generate queues req and calls yield with every generated token (in the
// caller's goroutine) until the sequence ends, then returns the result.
// Cancelling ctx, or an error from yield, cancels the sequence: its cache
// is freed at the next step. Errors: ErrQueueFull, ErrDraining, ErrStopped,
// ErrTooLarge and fault.ErrUsage for invalid requests.
func (s *Scheduler) Generate(ctx context.Context, req *Request, yield func(engine.Token) error) (*Result, error) {
	if len(req.Prompt) == 0 {
		return nil, fault.Mark(errors.New("empty prompt"), fault.ErrUsage)
	}
	if req.MaxTokens <= 0 {
		return nil, fault.Mark(fmt.Errorf("max tokens %d: want at least 1", req.MaxTokens), fault.ErrUsage)
	}
	vocab := s.m.Info().Vocab
	for _, id := range req.Prompt {
		if id < 0 || (vocab > 0 && int(id) >= vocab) {
			return nil, fault.Mark(fmt.Errorf("prompt token id %d is outside the vocabulary of %d", id, vocab), fault.ErrUsage)
		}
	}
	if need := len(req.Prompt) + req.MaxTokens; need > s.opts.ContextLength {
		return nil, fault.Mark(fmt.Errorf("%w: a prompt of %d tokens plus %d new tokens exceeds the context length of %d",
			ErrTooLarge, len(req.Prompt), req.MaxTokens, s.opts.ContextLength), fault.ErrUsage)
	}
	if b := s.opts.KVBudget; b > 0 && s.cost.bound(len(req.Prompt)+req.MaxTokens) > b {
		return nil, fault.Mark(fmt.Errorf("%w: a prompt of %d tokens plus %d new tokens needs up to %d bytes of KV cache, more than the budget of %d",
			ErrTooLarge, len(req.Prompt), req.MaxTokens, s.cost.bound(len(req.Prompt)+req.MaxTokens), b), fault.ErrUsage)
	}
	sampler, err := sample.New(req.Sampling)
	if err != nil {
		return nil, fault.Mark(err, fault.ErrUsage)
	}
	sampler.Prompt(req.Prompt)
	q := &seq{
		id: s.ids.Add(1), req: req, sampler: sampler, arrived: time.Now(), notify: make(chan struct{}, 1),
		out: engine.NewOutput(engine.OutputOptions{EOS: s.opts.EOS, Decoder: req.Decoder, Stop: req.Stop, MaxTokens: req.MaxTokens}),
	}
	s.mu.Lock()
	switch {
	case s.stopped:
		s.mu.Unlock()
		return nil, ErrStopped
	case s.draining:
		s.mu.Unlock()
		return nil, ErrDraining
	case len(s.waiting) >= s.opts.MaxQueue:
		s.mu.Unlock()
		return nil, fmt.Errorf("%w (%d)", ErrQueueFull, s.opts.MaxQueue)
	}
	s.waiting = append(s.waiting, q)
	s.stats.Waiting = len(s.waiting)
	s.mu.Unlock()
	s.poke()

	cancel := func() {
		q.cancelled.Store(true)
		s.poke()
	}
	var toks []engine.Token
	for {
		select {
		case <-ctx.Done():
			cancel()
			return nil, ctx.Err()
		case <-q.notify:
		}
		q.mu.Lock()
		toks, q.pending = append(toks[:0], q.pending...), q.pending[:0]
		finished, res, err := q.finished, q.result, q.err
		q.mu.Unlock()
		for _, t := range toks {
			if err := yield(t); err != nil {
				cancel()
				return nil, err
			}
		}
		if finished {
			return res, err
		}
	}
}

// Drain makes Generate refuse new requests with ErrDraining; running and
// waiting ones go on.
func (s *Scheduler) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// Stats returns the current state and counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Waiting = len(s.waiting)
	return st
}

// Run steps the model until ctx ends, then fails what is left with
// ErrStopped, releases every cache and returns ctx's error.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.stop()
	for {
		s.reap()
		s.admit()
		s.publish()
		if len(s.running) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.wake:
			}
			continue
		}
		if err := s.step(ctx); err != nil {
			return err
		}
	}
}

// stop ends every sequence and frees the caches.
func (s *Scheduler) stop() {
	s.mu.Lock()
	s.stopped = true
	waiting := s.waiting
	s.waiting = nil
	s.mu.Unlock()
	for _, q := range waiting {
		q.end(nil, ErrStopped)
	}
	for _, q := range s.running {
		s.release(q)
		q.end(nil, ErrStopped)
	}
	s.running = nil
	if s.prefix != nil {
		s.prefix.clear()
	}
	s.publish()
}

// reap drops cancelled sequences: waiting ones leave the queue, running
// ones leave their cache to the prefix cache.
func (s *Scheduler) reap() {
	s.mu.Lock()
	n := len(s.waiting)
	s.waiting = slices.DeleteFunc(s.waiting, func(q *seq) bool { return q.cancelled.Load() })
	dropped := n - len(s.waiting)
	s.stats.Cancelled += uint64(dropped)
	s.mu.Unlock()
	s.running = slices.DeleteFunc(s.running, func(q *seq) bool {
		if !q.cancelled.Load() {
			return false
		}
		s.retire(q)
		s.mu.Lock()
		s.stats.Cancelled++
		s.mu.Unlock()
		return true
	})
}

// admit moves waiting requests into the batch while there are slots and
// KV room, first come first served.
func (s *Scheduler) admit() {
	for len(s.running) < s.opts.MaxBatch {
		s.mu.Lock()
		if len(s.waiting) == 0 {
			s.mu.Unlock()
			return
		}
		q := s.waiting[0]
		s.mu.Unlock()
		if !s.start(q) {
			return // no room until a running sequence ends
		}
		s.mu.Lock()
		s.waiting = s.waiting[1:]
		s.stats.Admitted++
		s.mu.Unlock()
	}
}

// start gives q a cache (from the prefix cache when it shares a prefix)
// and reserves its KV bytes. It returns false, changing nothing, when the
// reservation does not fit yet.
func (s *Scheduler) start(q *seq) bool {
	prompt := q.req.Prompt
	need := len(prompt) + q.req.MaxTokens
	var hit *entry
	var c kvcache.Cache
	reuse := 0
	if s.prefix != nil {
		if e, n := s.prefix.lookup(prompt); e != nil {
			hit, c, reuse = e, s.prefix.take(e), n
		}
	}
	reserve := s.cost.bound(need)
	if c != nil {
		reserve = max(reserve, hit.bytes)
	}
	if b := s.opts.KVBudget; b > 0 {
		for s.reserved+reserve+s.poolBytes() > b && s.prefix != nil && s.prefix.Len() > 0 {
			s.prefix.evictOldest()
		}
		if s.reserved+reserve+s.poolBytes() > b {
			if hit != nil {
				s.prefix.put(hit.tokens, hit.cache, hit.bytes)
			}
			if len(s.running) == 0 {
				// Nothing will free room: Generate checked that the request
				// fits an empty budget, so this is a bug, not a wait.
				s.fail(q, fmt.Errorf("scheduler: %d bytes reserved with nothing running", s.reserved))
				return true
			}
			return false
		}
	}
	if c != nil {
		if err := c.Truncate(reuse); err != nil {
			s.log.Debug("prefix cache: cannot cut back a cached sequence; starting fresh", "tokens", reuse, "err", err)
			c.Release()
			c, reuse = nil, 0
		}
	}
	if c == nil {
		var err error
		if c, err = s.m.NewCache(s.opts.ContextLength, s.opts.CacheType); err != nil {
			s.fail(q, err)
			return true
		}
	}
	if sn, ok := c.(kvcache.Snapshotter); ok && s.prefix != nil {
		// Recurrent state cannot be cut back to arbitrary lengths: keep it
		// where later requests are likely to branch off — the end of this
		// prompt (a retry) and the token before it (a new turn that repeats
		// the prompt) — errors only mean fewer reuse points.
		for _, p := range []int{len(prompt) - 1, len(prompt)} {
			if p > reuse {
				_ = sn.SnapshotAt(p)
			}
		}
	}
	q.cache, q.cached, q.prefill, q.reserve = c, reuse, reuse, reserve
	q.hist = append(make([]int32, 0, need), prompt[:reuse]...)
	q.admitted = time.Now()
	s.reserved += reserve
	s.running = append(s.running, q)
	s.mu.Lock()
	s.stats.PromptTokens += uint64(len(prompt))
	s.stats.PrefixHitTokens += uint64(reuse)
	s.mu.Unlock()
	return true
}

func (s *Scheduler) poolBytes() int64 {
	if s.prefix == nil {
		return 0
	}
	return s.prefix.bytes
}

// minChunk is the least prefill a step does while a prompt waits.
const minChunk = 32

// step runs one forward step over every running sequence.
func (s *Scheduler) step(ctx context.Context) error {
	batch := &model.Batch{}
	var in []*seq
	fed := make([]int, 0, len(s.running))
	budget := s.opts.StepTokens
	for _, q := range s.running {
		if q.hasNext {
			batch.Seqs = append(batch.Seqs, model.Seq{Tokens: []int32{q.next}, Cache: q.cache, Logits: model.LastLogits})
			in, fed = append(in, q), append(fed, 1)
			budget--
		}
	}
	// Prefill chunks in admission order; the first always gets a minimum
	// chunk so prompts progress even when decoding takes the whole budget.
	prefilling := false
	for _, q := range s.running {
		rest := len(q.req.Prompt) - q.prefill
		if q.hasNext || rest == 0 {
			continue
		}
		n := min(rest, budget)
		if n <= 0 {
			if prefilling {
				break
			}
			n = min(rest, minChunk)
		}
		prefilling = true
		mode := model.NoLogits
		if q.prefill+n == len(q.req.Prompt) {
			mode = model.LastLogits
		}
		batch.Seqs = append(batch.Seqs, model.Seq{Tokens: q.req.Prompt[q.prefill : q.prefill+n], Cache: q.cache, Logits: mode})
		in, fed = append(in, q), append(fed, n)
		budget -= n
	}
	out, err := s.m.Forward(ctx, batch)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The step changed no cache; the sequences in it cannot go on.
		s.log.Error("forward step failed", "sequences", len(in), "err", err)
		for _, q := range in {
			s.fail(q, err)
		}
		s.running = slices.DeleteFunc(s.running, func(q *seq) bool { return q.cache == nil })
		return nil
	}
	rows := 0
	for _, n := range fed {
		rows += n
	}
	s.mu.Lock()
	s.stats.Steps++
	s.stats.StepTokens += uint64(rows)
	s.mu.Unlock()
	now := time.Now()
	var generated uint64
	// Sequences that end are told after the counters and gauges include
	// them, so Stats agrees with what a returned Generate saw.
	type ending struct {
		q   *seq
		res *Result
		err error
	}
	var ends []ending
	for i, q := range in {
		if q.hasNext {
			q.hist = append(q.hist, q.next)
			q.hasNext = false
		} else {
			q.hist = append(q.hist, batch.Seqs[i].Tokens...)
			q.prefill += fed[i]
		}
		logits := out.Logits[i]
		if logits == nil {
			continue
		}
		if q.cancelled.Load() {
			continue // reaped at the next step
		}
		if q.req.Constraint != nil {
			q.req.Constraint.Mask(logits)
		}
		res, err := q.sampler.Sample(logits)
		if err != nil {
			s.release(q)
			ends = append(ends, ending{q: q, err: err})
			continue
		}
		if q.req.Constraint != nil {
			q.req.Constraint.Accept(res.Token)
		}
		if q.first.IsZero() {
			q.first = now
			if s.opts.Observer != nil {
				s.opts.Observer.FirstToken(now.Sub(q.arrived))
			}
		} else if s.opts.Observer != nil {
			s.opts.Observer.NextToken(now.Sub(q.last))
		}
		q.last = now
		tk, emit, done := q.out.Push(res)
		if emit {
			generated++
			q.deliver(tk)
		}
		if done {
			ends = append(ends, ending{q: q, res: s.finish(q)})
			continue
		}
		q.next, q.hasNext = res.Token, true
	}
	s.running = slices.DeleteFunc(s.running, func(q *seq) bool { return q.cache == nil })
	s.mu.Lock()
	s.stats.GeneratedTokens += generated
	for _, e := range ends {
		if e.err != nil {
			s.stats.Failed++
		} else {
			s.stats.Finished++
		}
	}
	s.mu.Unlock()
	s.publish()
	for _, e := range ends {
		e.q.end(e.res, e.err)
	}
	return nil
}

// finish ends q normally: it flushes the held-back text, hands the cache
// on and returns the result (the caller tells the sequence).
func (s *Scheduler) finish(q *seq) *Result {
	rest := q.out.Finish()
	if rest != "" {
		q.deliver(engine.Token{ID: -1, Text: rest})
	}
	end := time.Now()
	res := &Result{
		FinishReason: q.out.FinishReason(), PromptTokens: len(q.req.Prompt), CachedTokens: q.cached,
		Tokens: q.out.Tokens(), Text: q.out.Text(),
		Queued: q.admitted.Sub(q.arrived), Prefill: q.first.Sub(q.admitted), Decode: end.Sub(q.first),
	}
	s.retire(q)
	return res
}

// fail ends q with err and frees its cache.
func (s *Scheduler) fail(q *seq, err error) {
	s.release(q)
	s.mu.Lock()
	s.stats.Failed++
	s.mu.Unlock()
	q.end(nil, err)
}

// retire hands q's cache to the prefix cache (or frees it) and returns its
// reservation.
func (s *Scheduler) retire(q *seq) {
	if q.cache == nil {
		return
	}
	if s.prefix == nil || q.cache.Len() != len(q.hist) {
		s.release(q)
		return
	}
	s.prefix.put(q.hist, q.cache, cacheBytes(q.cache))
	q.cache, q.hist = nil, nil
	s.reserved -= q.reserve
	q.reserve = 0
	if b := s.opts.KVBudget; b > 0 {
		for s.reserved+s.prefix.bytes > b && s.prefix.Len() > 0 {
			s.prefix.evictOldest()
		}
	}
}

func (s *Scheduler) release(q *seq) {
	if q.cache != nil {
		q.cache.Release()
		q.cache = nil
	}
	s.reserved -= q.reserve
	q.reserve = 0
}

// publish copies the loop's gauges into the stats.
func (s *Scheduler) publish() {
	var kv int64
	for _, q := range s.running {
		if q.cache != nil {
			kv += cacheBytes(q.cache)
		}
	}
	var entries int
	var pool int64
	if s.prefix != nil {
		entries, pool = s.prefix.Len(), s.prefix.bytes
	}
	s.mu.Lock()
	s.stats.Running = len(s.running)
	s.stats.KVBytes = kv + pool
	s.stats.KVReserved = s.reserved
	s.stats.PrefixEntries, s.stats.PrefixBytes = entries, pool
	s.mu.Unlock()
}
