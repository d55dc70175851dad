// Package expertstream is the expert-streaming store: a moe.Store that
// serves routed experts from an expert sidecar (package sidecar) on disk
// through a byte-budgeted cache, so a model whose experts do not fit in
// memory runs with only its non-expert weights and the cache resident.
//
//   - Reads are preads of whole 4 KiB-aligned expert slabs into the cache's
//     slots, with direct I/O (O_DIRECT on Linux, F_NOCACHE on macOS) so the
//     page cache neither hides the disk nor holds a second copy; where the
//     file system refuses direct I/O it falls back to buffered reads that
//     drop their pages afterwards.
//   - A layer's reads start as soon as its router has run (Prefetch) and
//     run concurrently (Options.Readers at a time); the MoE block computes
//     the experts already cached while the rest arrive (moe.Streamer).
//   - Early routing: when decoding, the block also runs the next layer's
//     router on this layer's input and hints its picks (moe.Hinter); they
//     are read speculatively into slots nobody demanded in this step, so
//     the next layer's reads overlap this layer's work. Optionally
//     (Options.Speculate) guesses learned from which experts followed
//     which are read too.
//   - Eviction follows a Policy: Adaptive by default, which follows
//     whichever of per-layer LRU (the published baseline), LRU and LRFU
//     would have hit most lately (make bench-streaming measures them).
//   - Each expert's CRC-32C is checked on its first read; a mismatch is a
//     *sidecar.CorruptError naming the layer and expert, never garbage
//     tokens. Missing or truncated layer files fail Open.
//   - Stats reports hits, bytes read, read latency and stall time for
//     /metrics and mach-generate --json.
//
// The store binds a slot's bytes to the backend in place (zero-copy on the
// CPU backend), so an Acquire's experts must not be used after Release;
// backends run operations synchronously or complete them before the MoE
// block returns.
package expertstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// DefaultCacheBytes is the expert-cache budget when none is given: 4 GB
// (10^9 bytes), or the whole sidecar when it is smaller.
const DefaultCacheBytes = 4_000_000_000

// DefaultReaders is how many expert reads run at once.
const DefaultReaders = 8

// Options configure a Store.
type Options struct {
	// CacheBytes is the budget for cached experts (default
	// DefaultCacheBytes, capped at the sidecar's size). It is raised to
	// one full layer of experts if smaller, since a prefill step may
	// demand every expert of a layer at once.
	CacheBytes int64
	// Policy is the eviction policy (default Adaptive); HalfLife is LRFU's
	// half-life in forward steps (default DefaultHalfLife).
	Policy   Policy
	HalfLife float64
	// Speculate turns on the next-layer speculative reads predicted from
	// co-occurrence counts. Off by default: on the traces make
	// bench-streaming measures, fewer than half of these guesses were
	// used, so they cost more bandwidth than the misses they saved.
	Speculate bool
	// NoHints ignores the MoE blocks' early-routing hints (moe.Hinter:
	// the next layer's router run on this layer's input), which are
	// followed by default.
	NoHints bool
	// SpecThreshold is the predicted probability above which an expert is
	// read speculatively (default DefaultSpecThreshold).
	SpecThreshold float64
	// BufferedIO turns off direct I/O.
	BufferedIO bool
	// Readers bounds concurrent reads (default DefaultReaders).
	Readers int
	// Hidden and Width, when positive, are checked against the experts'
	// shapes (config.json's hidden_size and moe_intermediate_size).
	Hidden, Width int
	// Log receives warnings (default slog.Default()).
	Log *slog.Logger
}

// Store is the streaming expert store. Its methods are safe for
// concurrent use.
type Store struct {
	dir    string
	layout *sidecar.Layout
	layers map[int]sidecar.Layer
	b      kernels.Backend
	recipe *recipe
	files  map[int]*layerFile
	stride int64
	arena  *arena
	slabs  [][]byte
	biases []slotBiases
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	policy Policy

	mu     sync.Mutex
	cond   *sync.Cond
	c      *cache
	closed bool
	// open is the layer whose demand is under way: a Prefetch opens one
	// (a new step when the layer is not after the last one), and the
	// Acquires of that layer that follow belong to it.
	open int
	// hints: follow moe.Hinter hints.
	hints bool
	io    ioStats
}

