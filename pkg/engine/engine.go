// Package engine loads a checkpoint and generates text with it: it refuses
// checkpoints this build cannot run with the reasons mach check gives,
// tokenizes (plain text, chat templates or raw ids), prefills in chunks,
// decodes with the sampler, streams tokens and text through a callback, and
// stops on end-of-sequence ids, stop strings, the token budget or
// cancellation. mach-generate and mach-serve use it:
//
//	e, err := engine.Load(ctx, dir, engine.Options{Loaders: archs.Loaders()})
//	err = e.Generate(ctx, &engine.Request{Prompt: "def reverse(s):", MaxTokens: 64},
//		func(t engine.Token) error { fmt.Print(t.Text); return nil })
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/procmem"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sample"
)

// Options configure an Engine.
type Options struct {
	// Loaders are the architectures that can be loaded (archs.Loaders()).
	Loaders model.Loaders
	// Registry is the architecture registry (default registry.Default()).
	Registry *registry.Registry
	// Backend computes; nil starts a CPU backend with Threads workers,
	// owned and closed by the engine.
	Backend kernels.Backend
	Threads int
	// CacheType stores keys and values (default F16).
	CacheType kernels.DType
	// PrefillChunk is the most prompt tokens per forward step (default 512).
	PrefillChunk int
	// Streaming, when set, serves the routed experts from the checkpoint's
	// expert_sidecar/ through the expert-streaming store with these
	// options (mach-generate and mach-serve --streaming) instead of
	// binding them from the safetensors; StoreLoaders
	// (archs.StoreLoaders()) must then have the architecture.
	Streaming    *expertstream.Options
	StoreLoaders moe.StoreLoaders
}

// Engine is a loaded checkpoint ready to generate.
type Engine struct {
	*Prompter
	Dir    string
	Config *modelconfig.Config
	Arch   registry.Arch
	// LoadTime is how long Load took.
	LoadTime time.Duration

	opts       Options
	model      model.Model
	backend    kernels.Backend
	ownBackend bool
	eos        map[int32]bool
	peak       procmem.Peak
	// experts is the streaming store (nil when experts are resident).
	experts *expertstream.Store
}

// Check decides whether this build can generate with the checkpoint in dir
// (whose config is cfg), giving the reasons mach check gives when it
// cannot. It reads headers only.
func Check(dir string, cfg *modelconfig.Config, reg *registry.Registry, loaders model.Loaders) (registry.Arch, *checkpoint.Inspection, error) {
	arch, err := reg.Require(cfg.ModelType)
	if err != nil {
		var ue *registry.UnknownError
		if errors.As(err, &ue) {
			return arch, nil, fault.Mark(fmt.Errorf("%s: %w", cfg.Name(), err), fault.ErrUnsupported)
		}
		return arch, nil, err
	}
	in, err := checkpoint.Inspect(dir, cfg, checkpoint.Options{})
	if err != nil {
		return arch, nil, err
	}
	build := preflight.ThisBuild(reg)
	refuse := func(reason string) error {
		return fault.Mark(fmt.Errorf("%s: %s is registered, but this build cannot run it: %s", dir, arch.ModelType, reason), fault.ErrUnsupported)
	}
	if _, ok := loaders[arch.ModelType]; !ok || !arch.Support.Forward {
		for _, p := range build.Paths(arch, in) {
			if p.Status == capability.Blocked {
				return arch, in, refuse(p.Reason)
			}
		}
		return arch, in, refuse(fmt.Sprintf("%s forward pass not implemented in this build", arch.ModelType))
	}
	if in.Quant.IsGGUF2Bit() {
		return arch, in, refuse(build.Gate(capability.GGUFExperts2Bit, arch, in).Reason)
	}
	if !in.WeightsInspected {
		return arch, in, fault.Mark(fmt.Errorf("%s: no safetensors weights (model*.safetensors or %s); mach-generate needs the weights, not just config.json", dir, "model.safetensors.index.json"), fault.ErrIO)
	}
	return arch, in, nil
}

