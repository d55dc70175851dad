package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/defaultmodel"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/scheduler"
	"github.com/maniac-ai/mach/pkg/server"
)

// deps are what run needs from outside; tests replace them.
type deps struct {
	registry     *registry.Registry
	loaders      model.Loaders
	storeLoaders moe.StoreLoaders
	getenv       hub.Getenv
	// listening, when set, is told the address once the server listens.
	listening func(addr string)
}

type options struct {
	Checkpoint, Revision, CacheDir string
	LocalOnly                      bool
	Host                           string
	Port                           int
	Streaming                      bool
	ExpertCacheBytes               int64
	ExpertPolicy                   expertstream.Policy
	TargetOnly                     bool
	DraftDir, Backend              string
	ContextLength, MaxBatch        int
	MaxQueue, StepTokens           int
	KVBudget                       int64
	PrefixCache                    bool
	KVCache                        string
	Threads                        int
	APIKey, ServedName             string
	LogFormat, LogLevel            string
	LogLevelSet                    bool
	MaxBodyBytes                   int64
	ShutdownTimeout                time.Duration
}

// logger writes records on stderr in --log-format. A server reports at
// info level unless --log-level says otherwise.
func logger(o options, stderr io.Writer) (*slog.Logger, error) {
	level := slog.LevelInfo
	if o.LogLevelSet {
		if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
			return nil, fault.Mark(fmt.Errorf("--log-level %q: want debug, info, warn or error", o.LogLevel), fault.ErrUsage)
		}
	}
	ho := &slog.HandlerOptions{Level: level}
	if o.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, ho)), nil
	}
	return slog.New(slog.NewTextHandler(stderr, ho)), nil
}

// speculative refuses what asks for speculative decoding, which this build
// lacks, with the specdec gate's reason.
func speculative(o options, arch registry.Arch, in *checkpoint.Inspection, reg *registry.Registry) error {
	switch {
	case o.Backend == "dflash":
		return fault.NotImplemented("speculative decoding with a DFlash draft (--backend dflash); serve with --target-only or --backend production")
	case o.DraftDir != "" && !o.TargetOnly:
		r := preflight.ThisBuild(reg).Gate(capability.Specdec, arch, in)
		return fault.Mark(fmt.Errorf("--draft-dir %s: speculative decoding: %s: %s; serve with --target-only", o.DraftDir, r.Status, r.Reason), fault.ErrNotImplemented)
	}
	return nil
}

// checkpointDir finds the checkpoint: the default model without one, else
// through pkg/hub.
func checkpointDir(ctx context.Context, d deps, o options, stderr io.Writer, log *slog.Logger) (dir, name string, err error) {
	if o.Checkpoint == "" {
		m, err := defaultmodel.Find(defaultmodel.Options{Getenv: d.getenv})
		if err != nil {
			return "", "", fmt.Errorf("no CHECKPOINT given: %w", err)
		}
		log.Info("no CHECKPOINT given: serving the default model", "dir", m.Dir, "found", string(m.Source))
		return m.Dir, "default", nil
	}
	m, err := resolveCheckpoint(ctx, d.getenv, resolveOptions{Checkpoint: o.Checkpoint, Revision: o.Revision, CacheDir: o.CacheDir,
		LocalOnly: o.LocalOnly, Streaming: o.Streaming, JSONLogs: o.LogFormat == "json"}, stderr)
	if err != nil {
		return "", "", err
	}
	name = o.Checkpoint
	if m.Dir == o.Checkpoint || !strings.Contains(o.Checkpoint, "/") || filepath.IsAbs(o.Checkpoint) || strings.HasPrefix(o.Checkpoint, ".") {
		name = filepath.Base(filepath.Clean(o.Checkpoint)) // a directory: its name
	}
	return m.Dir, name, nil
}

