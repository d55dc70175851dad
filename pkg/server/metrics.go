package server

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/scheduler"
)

// Metrics are the server's Prometheus metrics, written in the text
// exposition format by hand (a handful of counters, gauges and two
// histograms do not justify a client library). It implements
// scheduler.Observer for the latency histograms.
type Metrics struct {
	ttft, itl *histogram

	mu       sync.Mutex
	requests map[requestKey]uint64
}

type requestKey struct {
	endpoint string
	status   int
}

// Latency buckets, in seconds: time to first token spans queueing and
// prefill (milliseconds to a minute), inter-token latency one decode step.
var (
	ttftBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	itlBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
)

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{ttft: newHistogram(ttftBuckets), itl: newHistogram(itlBuckets), requests: map[requestKey]uint64{}}
}

var _ scheduler.Observer = (*Metrics)(nil)

// FirstToken implements scheduler.Observer.
func (m *Metrics) FirstToken(d time.Duration) { m.ttft.observe(d.Seconds()) }

// NextToken implements scheduler.Observer.
func (m *Metrics) NextToken(d time.Duration) { m.itl.observe(d.Seconds()) }

// request counts a finished request by endpoint and status (499: the
// client went away).
func (m *Metrics) request(endpoint string, status int) {
	m.mu.Lock()
	m.requests[requestKey{endpoint, status}]++
	m.mu.Unlock()
}

// histogram is a Prometheus histogram with fixed buckets.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sum    atomic.Uint64   // float64 bits
	count  atomic.Uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
	fmt.Fprintf(w, "%s_sum %s\n", name, strconv.FormatFloat(math.Float64frombits(h.sum.Load()), 'g', -1, 64))
	fmt.Fprintf(w, "%s_count %d\n", name, h.count.Load())
}

func writeMetric(w io.Writer, name, kind, help string, v float64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, kind, name, strconv.FormatFloat(v, 'g', -1, 64))
}

// write renders every metric with the scheduler's state.
func (m *Metrics) write(w io.Writer, st scheduler.Stats, draining bool) {
	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		if a.endpoint != b.endpoint {
			if a.endpoint < b.endpoint {
				return -1
			}
			return 1
		}
		return a.status - b.status
	})
	fmt.Fprintf(w, "# HELP mach_requests_total HTTP requests finished, by endpoint and status (499: the client went away).\n# TYPE mach_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "mach_requests_total{endpoint=%q,status=\"%d\"} %d\n", k.endpoint, k.status, m.requests[k])
	}
	m.mu.Unlock()

	writeMetric(w, "mach_queue_depth", "gauge", "Requests waiting for a sequence slot.", float64(st.Waiting))
	writeMetric(w, "mach_running_sequences", "gauge", "Sequences in the running batch.", float64(st.Running))
	writeMetric(w, "mach_prompt_tokens_total", "counter", "Prompt tokens of admitted requests (cached ones included).", float64(st.PromptTokens))
	writeMetric(w, "mach_generation_tokens_total", "counter", "Tokens generated.", float64(st.GeneratedTokens))
	writeMetric(w, "mach_prefix_cache_hit_tokens_total", "counter", "Prompt tokens reused from the prefix cache instead of prefilled.", float64(st.PrefixHitTokens))
	writeMetric(w, "mach_prefix_cache_entries", "gauge", "Finished sequences kept in the prefix cache.", float64(st.PrefixEntries))
	writeMetric(w, "mach_prefix_cache_bytes", "gauge", "Memory of the prefix cache's entries.", float64(st.PrefixBytes))
	writeMetric(w, "mach_kv_cache_bytes", "gauge", "Memory held by KV caches (running sequences and the prefix cache).", float64(st.KVBytes))
	writeMetric(w, "mach_kv_cache_reserved_bytes", "gauge", "KV bytes reserved by running sequences for their worst case.", float64(st.KVReserved))
	writeMetric(w, "mach_kv_cache_budget_bytes", "gauge", "KV budget that bounds admission (0: the cache kind reports no sizes).", float64(st.KVBudget))
	usage := 0.0
	if st.KVBudget > 0 {
		usage = float64(st.KVReserved+st.PrefixBytes) / float64(st.KVBudget)
	}
	writeMetric(w, "mach_kv_cache_usage_ratio", "gauge", "Share of the KV budget reserved by running sequences or held by the prefix cache.", usage)
	writeMetric(w, "mach_forward_steps_total", "counter", "Batched forward steps.", float64(st.Steps))
	writeMetric(w, "mach_step_tokens_total", "counter", "Tokens processed by forward steps (decode and prefill).", float64(st.StepTokens))
	writeMetric(w, "mach_sequences_finished_total", "counter", "Sequences that ended normally.", float64(st.Finished))
	writeMetric(w, "mach_sequences_cancelled_total", "counter", "Sequences cancelled by their client.", float64(st.Cancelled))
	writeMetric(w, "mach_sequences_failed_total", "counter", "Sequences that failed in a forward step.", float64(st.Failed))
	d := 0.0
	if draining {
		d = 1
	}
	writeMetric(w, "mach_draining", "gauge", "1 while the server is shutting down.", d)
	m.ttft.write(w, "mach_time_to_first_token_seconds", "From a request's arrival to its first generated token.")
	m.itl.write(w, "mach_inter_token_latency_seconds", "Between consecutive generated tokens of one sequence.")
}

// WriteExpertMetrics writes the expert-streaming store's counters.
func WriteExpertMetrics(w io.Writer, st expertstream.Stats) {
	writeMetric(w, "mach_expert_requests_total", "counter", "Routed experts demanded by MoE layers.", float64(st.Requests))
	writeMetric(w, "mach_expert_cache_hits_total", "counter", "Expert demands served from the expert cache (or a read in flight).", float64(st.Hits))
	writeMetric(w, "mach_expert_cache_misses_total", "counter", "Expert demands that started a read.", float64(st.Misses))
	hit := 0.0
	if st.Requests > 0 {
		hit = float64(st.Hits) / float64(st.Requests)
	}
	writeMetric(w, "mach_expert_cache_hit_ratio", "gauge", "Expert cache hits over demands since start.", hit)
	writeMetric(w, "mach_expert_bytes_read_total", "counter", "Bytes read from expert_sidecar/ (speculative reads included).", float64(st.BytesRead))
	writeMetric(w, "mach_expert_speculative_bytes_total", "counter", "Bytes of next-layer speculative reads.", float64(st.SpecBytes))
	writeMetric(w, "mach_expert_evictions_total", "counter", "Experts evicted from the cache.", float64(st.Evictions))
	writeMetric(w, "mach_expert_stall_seconds_total", "counter", "Time forward steps waited for expert reads.", st.Stall.Seconds())
	writeMetric(w, "mach_expert_cache_bytes", "gauge", "Expert cache budget in use.", float64(st.CacheBytes))
}
