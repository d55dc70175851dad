package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe/qwen3moetest"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/scheduler"
	"github.com/maniac-ai/mach/pkg/server"
)

// benchShape is a small synthetic qwen3_moe (MLX affine 4-bit experts)
// with the default model's vocabulary, so its tokenizer and chat template
// make real text: big enough that a step is compute, small enough for a
// laptop or a 2-core CI machine.
func benchShape() qwen3moetest.Shape {
	return qwen3moetest.Shape{Hidden: 512, Layers: 8, Heads: 8, KVHeads: 2, HeadDim: 64,
		Experts: 32, TopK: 4, Width: 256, Vocab: 8192, Bits: 4, Group: 64, RouterBits: 8}
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", name, v)
		}
		return n
	}
	return def
}

// streamStats is what one streamed request measured.
type streamStats struct {
	ttft   time.Duration
	gaps   []time.Duration
	tokens int
	err    error
}

// streamChat sends one streaming chat request and times its chunks: the
// first content chunk (time to first token) and the gaps between content
// chunks (inter-token latency). Tokens come from the usage chunk.
func streamChat(ctx context.Context, client *http.Client, url string, i, maxTokens int) streamStats {
	body, _ := json.Marshal(map[string]any{
		"messages": []any{map[string]any{"role": "user", "content": fmt.Sprintf(
			"Request %d: explain how Python's itertools.chain and itertools.islice work together, with an example.", i)}},
		"max_tokens": maxTokens, "temperature": 0, "stream": true, "stream_options": map[string]any{"include_usage": true},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(string(body)))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return streamStats{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return streamStats{err: fmt.Errorf("status %d", resp.StatusCode)}
	}
	var st streamStats
	last := time.Time{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(line), &chunk); err != nil {
			return streamStats{err: err}
		}
		if chunk.Usage != nil {
			st.tokens = chunk.Usage.CompletionTokens
		}
		if len(chunk.Choices) == 0 || chunk.Choices[0].Delta.Content == "" {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			st.ttft = now.Sub(start)
		} else {
			st.gaps = append(st.gaps, now.Sub(last))
		}
		last = now
	}
	st.err = sc.Err()
	return st
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkServeLoad is make bench-serve: MACH_BENCH_CLIENTS (default 64)
// concurrent streaming chat clients send MACH_BENCH_REQUESTS (default 128)
// requests of MACH_BENCH_TOKENS (default 64) greedy tokens to mach-serve on
// loopback, serving a synthetic qwen3_moe (benchShape) with --max-batch
// equal to the clients. It reports aggregate generated tokens/s, p50/p99
// time to first token and inter-token latency as clients see them, and
// the ratio of the aggregate to single-stream throughput (one client, the
// same requests one after another) — the limit continuous batching is
// measured against. Each phase stops early at MACH_BENCH_SECONDS (default
// 300) and reports what finished.
func BenchmarkServeLoad(b *testing.B) {
	clients := envInt(b, "MACH_BENCH_CLIENTS", 64)
	requests := envInt(b, "MACH_BENCH_REQUESTS", 128)
	maxTokens := envInt(b, "MACH_BENCH_TOKENS", 64)
	limit := time.Duration(envInt(b, "MACH_BENCH_SECONDS", 300)) * time.Second

	dir := b.TempDir()
	shape := benchShape()
	if _, err := qwen3moetest.Write(dir, shape, 1); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "models", "default", f))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), raw, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	e, err := engine.Load(b.Context(), dir, engine.Options{Loaders: archs.Loaders(), CacheType: kernels.F16})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	metrics := server.NewMetrics()
	sched, err := scheduler.New(e.Model(), scheduler.Options{
		MaxBatch: clients, MaxQueue: clients + requests, ContextLength: 4096, EOS: e.EOS(), Observer: metrics, Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	arch, _ := registry.Default().Lookup("qwen3_moe")
	srv := server.New(server.Model{Name: "bench", Arch: arch, Prompter: e.Prompter, NewDecoder: e.NewDecoder}, sched, metrics, server.Options{Logger: quiet})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, srv) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	// phase runs n requests over c clients and returns the wall time and
	// what each request measured.
	phase := func(c, n, offset int) (time.Duration, []streamStats) {
		pctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		out := make([]streamStats, n)
		next := make(chan int, n)
		for i := range n {
			next <- i
		}
		close(next)
		start := time.Now()
		var wg sync.WaitGroup
		for range c {
			wg.Go(func() {
				for i := range next {
					if pctx.Err() != nil {
						out[i].err = pctx.Err()
						continue
					}
					out[i] = streamChat(pctx, client, url, offset+i, maxTokens)
				}
			})
		}
		wg.Wait()
		return time.Since(start), out
	}
	summarize := func(wall time.Duration, res []streamStats) (tps float64, ttft, itl []time.Duration, done int) {
		tokens := 0
		for _, r := range res {
			if r.err != nil {
				continue
			}
			done++
			tokens += r.tokens
			ttft = append(ttft, r.ttft)
			itl = append(itl, r.gaps...)
		}
		return float64(tokens) / wall.Seconds(), ttft, itl, done
	}

	// Warm up: map the weights and size the buffers.
	phase(1, 2, -2)
	singleN := max(4, requests/16)
	for b.Loop() {
		wall1, res1 := phase(1, singleN, 0)
		single, ttft1, itl1, done1 := summarize(wall1, res1)
		st0 := sched.Stats()
		wallN, resN := phase(clients, requests, singleN)
		st := sched.Stats()
		steps, rows := st.Steps-st0.Steps, st.StepTokens-st0.StepTokens
		agg, ttftN, itlN, doneN := summarize(wallN, resN)
		if done1 == 0 || doneN == 0 {
			b.Fatalf("no request finished (single %d of %d, loaded %d of %d)", done1, singleN, doneN, requests)
		}
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		b.ReportMetric(agg, "tok/s")
		b.ReportMetric(single, "single_tok/s")
		b.ReportMetric(agg/single, "x-single")
		b.ReportMetric(ms(percentile(ttftN, 0.5)), "p50_ttft_ms")
		b.ReportMetric(ms(percentile(ttftN, 0.99)), "p99_ttft_ms")
		b.ReportMetric(ms(percentile(itlN, 0.5)), "p50_itl_ms")
		b.ReportMetric(ms(percentile(itlN, 0.99)), "p99_itl_ms")
		b.ReportMetric(0, "ns/op")
		b.Logf("synthetic qwen3_moe (hidden %d, %d layers, %d experts top-%d, vocab %d, 4-bit), %s, GOMAXPROCS %d",
			shape.Hidden, shape.Layers, shape.Experts, shape.TopK, shape.Vocab, e.Info().Backend, runtimeProcs())
		b.Logf("single stream: %d/%d requests, %.1f tok/s, TTFT p50 %.1f ms, ITL p50 %.2f ms p99 %.2f ms",
			done1, singleN, single, ms(percentile(ttft1, 0.5)), ms(percentile(itl1, 0.5)), ms(percentile(itl1, 0.99)))
		b.Logf("%d clients: %d/%d requests of %d tokens in %.1f s: %.1f tok/s aggregate (%.2fx single stream), TTFT p50 %.0f ms p99 %.0f ms, ITL p50 %.1f ms p99 %.1f ms; %d forward steps, %.1f tokens/step",
			clients, doneN, requests, maxTokens, wallN.Seconds(), agg, agg/single, ms(percentile(ttftN, 0.5)), ms(percentile(ttftN, 0.99)),
			ms(percentile(itlN, 0.5)), ms(percentile(itlN, 0.99)), steps, float64(rows)/float64(max(steps, 1)))
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
