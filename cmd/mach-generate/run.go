package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/defaultmodel"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sample"
)

// maxPromptBytes bounds --prompt-file.
const maxPromptBytes = 64 << 20

// deps are what run needs from outside; tests replace them.
type deps struct {
	registry *registry.Registry
	loaders  model.Loaders
	// storeLoaders load the architectures that can stream their experts.
	storeLoaders moe.StoreLoaders
	getenv       func(string) string
	stdin        io.Reader
}

type options struct {
	Model                       string
	Prompt, PromptFile          string
	PromptTokens                string
	Chat                        bool
	System                      string
	MaxTokens                   int
	Temperature, TopP, MinP     float64
	TopK                        int
	Seed                        *uint64
	Stop                        []string
	TokenizeOnly, JSON, Verbose bool
	KVCache                     string
	Threads                     int
	CacheDir                    string
	Revision                    string
	LocalOnly                   bool
	Streaming                   bool
	ExpertCacheBytes            int64
	ExpertPolicy                expertstream.Policy
	ExpertSpeculate             bool
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("--prompt-file: %w", err), fault.ErrIO)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPromptBytes+1))
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("--prompt-file %s: %w", path, err), fault.ErrIO)
	}
	return b, nil
}

func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil || n < 0 {
			return nil, cliapp.Usagef("--prompt-tokens: %q is not a token id (want comma-separated non-negative integers)", f)
		}
		ids = append(ids, int32(n))
	}
	return ids, nil
}

// request builds the engine request from the options.
func (o options) request() (*engine.Request, error) {
	req := &engine.Request{
		MaxTokens: o.MaxTokens,
		Stop:      o.Stop,
		Sampling: sample.Options{
			Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP, MinP: o.MinP, Seed: o.Seed,
		},
	}
	switch {
	case o.PromptTokens != "":
		ids, err := parseIDs(o.PromptTokens)
		if err != nil {
			return nil, err
		}
		req.PromptTokens = ids
	case o.Chat:
		if o.System != "" {
			req.Messages = append(req.Messages, chat.Message{Role: "system", Content: o.System})
		}
		req.Messages = append(req.Messages, chat.Message{Role: "user", Content: o.Prompt})
	default:
		req.Prompt = o.Prompt
	}
	return req, nil
}