// Load checks and loads the checkpoint in dir.
func Load(ctx context.Context, dir string, opts Options) (*Engine, error) {
	start := time.Now()
	if opts.Registry == nil {
		opts.Registry = registry.Default()
	}
	if opts.CacheType == 0 {
		opts.CacheType = kernels.F16
	}
	if opts.PrefillChunk <= 0 {
		opts.PrefillChunk = 512
	}
	cfg, err := modelconfig.Load(dir)
	if err != nil {
		return nil, err
	}
	arch, in, err := Check(dir, cfg, opts.Registry, opts.Loaders)
	if err != nil {
		return nil, err
	}
	if opts.Streaming != nil {
		if err := checkStreaming(dir, arch, in, opts); err != nil {
			return nil, err
		}
	}
	e := &Engine{Prompter: NewPrompter(dir), Dir: dir, Config: cfg, Arch: arch, opts: opts, backend: opts.Backend}
	e.modelType = cfg.ModelType
	if e.backend == nil {
		e.backend, e.ownBackend = cpu.New(cpu.Options{Threads: opts.Threads}), true
	}
	tok, _ := e.Tokenizer()
	if e.eos, err = eosIDs(dir, tok); err != nil {
		e.closeBackend()
		return nil, err
	}
	if opts.Streaming != nil {
		err = e.loadStreaming(ctx, cfg, *opts.Streaming)
	} else {
		e.model, err = opts.Loaders[arch.ModelType](ctx, dir, cfg, e.backend)
	}
	if err != nil {
		e.closeBackend()
		return nil, err
	}
	e.LoadTime = time.Since(start)
	_, _ = e.peak.Sample()
	return e, nil
}

func (e *Engine) closeBackend() {
	if e.ownBackend {
		_ = e.backend.Close()
	}
}

// Close releases the model and, when the engine started it, the backend.
func (e *Engine) Close() error {
	err := e.model.Close()
	e.closeBackend()
	return err
}

// Info describes the loaded model.
func (e *Engine) Info() model.Info { return e.model.Info() }

// EOS returns the end-of-sequence ids (a copy).
func (e *Engine) EOS() map[int32]bool { return maps.Clone(e.eos) }

// NewDecoder returns a streaming text decoder for one sequence, or nil
// when the checkpoint has no tokenizer. skipSpecial drops special tokens
// (chat output parsers that read markers such as harmony's want them kept).
func (e *Engine) NewDecoder(skipSpecial bool) TextDecoder { return e.newDecoder(skipSpecial) }

func (e *Engine) newDecoder(skipSpecial bool) TextDecoder {
	tok, _ := e.Tokenizer()
	if tok == nil {
		return nil
	}
	return tok.NewStreamDecoder(skipSpecial)
}

// Model returns the loaded model (for batched callers).
func (e *Engine) Model() model.Model { return e.model }

// PeakMemory returns the largest resident memory seen at step boundaries.
func (e *Engine) PeakMemory() (procmem.Usage, bool) { return e.peak.Max() }

// Request is one generation.
type Request struct {
	// Exactly one prompt source: text, chat messages (the chat template is
	// applied with a generation prompt) or raw token ids.
	Prompt   string
	Messages []chat.Message
	// Tools are OpenAI tool objects the chat template is given.
	Tools          []json.RawMessage
	TemplateKwargs map[string]any
	PromptTokens   []int32
	// MaxTokens is the most tokens to generate (> 0).
	MaxTokens int
	Sampling  sample.Options
	// Stop strings end generation; the text stops before them.
	Stop []string
	// OnPrefill, when set, is called after each prefill chunk.
	OnPrefill func(done, total int)
}

// Token is one generated token, or the final summary.
type Token struct {
	// ID is the token id; -1 on the final summary.
	ID int32
	// Text is the text this token adds (it may be empty while a partial
	// character or a possible stop string is held back; the final summary
	// carries what was held back).
	Text    string
	Logprob float32
	Top     []sample.TokenLogprob
	// Final is set on the last call only.
	Final *Summary
}

// Finish reasons.
const (
	FinishStop   = "stop"   // end-of-sequence token or stop string
	FinishLength = "length" // MaxTokens reached
)

// Summary describes a finished generation.
type Summary struct {
	FinishReason string
	PromptTokens []int32
	// Tokens are the generated ids (an end-of-sequence id is not included).
	Tokens []int32
	Text   string
	// Prefill and Decode are the time spent on each; DecodeSteps the
	// forward steps after the prefill.
	Prefill, Decode time.Duration
	DecodeSteps     int
	// Experts, when the experts are streamed, holds the store's counters
	// over this request (approximate when other requests run at the same
	// time).
	Experts *ExpertStats
}