func run(ctx context.Context, d deps, o options, stderr io.Writer) error {
	log, err := logger(o, stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if o.Backend == "dflash" {
		return speculative(o, registry.Arch{}, nil, d.registry)
	}
	dir, name, err := checkpointDir(ctx, d, o, stderr, log)
	if err != nil {
		return err
	}

	// Start-up gates: mach check's, on the same inspection.
	cfg, err := modelconfig.Load(dir)
	if err != nil {
		return err
	}
	arch, err := d.registry.Require(cfg.ModelType)
	if err != nil {
		var ue *registry.UnknownError
		if errors.As(err, &ue) {
			return fault.Mark(fmt.Errorf("%s: %w", dir, err), fault.ErrUnsupported)
		}
		return err
	}
	in, err := checkpoint.Inspect(dir, cfg, checkpoint.Options{DraftDir: o.DraftDir})
	if err != nil {
		return err
	}
	build := preflight.ThisBuild(d.registry)
	report := build.Check(dir, arch, in, preflight.CheckOptions{})
	if !report.Supported {
		return fault.Mark(fmt.Errorf("%s: %s (mach check %s explains)", dir, report.Verdict, dir), fault.ErrUnsupported)
	}
	if err := speculative(o, arch, in, d.registry); err != nil {
		return err
	}
	if o.DraftDir != "" {
		log.Warn("--target-only: --draft-dir is not used", "draft_dir", o.DraftDir)
	}

	cacheType := kernels.F16
	if o.KVCache == "f32" {
		cacheType = kernels.F32
	}
	eo := engine.Options{Loaders: d.loaders, Registry: d.registry, Threads: o.Threads, CacheType: cacheType}
	if o.Streaming {
		eo.Streaming = &expertstream.Options{CacheBytes: o.ExpertCacheBytes, Policy: o.ExpertPolicy}
		eo.StoreLoaders = d.storeLoaders
	}
	log.Info("loading", "dir", dir, "model_type", arch.ModelType, "layout", in.Layout, "experts", in.Quant.String(), "streaming", o.Streaming)
	e, err := engine.Load(ctx, dir, eo)
	if err != nil {
		return err
	}
	defer e.Close()

	status := map[capability.Path]capability.Result{}
	for _, p := range report.PathOrder {
		status[p.Path] = p.Result
	}
	// Batching and prefix reuse run only where the gates say this build
	// has them for the architecture's cache kind.
	if r := status[capability.ContinuousBatching]; r.Status != capability.OK && o.MaxBatch > 1 {
		log.Warn("continuous batching unavailable: one sequence at a time", "reason", r.Reason)
		o.MaxBatch = 1
	}
	usePrefix := o.PrefixCache
	if r := status[capability.PrefixKVReuse]; r.Status != capability.OK && usePrefix {
		log.Warn("prefix KV reuse unavailable", "reason", r.Reason)
		usePrefix = false
	}
	metrics := server.NewMetrics()
	sched, err := scheduler.New(e.Model(), scheduler.Options{
		MaxBatch: o.MaxBatch, MaxQueue: o.MaxQueue, StepTokens: o.StepTokens, ContextLength: o.ContextLength,
		CacheType: cacheType, KVBudget: o.KVBudget, PrefixBlock: map[bool]int{true: 0, false: -1}[usePrefix],
		EOS: e.EOS(), Observer: metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	so := sched.Options()
	if o.ServedName != "" {
		name = o.ServedName
	}
	active := map[capability.Path]bool{
		capability.OpenAIHTTP:         true,
		capability.ContinuousBatching: so.MaxBatch > 1,
		capability.PrefixKVReuse:      usePrefix,
		capability.ExpertStreaming:    o.Streaming,
		capability.BF16Streaming:      o.Streaming && !in.Quant.Quantized(),
		// Without --streaming a stacked checkpoint's experts are bound in
		// place, resident in memory.
		capability.ResidentStacked: !o.Streaming && in.Layout == checkpoint.Stacked,
	}
	var extra func(io.Writer)
	if st := e.ExpertStore(); st != nil {
		extra = func(w io.Writer) { server.WriteExpertMetrics(w, st.Stats()) }
	}
	srv := server.New(server.Model{
		Name: name, Aliases: []string{o.Checkpoint, dir}, Dir: dir, Arch: arch, Paths: report.PathOrder, Active: active,
		Prompter: e.Prompter, NewDecoder: e.NewDecoder, Created: time.Now(),
	}, sched, metrics, server.Options{
		APIKey: o.APIKey, MaxBodyBytes: o.MaxBodyBytes, ShutdownTimeout: o.ShutdownTimeout, Logger: log, ExtraMetrics: extra,
		Serving: map[string]any{
			"max_batch": so.MaxBatch, "max_queue": so.MaxQueue, "step_tokens": so.StepTokens, "context_length": so.ContextLength,
			"kv_cache_budget_bytes": so.KVBudget, "kv_cache_type": o.KVCache, "prefix_cache": usePrefix,
			"expert_streaming": o.Streaming, "speculative_decoding": false, "auth": o.APIKey != "",
			"backend": e.Info().Backend,
		},
	})
	addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		// The flags are valid; the address is taken or not ours to bind.
		return fault.Mark(fmt.Errorf("cannot listen on %s: %w (--host/--port; --port 0 picks a free port)", addr, err), fault.ErrIO)
	}
	var paths []string
	for _, p := range report.PathOrder {
		if active[p.Path] {
			paths = append(paths, string(p.Path))
		}
	}
	slices.Sort(paths)
	log.Info("listening", "addr", ln.Addr().String(), "model", name, "model_type", arch.ModelType, "dir", dir,
		"active_paths", strings.Join(paths, ","), "max_batch", so.MaxBatch, "context_length", so.ContextLength,
		"kv_budget_bytes", so.KVBudget, "tool_format", string(srv.Format()), "backend", e.Info().Backend, "load_s", e.LoadTime.Seconds())
	if d.listening != nil {
		d.listening(ln.Addr().String())
	}
	err = server.Serve(ctx, ln, srv)
	log.Info("stopped", "err", err)
	return err
}
