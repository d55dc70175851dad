// Package server is mach-serve's OpenAI-compatible HTTP API over the batch
// scheduler: POST /v1/chat/completions (chat templates, tool calls and
// reasoning parsed per model family, SSE streaming), POST /v1/completions,
// GET /v1/models, GET /v1/capabilities (the registry's arch_summary and
// the runtime status of every serving path, in mach check's vocabulary),
// GET /health (liveness), GET /ready (readiness) and GET /metrics
// (Prometheus). Errors use OpenAI's error JSON.
//
// Serve runs the scheduler and the HTTP server together and shuts down
// gracefully: when ctx ends the server stops accepting requests (new ones
// get 503), lets in-flight generations finish, then stops the scheduler.
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/scheduler"
	"github.com/maniac-ai/mach/pkg/version"
	"golang.org/x/sync/errgroup"
)

// Model is what the server serves.
type Model struct {
	// Name is the id /v1/models reports and requests name; Aliases are
	// other names requests may use.
	Name    string
	Aliases []string
	Dir     string
	Arch    registry.Arch
	// Paths is every serving path's status from the preflight gates
	// (preflight.Build.Paths), Active the paths this process uses.
	Paths  []preflight.PathResult
	Active map[capability.Path]bool
	// Prompter builds prompts (chat template, tokenizer).
	Prompter *engine.Prompter
	// NewDecoder returns a fresh text decoder (engine.Engine.NewDecoder).
	NewDecoder func(skipSpecial bool) engine.TextDecoder
	// Created is reported by /v1/models (load time).
	Created time.Time
}

// Options configure the server.
type Options struct {
	// APIKey, when set, is required as "Authorization: Bearer KEY" on
	// every /v1/ route.
	APIKey string
	// MaxBodyBytes bounds request bodies (default 16 MiB).
	MaxBodyBytes int64
	// ShutdownTimeout bounds the wait for in-flight requests when
	// shutting down (default 5 minutes); after it they are cut off.
	ShutdownTimeout time.Duration
	// Serving describes the runtime configuration for /v1/capabilities.
	Serving map[string]any
	// ExtraMetrics, when set, appends metrics to /metrics (the expert
	// cache's, with --streaming: WriteExpertMetrics).
	ExtraMetrics func(io.Writer)
	Logger       *slog.Logger
}

// Server is the HTTP API.
type Server struct {
	model   Model
	sched   *scheduler.Scheduler
	metrics *Metrics
	opts    Options
	log     *slog.Logger
	format  chat.Format
	handler http.Handler

	ready    atomic.Bool
	draining atomic.Bool
	// inflight counts /v1/ requests being handled; Serve waits for it to
	// reach zero before closing the listener.
	inflight atomic.Int64
	jsonModeState
}

// New returns the server for model, generating through sched.
func New(model Model, sched *scheduler.Scheduler, metrics *Metrics, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if metrics == nil {
		metrics = NewMetrics()
	}
	s := &Server{model: model, sched: sched, metrics: metrics, opts: opts, log: opts.Logger}
	var tmpl *chat.Template
	if model.Prompter != nil {
		tmpl, _ = model.Prompter.Template()
	}
	s.format = chat.DetectFormat(model.Arch.ModelType, tmpl)
	s.handler = s.routes()
	s.ready.Store(true)
	return s
}

// Format is the output format chat responses are parsed with.
func (s *Server) Format() chat.Format { return s.format }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	v1 := func(pattern, endpoint string, h http.HandlerFunc) {
		mux.Handle(pattern, s.auth(s.count(endpoint, h)))
	}
	v1("POST /v1/chat/completions", "chat_completions", s.refuseDraining(s.handleChat))
	v1("POST /v1/completions", "completions", s.refuseDraining(s.handleCompletions))
	v1("GET /v1/models", "models", s.handleModels)
	v1("GET /v1/models/{id...}", "models", s.handleModel)
	v1("GET /v1/capabilities", "capabilities", s.handleCapabilities)
	v1("/v1/", "unknown", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: fmt.Sprintf("unknown route %s %s", r.Method, r.URL.Path)})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", s.handleReady)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.write(w, s.sched.Stats(), s.draining.Load())
		if s.opts.ExtraMetrics != nil {
			s.opts.ExtraMetrics(w)
		}
	})
	return s.recoverer(mux)
}

// auth requires the API key on /v1/ routes when one is set.
func (s *Server) auth(next http.Handler) http.Handler {
	if s.opts.APIKey == "" {
		return next
	}
	want := []byte("Bearer " + s.opts.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mach-serve"`)
			writeError(w, &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
				Message: "missing or wrong API key: send Authorization: Bearer <key> (the key given to mach-serve --api-key or MACH_API_KEY)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// write deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// count bounds the body, counts the request by status and logs it.
func (s *Server) count(endpoint string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		status := sw.status
		if r.Context().Err() != nil && (status == 0 || status == http.StatusOK) {
			status = 499
		}
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.request(endpoint, status)
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", status, "duration", time.Since(start).Round(time.Microsecond))
	})
}

// recoverer turns a handler panic into a 500 (the process keeps serving).
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "path", r.URL.Path, "panic", v)
				writeError(w, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() || s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Drain makes the server refuse new generations (503) and report not
// ready; in-flight ones go on.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.sched.Drain()
}

