package expertstream

import "time"

// LatencyBuckets are the upper bounds, in seconds, of the read-latency
// histogram (Prometheus style: each count includes the reads at or below
// its bound; Stats.ReadLatency has one more count, for +Inf).
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

type ioStats struct {
	reads, specReads  int64
	bytes, specBytes  int64
	readTime, readMax time.Duration
	buckets           [14]int64
	stall             time.Duration
	stalls            int64
}

func (s *ioStats) observe(d time.Duration, n int64, spec bool) {
	s.reads++
	s.bytes += n
	if spec {
		s.specReads++
		s.specBytes += n
	}
	s.readTime += d
	s.readMax = max(s.readMax, d)
	sec := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && sec > LatencyBuckets[i] {
		i++
	}
	s.buckets[i]++
}

// Stats are a Store's cumulative counters. Subtract two snapshots (Sub)
// for an interval, such as one request.
type Stats struct {
	// Steps counts forward steps (tokens, when decoding one sequence).
	Steps int64
	// Requests counts experts demanded by a layer (once per step); Hits
	// found them cached or already being read, Misses started a read.
	// SpecHits are hits on experts speculation read.
	Requests, Hits, Misses, SpecHits int64
	// Reads counts completed reads (demand and speculative) and
	// BytesRead their bytes; Spec* the speculative share. SpecWasted
	// counts speculative reads evicted before any layer asked for them.
	Reads, BytesRead       int64
	SpecReads, SpecBytes   int64
	SpecWasted             int64
	Evictions, Corruptions int64
	// ReadTime is the sum of read latencies, ReadMax the largest;
	// ReadLatency the histogram over LatencyBuckets (plus +Inf).
	ReadTime, ReadMax time.Duration
	ReadLatency       [14]int64
	// Stall is the time Acquire waited for reads; Stalls how many
	// Acquires waited.
	Stall  time.Duration
	Stalls int64
	// CacheBytes is the budget in use (slots × slot size); CachedBytes
	// what the slots hold now.
	CacheBytes, CachedBytes int64
	Slots                   int
	DirectIO                bool
	Policy                  Policy
	// Following is, for the Adaptive policy, the candidate it evicts by
	// now ("lrfu/4" is LRFU with a half-life of 4 steps).
	Following string
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c.c
	return Stats{
		Steps: s.c.now, Requests: c.requests, Hits: c.hits, Misses: c.misses, SpecHits: c.specHits,
		Reads: s.io.reads, BytesRead: s.io.bytes, SpecReads: s.io.specReads, SpecBytes: s.io.specBytes,
		SpecWasted: c.specWasted, Evictions: c.evictions, Corruptions: c.corruptions,
		ReadTime: s.io.readTime, ReadMax: s.io.readMax, ReadLatency: s.io.buckets,
		Stall: s.io.stall, Stalls: s.io.stalls,
		CacheBytes: int64(s.c.slots) * s.stride, CachedBytes: int64(s.c.resident()) * s.stride, Slots: s.c.slots,
		DirectIO: s.DirectIO(), Policy: s.policy, Following: s.following(),
	}
}

// Sub returns the counters accumulated since prev (gauges and maxima keep
// s's values).
func (s Stats) Sub(prev Stats) Stats {
	d := s
	d.Steps -= prev.Steps
	d.Requests -= prev.Requests
	d.Hits -= prev.Hits
	d.Misses -= prev.Misses
	d.SpecHits -= prev.SpecHits
	d.Reads -= prev.Reads
	d.BytesRead -= prev.BytesRead
	d.SpecReads -= prev.SpecReads
	d.SpecBytes -= prev.SpecBytes
	d.SpecWasted -= prev.SpecWasted
	d.Evictions -= prev.Evictions
	d.Corruptions -= prev.Corruptions
	d.ReadTime -= prev.ReadTime
	for i := range d.ReadLatency {
		d.ReadLatency[i] -= prev.ReadLatency[i]
	}
	d.Stall -= prev.Stall
	d.Stalls -= prev.Stalls
	return d
}

// Add returns the counters of two intervals together (gauges keep s's
// values, maxima the larger).
func (s Stats) Add(o Stats) Stats {
	d := s
	d.Steps += o.Steps
	d.Requests += o.Requests
	d.Hits += o.Hits
	d.Misses += o.Misses
	d.SpecHits += o.SpecHits
	d.Reads += o.Reads
	d.BytesRead += o.BytesRead
	d.SpecReads += o.SpecReads
	d.SpecBytes += o.SpecBytes
	d.SpecWasted += o.SpecWasted
	d.Evictions += o.Evictions
	d.Corruptions += o.Corruptions
	d.ReadTime += o.ReadTime
	d.ReadMax = max(d.ReadMax, o.ReadMax)
	for i := range d.ReadLatency {
		d.ReadLatency[i] += o.ReadLatency[i]
	}
	d.Stall += o.Stall
	d.Stalls += o.Stalls
	return d
}

// HitRate is Hits / Requests (0 without requests).
func (s Stats) HitRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Requests)
}

// MeanReadLatency is ReadTime / Reads.
func (s Stats) MeanReadLatency() time.Duration {
	if s.Reads == 0 {
		return 0
	}
	return s.ReadTime / time.Duration(s.Reads)
}

// BytesPerStep is BytesRead / Steps: bytes read per token when decoding.
func (s Stats) BytesPerStep() float64 {
	if s.Steps == 0 {
		return 0
	}
	return float64(s.BytesRead) / float64(s.Steps)
}

// StallPerStep is Stall / Steps.
func (s Stats) StallPerStep() time.Duration {
	if s.Steps == 0 {
		return 0
	}
	return s.Stall / time.Duration(s.Steps)
}

func (s *Store) following() string {
	if a, ok := s.c.pol.(*adaptive); ok {
		return a.current()
	}
	return ""
}
