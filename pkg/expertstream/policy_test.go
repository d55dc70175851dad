package expertstream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/stretchr/testify/require"
)

// trace builds a trace from per-step, per-layer choices.
func trace(experts map[int]int, steps ...[][]int) *Trace {
	t := &Trace{Experts: experts}
	layers := sortedKeys(experts)
	for s, step := range steps {
		for i, es := range step {
			t.Accesses = append(t.Accesses, Access{Step: int64(s), Layer: layers[i], Experts: es})
		}
	}
	return t
}

func sortedKeys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func sim(t *testing.T, tr *Trace, p Policy, slots int) SimResult {
	t.Helper()
	r, err := Simulate(tr, SimOptions{Policy: p, Slots: slots})
	require.NoError(t, err)
	require.Equal(t, r.Requests, r.Hits+r.Misses)
	return r
}

// With room for everything only the first touch of each expert misses.
func TestSimulateCompulsoryMisses(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tr := &Trace{Experts: map[int]int{0: 16, 3: 16}}
	seen := map[[2]int]bool{}
	for s := 0; s < 50; s++ {
		for _, l := range []int{0, 3} {
			es := rng.Perm(16)[:4]
			for _, e := range es {
				seen[[2]int{l, e}] = true
			}
			tr.Accesses = append(tr.Accesses, Access{Step: int64(s), Layer: l, Experts: es})
		}
	}
	for _, p := range Policies() {
		r := sim(t, tr, p, 32)
		require.Equal(t, int64(len(seen)), r.Misses, "%s", p)
		require.Zero(t, r.Evictions, "%s", p)
	}
	_, err := Simulate(tr, SimOptions{Policy: LRU, Slots: 3})
	require.ErrorIs(t, err, ErrCacheFull)
}

// LRU keeps the most recent; LayerLRU keeps each layer's own share; LRFU
// keeps an expert used every step through a burst of one-off experts.
func TestPolicies(t *testing.T) {
	one := map[int]int{0: 8}
	// Expert 0 every step, plus a different one-off expert each step.
	var steps [][][]int
	for s := 0; s < 7; s++ {
		steps = append(steps, [][]int{{0, 1 + s}})
	}
	tr := trace(one, steps...)
	// Two slots: every policy keeps 0 (it is always one of the last two).
	for _, p := range Policies() {
		r := sim(t, tr, p, 2)
		require.Equal(t, int64(6), r.Hits, "%s keeps the recurring expert", p)
	}
	// One-off experts between uses of 0, one per step: LRU loses 0 when
	// two arrive in a row, LRFU keeps it (used three times, decayed sum
	// above the newcomers').
	steps = [][][]int{{{0}}, {{1}}, {{0}}, {{2}}, {{0}}, {{3}}, {{4}}, {{5}}, {{0}}}
	tr = trace(one, steps...)
	lru := sim(t, tr, LRU, 2)
	lrfu := sim(t, tr, LRFU, 2)
	require.Equal(t, int64(2), lru.Hits, "LRU evicts 0 during the burst")
	require.Equal(t, int64(3), lrfu.Hits, "LRFU keeps 0")

	// LayerLRU: layer 1's churn cannot take layer 0's share.
	two := map[int]int{0: 8, 1: 8}
	steps = nil
	for s := 0; s < 6; s++ {
		steps = append(steps, [][]int{{0}, {s}})
	}
	tr = trace(two, steps...)
	r := sim(t, tr, LayerLRU, 2)
	require.Equal(t, int64(5), r.Hits, "layer 0's expert stays")
	r = sim(t, tr, LRU, 2)
	require.Equal(t, int64(5), r.Hits, "two slots: the recurring one is always among the last two")
}

// The predictor learns a deterministic layer-to-layer mapping and
// speculation then turns the next layer's misses into hits.
func TestSpeculation(t *testing.T) {
	experts := map[int]int{0: 16, 1: 16}
	rng := rand.New(rand.NewPCG(5, 6))
	var steps [][][]int
	for s := 0; s < 400; s++ {
		a, b := rng.IntN(16), rng.IntN(16)
		for b == a {
			b = rng.IntN(16)
		}
		// Layer 1 picks (e+5) mod 16 of layer 0's choices.
		steps = append(steps, [][]int{{a, b}, {(a + 5) % 16, (b + 5) % 16}})
	}
	tr := trace(experts, steps...)
	for _, slots := range []int{16, 24} {
		plain, err := Simulate(tr, SimOptions{Policy: LRFU, Slots: slots})
		require.NoError(t, err)
		spec, err := Simulate(tr, SimOptions{Policy: LRFU, Slots: slots, Speculate: true})
		require.NoError(t, err)
		t.Logf("%d slots: hit rate %.3f without speculation, %.3f with (%d guesses, %d used)", slots, plain.HitRate(), spec.HitRate(), spec.SpecReads, spec.SpecHits)
		require.Positive(t, spec.SpecReads)
		require.Greater(t, spec.SpecHits, spec.SpecReads*8/10, "the mapping is learned: most guesses are used")
		// Guesses only replace experts nobody asked for lately, so they
		// cost little when the cache is tight and pay when it has room.
		require.Greater(t, spec.HitRate(), plain.HitRate()-0.01)
		if slots == 24 {
			require.Greater(t, spec.HitRate(), plain.HitRate()+0.05)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range Policies() {
		got, err := ParsePolicy(string(p))
		require.NoError(t, err)
		require.Equal(t, p, got)
	}
	_, err := ParsePolicy("mru")
	require.ErrorContains(t, err, "layer-lru, lru, lrfu")
}

// writeSynthetic writes a sidecar of random bf16 experts (hidden 64,
// width 32) with checksums and returns its directory.
func writeSynthetic(t *testing.T, layers, experts int) string {
	t.Helper()
	dir := t.TempDir()
	comps := []sidecar.Component{
		{Name: "gate_proj.weight", DType: "BF16", Shape: []int64{32, 64}},
		{Name: "up_proj.weight", DType: "BF16", Shape: []int64{32, 64}},
		{Name: "down_proj.weight", DType: "BF16", Shape: []int64{64, 32}},
	}
	var off int64
	for i := range comps {
		n, err := sidecar.ComponentSize(comps[i].DType, comps[i].Shape)
		require.NoError(t, err)
		comps[i].Offset, comps[i].Size = off, n
		off += n
	}
	l := &sidecar.Layout{Format: sidecar.Format, Version: sidecar.Version, NumExperts: experts,
		Quant: sidecar.Quant{Mode: "bf16", Bits: 16}, Alignment: 4096, ExpertStride: 4096 * ((off + 4095) / 4096),
		Checksum: sidecar.ChecksumCRC32C, Components: comps}
	rng := rand.New(rand.NewPCG(7, 8))
	for li := 0; li < layers; li++ {
		data := make([]byte, int64(experts)*l.ExpertStride)
		ly := sidecar.Layer{Index: li, File: sidecar.LayerFileName(li), Size: int64(len(data))}
		for e := 0; e < experts; e++ {
			p := data[int64(e)*l.ExpertStride : int64(e)*l.ExpertStride+off]
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			ly.Experts = append(ly.Experts, sidecar.Expert{Offset: int64(e) * l.ExpertStride, Size: off, CRC32C: sidecar.FormatCRC32C(sidecar.CRC32C(p))})
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, ly.File), data, 0o644))
		l.Layers = append(l.Layers, ly)
	}
	require.NoError(t, l.WriteFile(dir))
	return dir
}