// refuseDraining answers a generation request with 503 draining (OpenAI
// error JSON, Retry-After) once Drain has been called, before reading
// the body.
func (s *Server) refuseDraining(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			writeError(w, asAPIError(scheduler.ErrDraining))
			return
		}
		next(w, r)
	}
}

// waitIdle waits until no /v1/ request is being handled and the
// scheduler holds no sequence, or ctx ends, or failed closes (the
// scheduler or the HTTP server failed: nothing more will finish).
func (s *Server) waitIdle(ctx context.Context, failed <-chan struct{}) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := s.sched.Stats()
		if s.inflight.Load() == 0 && st.Running == 0 && st.Waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-failed:
			return context.Canceled
		case <-tick.C:
		}
	}
}

// checkModel accepts the served name, an alias or no name at all.
func (s *Server) checkModel(name string) error {
	if name == "" || name == s.model.Name {
		return nil
	}
	for _, a := range s.model.Aliases {
		if name == a {
			return nil
		}
	}
	return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("the model %q does not exist; this server serves %q", name, s.model.Name)}
}

type modelObject struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	Root          string `json:"root"`
	ModelType     string `json:"model_type"`
	ContextLength int    `json:"max_model_len"`
}

func (s *Server) modelObject() modelObject {
	return modelObject{ID: s.model.Name, Object: "model", Created: s.model.Created.Unix(), OwnedBy: "mach",
		Root: s.model.Dir, ModelType: s.model.Arch.ModelType, ContextLength: s.sched.Options().ContextLength}
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{s.modelObject()}})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Param: "model", Code: "model_not_found",
			Message: fmt.Sprintf("no model id in the path; this server serves %q", s.model.Name)})
		return
	}
	if err := s.checkModel(id); err != nil {
		writeError(w, asAPIError(err))
		return
	}
	writeJSON(w, http.StatusOK, s.modelObject())
}

// pathStatus is a serving path's preflight status plus whether this
// process uses it.
type pathStatus struct {
	Status capability.Status `json:"status"`
	Reason string            `json:"reason"`
	Active bool              `json:"active"`
}

func (s *Server) handleCapabilities(w http.ResponseWriter, _ *http.Request) {
	paths := map[capability.Path]pathStatus{}
	order := make([]capability.Path, 0, len(s.model.Paths))
	for _, p := range s.model.Paths {
		paths[p.Path] = pathStatus{Status: p.Status, Reason: p.Reason, Active: s.model.Active[p.Path]}
		order = append(order, p.Path)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object":       "capabilities",
		"model":        s.model.Name,
		"model_type":   s.model.Arch.ModelType,
		"arch_summary": s.model.Arch.Summary(),
		"paths":        paths,
		"path_order":   order,
		"serving":      s.opts.Serving,
		"tool_format":  s.format,
		"version":      version.String(),
	})
}

// newID returns an OpenAI-style id: prefix and 24 random alphanumerics.
func newID(prefix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

// fingerprint identifies the build and model in responses.
func (s *Server) fingerprint() string {
	return "mach-" + strings.ReplaceAll(version.String(), " ", "-")
}

// Serve runs the scheduler and serves s on ln until ctx ends, then shuts
// down gracefully: readiness goes false (/ready answers 503, /health
// stays 200) and new generation requests get 503 draining while the
// listener stays open and in-flight generations finish; once none is
// left (or after ShutdownTimeout) the HTTP server shuts down and the
// scheduler stops. It returns nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, s *Server) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	schedCtx, stopSched := context.WithCancel(context.Background())
	defer stopSched()
	g, gctx := errgroup.WithContext(context.Background())
	g.Go(func() error {
		if err := s.sched.Run(schedCtx); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("scheduler: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// ErrServerClosed comes as soon as Shutdown starts; the handlers
		// may still be running, so the scheduler stops after Shutdown.
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
		case <-gctx.Done():
		}
		s.Drain()
		s.log.Info("shutting down: draining in-flight requests", "timeout", s.opts.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		// Keep the listener open while generations finish, so that new
		// requests get 503 draining rather than a refused connection.
		_ = s.waitIdle(sctx, gctx.Done())
		err := hs.Shutdown(sctx)
		if err != nil {
			// In-flight generations outlived the timeout: cut them off.
			_ = hs.Close()
			err = fmt.Errorf("shutdown: in-flight requests did not finish within %s: %w", s.opts.ShutdownTimeout, err)
		}
		stopSched()
		return err
	})
	return g.Wait()
}