// Open opens the sidecar in dir for backend b. It fails when layout.json is
// invalid, a layer file is missing or has the wrong size, or the experts
// are in a format this build cannot compute with.
func Open(dir string, b kernels.Backend, opts Options) (*Store, error) {
	layout, err := sidecar.Load(dir)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	if !layout.HasChecksums() {
		log.Warn("expert sidecar has no per-expert checksums (older exporter); experts are served unverified — re-run mach-export-sidecar", "dir", dir)
	}
	rc, err := newRecipe(layout, opts.Hidden, opts.Width)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, sidecar.LayoutName), err)
	}
	if opts.Policy == "" {
		opts.Policy = Adaptive
	}
	if opts.Readers <= 0 {
		opts.Readers = DefaultReaders
	}
	stride := layout.ExpertStride
	counts := map[int]int{}
	maxLayer, total := 0, 0
	for _, ly := range layout.Layers {
		n := layout.LayerExperts(ly)
		counts[ly.Index] = n
		maxLayer = max(maxLayer, n)
		total += n
	}
	budget := opts.CacheBytes
	if budget <= 0 {
		budget = min(DefaultCacheBytes, layout.TotalBytes())
	}
	slots := int(min(budget/stride, int64(total)))
	if slots < maxLayer {
		log.Warn("expert cache budget is below one layer of experts; raised to one layer", "budget_bytes", budget, "raised_to_bytes", int64(maxLayer)*stride)
		slots = maxLayer
	}
	c, err := newCache(opts.Policy, opts.HalfLife, slots, counts, opts.Speculate, false)
	if err != nil {
		return nil, fault.Mark(err, fault.ErrUsage)
	}
	s := &Store{c: c, dir: dir, layout: layout, layers: map[int]sidecar.Layer{}, b: b, recipe: rc, files: map[int]*layerFile{},
		stride: stride, sem: make(chan struct{}, opts.Readers), open: -1, policy: opts.Policy, hints: !opts.NoHints}
	s.cond = sync.NewCond(&s.mu)
	if s.c.pred != nil && opts.SpecThreshold > 0 {
		s.c.pred.threshold = opts.SpecThreshold
	}
	if s.arena, err = newArena(int64(slots) * stride); err != nil {
		return nil, err
	}
	buf := s.arena.bytes()
	s.slabs = make([][]byte, slots)
	for i := range s.slabs {
		s.slabs[i] = buf[int64(i)*stride : int64(i+1)*stride : int64(i+1)*stride]
	}
	s.biases = make([]slotBiases, slots)
	direct := !opts.BufferedIO && stride%sidecar.DirectIOAlignment == 0
	for _, ly := range layout.Layers {
		f, err := openLayer(filepath.Join(dir, ly.File), direct)
		if err != nil {
			_ = s.closeFiles()
			_ = s.arena.free()
			return nil, fault.Mark(err, fault.ErrIO)
		}
		s.files[ly.Index] = f
		s.layers[ly.Index] = ly
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Layout returns the sidecar's layout.
func (s *Store) Layout() *sidecar.Layout { return s.layout }

// Experts implements moe.Store.
func (s *Store) Experts(layer int) int { return len(s.c.layer(layer)) }

// Prefetch implements moe.Store: it starts reading what layer needs that
// is not cached, and speculatively the next layer's likely experts. Called
// right after the router, so the reads overlap whatever the caller does
// before Acquire.
func (s *Store) Prefetch(_ context.Context, layer int, experts []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.c.tick(layer)
	s.open = layer
	// Pinned until the guesses are placed, so speculation cannot evict
	// what this layer is about to use.
	loads, _, err := s.c.demand(layer, experts, true)
	if err != nil {
		return // Acquire reports it
	}
	for _, x := range loads {
		s.startLoad(x)
	}
	s.c.observe(layer, experts)
	for _, x := range s.c.speculate(layer, experts) {
		s.startLoad(x)
	}
	s.unpin(layer, experts)
}

// Acquire implements moe.Store: it returns the experts, waiting for reads
// still in flight. They stay valid until Release.
func (s *Store) Acquire(ctx context.Context, layer int, experts []int) ([]*moe.Expert, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("expert store: closed")
	}
	prefetched := s.open == layer
	if !prefetched {
		s.c.tick(layer)
		s.open = layer
	}
	loads, wait, err := s.c.demand(layer, experts, true)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for _, x := range loads {
		s.startLoad(x)
	}
	if !prefetched {
		s.c.observe(layer, experts)
		for _, x := range s.c.speculate(layer, experts) {
			s.startLoad(x)
		}
	}
	// Misses with no free slot wait for a read or a pin to end.
	for len(wait) > 0 {
		rest := wait[:0]
		for _, x := range wait {
			placed, ok := s.c.retry(x)
			switch {
			case !ok:
				rest = append(rest, x)
			case placed:
				s.startLoad(x)
			}
		}
		wait = rest
		if len(wait) == 0 {
			break
		}
		if !s.anyLoading() {
			s.unpin(layer, experts)
			s.mu.Unlock()
			return nil, fault.Mark(fmt.Errorf("%w: %d slots of %d bytes cannot hold layer %d's %d experts with the rest in use; raise --expert-cache-gb",
				ErrCacheFull, s.c.slots, s.stride, layer, len(experts)), fault.ErrUsage)
		}
		s.cond.Wait()
	}
	var pend []chan struct{}
	for _, e := range experts {
		if x := s.c.layer(layer)[e]; x.state != ready {
			pend = append(pend, x.done)
		}
	}
	s.mu.Unlock()

	if len(pend) > 0 {
		t0 := time.Now()
		for _, ch := range pend {
			select {
			case <-ch:
			case <-ctx.Done():
				s.mu.Lock()
				s.unpin(layer, experts)
				s.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		d := time.Since(t0)
		s.mu.Lock()
		s.io.stall += d
		s.io.stalls++
		s.mu.Unlock()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*moe.Expert, len(experts))
	for i, e := range experts {
		x := s.c.layer(layer)[e]
		if x.state != ready {
			err := x.err
			if err == nil {
				err = fmt.Errorf("expert store: layer %d expert %d was not loaded", layer, e)
			}
			s.unpin(layer, experts)
			return nil, err
		}
		if x.bound == nil {
			b, err := s.recipe.bind(s.b, s.slabs[x.slot], &s.biases[x.slot])
			if err != nil {
				s.unpin(layer, experts)
				return nil, fmt.Errorf("expert store: layer %d expert %d: %w", layer, e, err)
			}
			x.bound = b
		}
		out[i] = x.bound
	}
	return out, nil
}

func (s *Store) anyLoading() bool {
	for _, x := range s.c.owner {
		if x != nil && x.state == loading {
			return true
		}
	}
	return false
}

// unpin undoes an Acquire's pins (s.mu held).
func (s *Store) unpin(layer int, experts []int) {
	es := s.c.layer(layer)
	for _, e := range experts {
		if e >= 0 && e < len(es) && es[e].pins > 0 {
			es[e].pins--
		}
	}
	s.cond.Broadcast()
}

// Release implements moe.Store.
func (s *Store) Release(layer int, experts []int) {
	s.mu.Lock()
	s.unpin(layer, experts)
	s.mu.Unlock()
}

// Hint implements moe.Hinter: it starts speculative reads of experts a
// later layer will probably demand (early routing), into slots holding
// experts nobody demanded in this step.
func (s *Store) Hint(_ context.Context, layer int, experts []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.hints {
		return
	}
	for _, x := range s.c.hint(layer, experts) {
		s.startLoad(x)
	}
}

// Ready implements moe.Streamer: how many of experts, from the first, are
// cached and read.
func (s *Store) Ready(layer int, experts []int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	es := s.c.layer(layer)
	for i, e := range experts {
		if e < 0 || e >= len(es) || es[e].state != ready {
			return i
		}
	}
	return len(experts)
}

// startLoad reads x into its slot in the background (s.mu held).
func (s *Store) startLoad(x *entry) {
	slot, spec, verify := x.slot, x.spec, !x.verified
	done := x.done
	ly := s.layers[x.layer]
	f := s.files[x.layer]
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var err error
		var d time.Duration
		select {
		case s.sem <- struct{}{}:
			t0 := time.Now()
			err = f.readAt(s.slabs[slot], int64(x.expert)*s.stride)
			d = time.Since(t0)
			<-s.sem
		case <-s.ctx.Done():
			err = s.ctx.Err()
		}
		if err != nil {
			err = fault.Mark(fmt.Errorf("expert store: layer %d expert %d: %w", x.layer, x.expert, err), fault.ErrIO)
		} else if verify && len(ly.Experts) > 0 {
			err = s.layout.CheckExpert(f.path, ly, x.expert, s.slabs[slot][:ly.Experts[x.expert].Size])
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if d > 0 {
			s.io.observe(d, s.stride, spec)
		}
		x.err = err
		if err != nil {
			var ce *sidecar.CorruptError
			if errors.As(err, &ce) {
				x.corrupt = err
				s.c.c.corruptions++
			}
			s.c.drop(x)
		} else {
			x.state = ready
			x.verified = true
		}
		close(done)
		s.cond.Broadcast()
	}()
}

// Close stops background reads and frees the cache. The experts handed
// out become invalid.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	err := s.closeFiles()
	if e := s.arena.free(); err == nil {
		err = e
	}
	return err
}

func (s *Store) closeFiles() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.close())
	}
	return errors.Join(errs...)
}

// DirectIO reports whether reads bypass the page cache (every layer file
// accepted direct I/O).
func (s *Store) DirectIO() bool {
	for _, f := range s.files {
		if !f.isDirect() {
			return false
		}
	}
	return len(s.files) > 0
}

// Slots returns the cache's capacity in experts and each slot's size.
func (s *Store) Slots() (n int, bytes int64) { return s.c.slots, s.stride }

// Policy returns the eviction policy in use.
func (s *Store) Policy() Policy { return s.policy }

var (
	_ moe.Streamer = (*Store)(nil)
	_ moe.Hinter   = (*Store)(nil)
)