func run(ctx context.Context, d deps, o options, stdout, stderr io.Writer) error {
	dir, err := resolve(ctx, d, o, stderr)
	if err != nil {
		return err
	}
	req, err := o.request()
	if err != nil {
		return err
	}
	if o.TokenizeOnly {
		ids, err := engine.NewPrompter(dir).Prompt(req)
		if err != nil {
			return err
		}
		if o.JSON {
			return cliapp.WriteJSON(stdout, map[string]any{"prompt_tokens": ids})
		}
		_, err = fmt.Fprintln(stdout, joinIDs(ids))
		return err
	}

	cacheType := kernels.F16
	if o.KVCache == "f32" {
		cacheType = kernels.F32
	}
	terminal := isTerminal(stderr)
	if terminal && !o.JSON {
		fmt.Fprintf(stderr, "loading %s …\r", dir)
	}
	eo := engine.Options{Loaders: d.loaders, Registry: d.registry, Threads: o.Threads, CacheType: cacheType}
	if o.Streaming {
		eo.Streaming = &expertstream.Options{CacheBytes: o.ExpertCacheBytes, Policy: o.ExpertPolicy, Speculate: o.ExpertSpeculate}
		eo.StoreLoaders = d.storeLoaders
	}
	e, err := engine.Load(ctx, dir, eo)
	if terminal && !o.JSON {
		fmt.Fprintf(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	defer e.Close()
	if terminal {
		req.OnPrefill = func(done, total int) {
			if total > 512 {
				fmt.Fprintf(stderr, "\rprefill %d/%d tokens\033[K", done, total)
				if done == total {
					fmt.Fprint(stderr, "\r\033[K")
				}
			}
		}
	}
	var sum *engine.Summary
	err = e.Generate(ctx, req, func(t engine.Token) error {
		if t.Final != nil {
			sum = t.Final
		}
		if o.JSON || t.Text == "" {
			return nil
		}
		_, err := io.WriteString(stdout, t.Text)
		return err
	})
	if err != nil {
		return err
	}
	peak, _ := e.PeakMemory()
	info := e.Info()
	if o.JSON {
		return cliapp.WriteJSON(stdout, jsonResult(sum, e.LoadTime, peak.PeakRSS, info))
	}
	if !strings.HasSuffix(sum.Text, "\n") {
		fmt.Fprintln(stdout)
	}
	if o.Verbose {
		fmt.Fprintf(stderr, "model:      %s (%s, %s)\n", dir, info.ModelType, info.Backend)
		fmt.Fprintf(stderr, "load:       %.2f s\n", e.LoadTime.Seconds())
		fmt.Fprintf(stderr, "prompt:     %d tokens, %.2f tokens/s\n", len(sum.PromptTokens), sum.PrefillTokensPerSecond())
		fmt.Fprintf(stderr, "generation: %d tokens, %.2f tokens/s (%s)\n", len(sum.Tokens), sum.DecodeTokensPerSecond(), sum.FinishReason)
		if peak.PeakRSS > 0 {
			fmt.Fprintf(stderr, "peak RSS:   %.2f GB (file-backed %.2f GB, anonymous %.2f GB)\n",
				float64(peak.PeakRSS)/1e9, float64(peak.File)/1e9, float64(peak.Anon)/1e9)
		}
		if x := sum.Experts; x != nil {
			t, dec := x.Total(), x.Decode
			pol := string(t.Policy)
			if t.Following != "" {
				pol += " (following " + t.Following + ")"
			}
			fmt.Fprintf(stderr, "experts:    streamed, %s cache of %.2f GB, direct I/O %s; hit rate %.1f%% (decoding %.1f%%), %.2f GB read, %.1f MB per decoded token, mean read %.2f ms, stall %.1f ms per decoded token\n",
				pol, float64(t.CacheBytes)/1e9, cliapp.YesNo(t.DirectIO), 100*t.HitRate(), 100*dec.HitRate(), float64(t.BytesRead)/1e9,
				perToken(dec.BytesRead, sum.DecodeSteps)/1e6, ms(t.MeanReadLatency()), perToken(int64(dec.Stall), sum.DecodeSteps)/1e6)
		}
	}
	return nil
}

func perToken(n int64, tokens int) float64 {
	if tokens == 0 {
		return 0
	}
	return float64(n) / float64(tokens)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

type timings struct {
	LoadS             float64 `json:"load_s"`
	PrefillS          float64 `json:"prefill_s"`
	DecodeS           float64 `json:"decode_s"`
	PrefillTokensPerS float64 `json:"prefill_tokens_per_s"`
	DecodeTokensPerS  float64 `json:"decode_tokens_per_s"`
	*expertTimings
}

// expertTimings are present with --streaming.
type expertTimings struct {
	HitRate           float64 `json:"expert_cache_hit_rate"`
	BytesRead         int64   `json:"expert_bytes_read"`
	DecodeHitRate     float64 `json:"expert_decode_hit_rate"`
	BytesReadPerToken float64 `json:"expert_bytes_read_per_token"`
	StallMSPerToken   float64 `json:"expert_stall_ms_per_token"`
	ReadLatencyMS     float64 `json:"expert_read_latency_ms"`
	CacheBytes        int64   `json:"expert_cache_bytes"`
	DirectIO          bool    `json:"expert_direct_io"`
	SpeculativeReads  int64   `json:"expert_speculative_reads"`
	SpeculativeHits   int64   `json:"expert_speculative_hits"`
}

type result struct {
	PromptTokens []int32 `json:"prompt_tokens"`
	Tokens       []int32 `json:"tokens"`
	Text         string  `json:"text"`
	FinishReason string  `json:"finish_reason"`
	Timings      timings `json:"timings"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	ModelType    string  `json:"model_type"`
	Backend      string  `json:"backend"`
}

func jsonResult(s *engine.Summary, load time.Duration, peak int64, info model.Info) result {
	toks := s.Tokens
	if toks == nil {
		toks = []int32{}
	}
	return result{
		PromptTokens: s.PromptTokens, Tokens: toks, Text: s.Text, FinishReason: s.FinishReason,
		Timings: timings{
			LoadS: load.Seconds(), PrefillS: s.Prefill.Seconds(), DecodeS: s.Decode.Seconds(),
			PrefillTokensPerS: s.PrefillTokensPerSecond(), DecodeTokensPerS: s.DecodeTokensPerSecond(),
			expertTimings: expertJSON(s),
		},
		PeakRSSBytes: peak, ModelType: info.ModelType, Backend: info.Backend,
	}
}

func joinIDs(ids []int32) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(id)))
	}
	return b.String()
}

// resolve finds MODEL through pkg/hub (a directory, or a repo id from the
// caches, downloading what is missing); without MODEL, the default model.
func resolve(ctx context.Context, d deps, o options, stderr io.Writer) (string, error) {
	if o.Model == "" {
		m, err := defaultmodel.Find(defaultmodel.Options{Getenv: d.getenv})
		if err != nil {
			return "", fmt.Errorf("no MODEL given: %w", err)
		}
		slog.Info("no MODEL given: using the default model", "dir", m.Dir, "found", string(m.Source))
		return m.Dir, nil
	}
	need := hub.NeedWeights
	switch {
	case o.TokenizeOnly:
		need = hub.NeedTokenizer
	case o.PromptTokens == "":
		need |= hub.NeedTokenizer
	}
	var progress io.Writer
	if !o.JSON && isTerminal(stderr) {
		progress = stderr
	}
	r := hub.NewResolver(hub.Options{Getenv: d.getenv, CacheDir: o.CacheDir, LocalOnly: o.LocalOnly, Progress: progress})
	m, err := r.Resolve(ctx, o.Model, hub.Request{Revision: o.Revision, Need: need})
	if err != nil {
		return "", err
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(stderr, "mach-generate: warning: %s\n", w)
	}
	slog.Info("model resolved", "model", o.Model, "dir", m.Dir, "source", string(m.Source), "downloaded_files", len(m.Downloaded), "downloaded_bytes", m.DownloadedBytes)
	return m.Dir, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func expertJSON(s *engine.Summary) *expertTimings {
	x := s.Experts
	if x == nil {
		return nil
	}
	t, dec := x.Total(), x.Decode
	return &expertTimings{
		HitRate: t.HitRate(), BytesRead: t.BytesRead, DecodeHitRate: dec.HitRate(),
		BytesReadPerToken: perToken(dec.BytesRead, s.DecodeSteps), StallMSPerToken: perToken(int64(dec.Stall), s.DecodeSteps) / 1e6,
		ReadLatencyMS: ms(t.MeanReadLatency()), CacheBytes: t.CacheBytes, DirectIO: t.DirectIO,
		SpeculativeReads: t.SpecReads, SpeculativeHits: t.SpecHits,
	}
}