// ExpertStats are the expert store's counters over the prefill and the
// decoding of one request.
type ExpertStats struct {
	Prefill, Decode expertstream.Stats
}

// Total is the counters over the whole request.
func (s *ExpertStats) Total() expertstream.Stats { return s.Decode.Add(s.Prefill) }

// PrefillTokensPerSecond is the prompt throughput.
func (s *Summary) PrefillTokensPerSecond() float64 {
	return rate(len(s.PromptTokens), s.Prefill)
}

// DecodeTokensPerSecond is the decoding throughput (one token per step).
func (s *Summary) DecodeTokensPerSecond() float64 { return rate(s.DecodeSteps, s.Decode) }

func rate(n int, d time.Duration) float64 {
	if n == 0 || d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Generate runs req, calling yield for every generated token and finally
// once with Final set. An error from yield stops generation and is
// returned; so is cancellation of ctx.
func (e *Engine) Generate(ctx context.Context, req *Request, yield func(Token) error) error {
	prompt, err := e.Prompt(req)
	if err != nil {
		return err
	}
	info := e.model.Info()
	if req.MaxTokens <= 0 {
		return fault.Mark(fmt.Errorf("max tokens %d: want at least 1", req.MaxTokens), fault.ErrUsage)
	}
	if need := len(prompt) + req.MaxTokens; need > info.MaxContext {
		return fault.Mark(fmt.Errorf("a prompt of %d tokens plus %d new tokens exceeds the model's context of %d (max_position_embeddings)",
			len(prompt), req.MaxTokens, info.MaxContext), fault.ErrUsage)
	}
	for i, id := range prompt {
		if id < 0 || int(id) >= info.Vocab {
			return fault.Mark(fmt.Errorf("prompt token %d (position %d) is outside the model's vocabulary of %d ids (vocab_size)", id, i, info.Vocab), fault.ErrUsage)
		}
	}
	sampler, err := sample.New(req.Sampling)
	if err != nil {
		return fault.Mark(err, fault.ErrUsage)
	}
	sampler.Prompt(prompt)
	cache, err := e.model.NewCache(len(prompt)+req.MaxTokens, e.opts.CacheType)
	if err != nil {
		return err
	}
	defer cache.Release()

	sum := &Summary{PromptTokens: prompt}
	step := func(tokens []int32, mode model.Logits) ([]float32, error) {
		out, err := e.model.Forward(ctx, &model.Batch{Seqs: []model.Seq{{Tokens: tokens, Cache: cache, Logits: mode}}})
		if err != nil {
			return nil, err
		}
		_, _ = e.peak.Sample()
		return out.Logits[0], nil
	}

	var st0 expertstream.Stats
	if e.experts != nil {
		st0 = e.experts.Stats()
	}
	t0 := time.Now()
	var logits []float32
	chunk := e.opts.PrefillChunk
	for off := 0; off < len(prompt); off += chunk {
		end := min(off+chunk, len(prompt))
		mode := model.NoLogits
		if end == len(prompt) {
			mode = model.LastLogits
		}
		if logits, err = step(prompt[off:end], mode); err != nil {
			return err
		}
		if req.OnPrefill != nil {
			req.OnPrefill(end, len(prompt))
		}
	}
	sum.Prefill = time.Since(t0)
	var st1 expertstream.Stats
	if e.experts != nil {
		st1 = e.experts.Stats()
	}

	out := NewOutput(OutputOptions{EOS: e.eos, Decoder: e.newDecoder(true), Stop: req.Stop, MaxTokens: req.MaxTokens})
	t1 := time.Now()
	for {
		res, err := sampler.Sample(logits)
		if err != nil {
			return err
		}
		tk, emit, done := out.Push(res)
		if emit {
			if err := yield(tk); err != nil {
				return err
			}
		}
		if done {
			break
		}
		if logits, err = step([]int32{res.Token}, model.LastLogits); err != nil {
			return err
		}
		sum.DecodeSteps++
	}
	sum.Decode = time.Since(t1)
	if e.experts != nil {
		sum.Experts = &ExpertStats{Prefill: st1.Sub(st0), Decode: e.experts.Stats().Sub(st1)}
	}
	rest := out.Finish()
	sum.FinishReason, sum.Tokens, sum.Text = out.FinishReason(), out.Tokens(), out.Text()
	return yield(Token{ID: -1, Text: rest, Final: sum})
}