// Concurrent Acquires of overlapping experts on a small cache always see
// the right bytes in their slots while they hold them (run with -race).
func TestConcurrentAcquire(t *testing.T) {
	const layers, experts = 4, 16
	dir := writeSynthetic(t, layers, experts)
	b := cpu.New(cpu.Options{Threads: 1})
	defer b.Close()
	files := make([][]byte, layers)
	for l := range files {
		var err error
		files[l], err = os.ReadFile(filepath.Join(dir, sidecar.LayerFileName(l)))
		require.NoError(t, err)
	}
	s, err := Open(dir, b, Options{CacheBytes: 20 * 4096 * 4, Log: slog.New(slog.DiscardHandler), Readers: 3})
	require.NoError(t, err)
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for it := 0; it < 200; it++ {
				l := rng.IntN(layers)
				es := rng.Perm(experts)[:1+rng.IntN(4)]
				s.Prefetch(context.Background(), l, es)
				got, err := s.Acquire(context.Background(), l, es)
				if err != nil {
					errs <- err
					return
				}
				if len(got) != len(es) {
					t.Errorf("got %d experts for %d", len(got), len(es))
				}
				s.mu.Lock()
				for _, e := range es {
					x := s.c.entries[l][e]
					want := files[l][int64(e)*s.stride : int64(e+1)*s.stride]
					if x.state != ready || string(s.slabs[x.slot]) != string(want) {
						t.Errorf("layer %d expert %d: wrong bytes in slot %d", l, e, x.slot)
					}
				}
				s.mu.Unlock()
				s.Release(l, es)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := s.Stats()
	require.Equal(t, st.Requests, st.Hits+st.Misses)
	require.Positive(t, st.Evictions)
	s.mu.Lock()
	for _, es := range s.c.entries {
		for _, x := range es {
			require.Zero(t, x.pins, "layer %d expert %d still pinned", x.layer, x.expert)
		}
	}
	s.mu.Unlock()
}

// Adaptive follows whichever candidate suits the trace: frequency when a
// hot set competes with one-off experts, recency when the working set
// shifts. It stays close to the best candidate and never far below the
// per-layer LRU baseline.
func TestAdaptiveFollowsTheBest(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	experts := map[int]int{0: 64, 1: 64}
	hot := &Trace{Experts: experts}
	shift := &Trace{Experts: experts}
	for s := 0; s < 3000; s++ {
		for _, l := range []int{0, 1} {
			// Two of a hot set of six, two of the 58 others.
			h := rng.Perm(6)[:2]
			c := rng.Perm(58)[:2]
			hot.Accesses = append(hot.Accesses, Access{Step: int64(s), Layer: l, Experts: []int{h[0], h[1], 6 + c[0], 6 + c[1]}})
			// Four of a set of eight that moves every 40 steps.
			base := (s / 40 * 8) % 56
			p := rng.Perm(8)[:4]
			shift.Accesses = append(shift.Accesses, Access{Step: int64(s), Layer: l, Experts: []int{base + p[0], base + p[1], base + p[2], base + p[3]}})
		}
	}
	for name, tr := range map[string]*Trace{"hot set": hot, "shifting set": shift} {
		best, baseline := 0.0, 0.0
		for _, c := range adaptiveCandidates() {
			r, err := Simulate(tr, SimOptions{Policy: c.p, HalfLife: c.hl, Slots: 20})
			require.NoError(t, err)
			best = max(best, r.HitRate())
			if c.p == LayerLRU {
				baseline = r.HitRate()
			}
		}
		r, err := Simulate(tr, SimOptions{Policy: Adaptive, Slots: 20})
		require.NoError(t, err)
		t.Logf("%s: adaptive %.3f, best candidate %.3f, layer-lru %.3f", name, r.HitRate(), best, baseline)
		require.Greater(t, r.HitRate(), best-0.02, name)
		require.GreaterOrEqual(t, r.HitRate(), baseline-0.005, name)
	}
}
