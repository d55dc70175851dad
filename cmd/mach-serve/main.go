// Mach-serve serves a checkpoint over an OpenAI-compatible HTTP API with
// continuous batching, prefix KV reuse, Prometheus metrics and a
// capabilities report in mach check's vocabulary.
package main

import (
	"math"
	"os"
	"time"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp(defaultDeps())
	os.Exit(cliapp.Main(app, cliapp.Interspersed(app, os.Args)))
}

func defaultDeps() deps {
	return deps{registry: registry.Default(), loaders: archs.Loaders(), storeLoaders: archs.StoreLoaders(), getenv: os.Getenv}
}

const description = `
CHECKPOINT is a checkpoint directory or a Hugging Face repo id (org/name),
given as the argument or with --checkpoint. A repo id is found in the
Hugging Face hub cache or the engine cache (--cache-dir) and downloaded
when missing (weights and tokenizer; expert_sidecar/ too with --streaming;
--local-only never touches the network). Without CHECKPOINT, mach's default
model is served (a small qwen3_moe shipped with mach; see mach-generate
--help for where it is found).

START-UP runs the same preflight gates as mach check: a checkpoint that mach
check calls unsupported is refused with the same reason (exit 1), before
any weight is loaded. The log then names the listening address, the model
and the active serving paths; an address already in use is an I/O error
(exit 4). SIGINT or SIGTERM drains: the listener stays open, new
generation requests get 503 (code draining, Retry-After) and /ready 503
while /health stays 200, in-flight ones finish (up to --shutdown-timeout),
then the server closes and the process exits 0.

HTTP API (OpenAI-compatible; errors in OpenAI's error JSON):
   POST /v1/chat/completions  messages, tools and tool_choice (auto, none,
                              required or a named function; required and
                              named are forced by constrained decoding:
                              one call of the tool in the model's own
                              syntax, finish_reason tool_calls),
                              stream (SSE, data: [DONE]) with
                              stream_options.include_usage, max_tokens /
                              max_completion_tokens, temperature, top_p,
                              top_k, min_p, seed, stop, presence_penalty,
                              frequency_penalty, repetition_penalty,
                              logprobs / top_logprobs, chat_template_kwargs,
                              reasoning_effort, response_format json_object
                              (sampling is masked to a JSON object);
                              reasoning_content apart from content; tool
                              calls parsed per model family
   POST /v1/completions       prompt (text or token ids), echo, logprobs
   GET  /v1/models            the served model
   GET  /v1/capabilities      the registry's arch_summary and every serving
                              path's status and whether it is active
   GET  /health               liveness;  GET /ready: readiness (503 draining)
   GET  /metrics              Prometheus: requests by status, queue depth,
                              running sequences, tokens, TTFT and
                              inter-token latency histograms, KV cache
                              usage, prefix-cache hits (and the expert cache
                              with --streaming)
Not supported (400 with code not_supported): n > 1, tool_choice required
or a named function for a model whose chat template has no tool-call
format (output format plain), response_format json_schema (it needs
schema-constrained decoding, which is not built yet), logit_bias, the
legacy functions / function_call fields, non-text content parts, several
prompts in one completions request. A field of the wrong JSON type is a
400 naming its path (param), e.g. "temperature must be a number, got a
string".
--api-key (or MACH_API_KEY) makes every /v1/ route require
"Authorization: Bearer KEY" (401 otherwise).

BATCHING: up to --max-batch sequences run together; every step decodes one
token of each and fills the rest of --step-tokens with prefill chunks, so a
long prompt does not stall running streams. A sequence is admitted when a
slot is free and its worst-case KV cache fits --kv-cache-gb (default: room
for --max-batch sequences of --context-length tokens); up to --max-queue
requests wait, beyond that the answer is 429 with Retry-After. Finished
sequences stay in a prefix cache (within the same KV budget, least recently
used first out): a request continuing an earlier conversation reuses its
cached prefix, reported as usage.prompt_tokens_details.cached_tokens.

EXPERT STREAMING: --streaming serves the routed experts from the
checkpoint's expert_sidecar/ through a cache of --expert-cache-gb GB
(--expert-policy evicts), as mach-generate --streaming does.
SPECULATIVE DECODING is not implemented in this build: serving is always
target-only; --draft-dir without --target-only and --backend dflash are
refused (exit 3). --backend production is accepted as an alias.

EXAMPLES:
   mach-serve                                   # the default model on 127.0.0.1:8080
   mach-serve ./qwen3_6_35b_a3b_engine_k256 --streaming --port 8080
   mach-serve --checkpoint ./ckpt --max-batch 16 --api-key secret
   mach-serve mlx-community/Qwen3-30B-A3B-4bit --context-length 16384 --log-format json
   curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
     -d '{"messages":[{"role":"user","content":"What does the json module do?"}],"max_tokens":64}'`

func newApp(d deps) *cli.App {
	app := cliapp.NewApp("mach-serve", "OpenAI-compatible HTTP server with continuous batching", description)
	app.ArgsUsage = "[CHECKPOINT]"
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory or repo id (or give it as the argument)"},
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "listen address"},
		&cli.IntFlag{Name: "port", Value: 8080, Usage: "listen port (0 picks a free one; the log names it)"},
		&cli.BoolFlag{Name: "streaming", Usage: "stream routed experts from expert_sidecar/"},
		&cli.Float64Flag{Name: "expert-cache-gb", Usage: "expert cache budget in GB for --streaming (default 4, capped at the sidecar's size)"},
		&cli.StringFlag{Name: "expert-policy", Value: "adaptive", Usage: "expert cache eviction for --streaming: adaptive, lrfu, lru or layer-lru"},
		&cli.BoolFlag{Name: "target-only", Usage: "no speculative decoding (the only mode of this build)"},
		&cli.StringFlag{Name: "draft-dir", Usage: "speculative-decode draft directory (not implemented in this build)"},
		&cli.IntFlag{Name: "context-length", Usage: "most tokens per sequence, prompt and output (default: the model's max_position_embeddings)"},
		&cli.IntFlag{Name: "max-batch", Value: 8, Usage: "most sequences generating at once"},
		&cli.IntFlag{Name: "max-queue", Value: 64, Usage: "most requests waiting for a slot before 429"},
		&cli.IntFlag{Name: "step-tokens", Value: 256, Usage: "most tokens per forward step (decodes plus prefill chunks; smaller keeps streams smoother while prompts prefill, larger prefills faster)"},
		&cli.Float64Flag{Name: "kv-cache-gb", Usage: "KV cache budget in GB for running sequences and the prefix cache (default: max-batch full contexts)"},
		&cli.BoolFlag{Name: "no-prefix-cache", Usage: "do not keep finished sequences for prefix reuse"},
		&cli.StringFlag{Name: "kv-cache", Value: "f16", Usage: "key/value cache storage: f16 or f32"},
		&cli.IntFlag{Name: "threads", Usage: "compute threads (default: GOMAXPROCS)"},
		&cli.StringFlag{Name: "api-key", EnvVars: []string{"MACH_API_KEY"}, Usage: "require Authorization: Bearer KEY on /v1/*"},
		&cli.StringFlag{Name: "served-model-name", Usage: "model id reported by /v1/models and expected in requests (default: the checkpoint's name)"},
		&cli.StringFlag{Name: "backend", Usage: "compatibility alias: production (accepted) or dflash (not implemented)"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log records on stderr: text or json"},
		&cli.Float64Flag{Name: "max-body-mb", Value: 16, Usage: "largest request body in MB (413 beyond)"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 5 * time.Minute, Usage: "how long a shutdown waits for in-flight requests"},
		&cli.StringFlag{Name: "revision", Usage: "Hugging Face revision of a repo id (default main)"},
		&cli.BoolFlag{Name: "local-only", Usage: "never touch the network; a repo id must already be cached"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root searched for a repo id (default $MACH_CACHE_DIR or ~/.cache/mach)"},
	)
	app.Action = func(c *cli.Context) error {
		o, err := parseOptions(c)
		if err != nil {
			return err
		}
		return run(c.Context, d, o, c.App.ErrWriter)
	}
	return app
}

func parseOptions(c *cli.Context) (options, error) {
	ckpt, err := checkpointArg(c)
	if err != nil {
		return options{}, err
	}
	o := options{
		Checkpoint: ckpt, Revision: c.String("revision"), CacheDir: c.String("cache-dir"), LocalOnly: c.Bool("local-only"),
		Host: c.String("host"), Port: c.Int("port"),
		Streaming: c.Bool("streaming"), TargetOnly: c.Bool("target-only"), DraftDir: c.String("draft-dir"), Backend: c.String("backend"),
		ContextLength: c.Int("context-length"), MaxBatch: c.Int("max-batch"), MaxQueue: c.Int("max-queue"), StepTokens: c.Int("step-tokens"),
		PrefixCache: !c.Bool("no-prefix-cache"), KVCache: c.String("kv-cache"), Threads: c.Int("threads"),
		APIKey: c.String("api-key"), ServedName: c.String("served-model-name"), LogFormat: c.String("log-format"),
		ShutdownTimeout: c.Duration("shutdown-timeout"),
	}
	o.LogLevel, o.LogLevelSet = c.String("log-level"), c.IsSet("log-level")
	switch {
	case o.Port < 0 || o.Port > 65535:
		return o, cliapp.Usagef("--port %d: want 0 to 65535", o.Port)
	case o.MaxBatch < 1:
		return o, cliapp.Usagef("--max-batch %d: want at least 1", o.MaxBatch)
	case o.MaxQueue < 1:
		return o, cliapp.Usagef("--max-queue %d: want at least 1", o.MaxQueue)
	case o.StepTokens < 1:
		return o, cliapp.Usagef("--step-tokens %d: want at least 1", o.StepTokens)
	case o.ContextLength < 0:
		return o, cliapp.Usagef("--context-length %d: want a positive number", o.ContextLength)
	case o.KVCache != "f16" && o.KVCache != "f32":
		return o, cliapp.Usagef("--kv-cache %q: want f16 or f32", o.KVCache)
	case o.Threads < 0:
		return o, cliapp.Usagef("--threads %d: want a positive number", o.Threads)
	case o.LogFormat != "text" && o.LogFormat != "json":
		return o, cliapp.Usagef("--log-format %q: want text or json", o.LogFormat)
	case o.Backend != "" && o.Backend != "production" && o.Backend != "dflash":
		return o, cliapp.Usagef("--backend %q: want production or dflash (compatibility aliases)", o.Backend)
	case o.ShutdownTimeout <= 0:
		return o, cliapp.Usagef("--shutdown-timeout %s: want a positive duration", o.ShutdownTimeout)
	}
	gb := func(name string, v float64) (int64, error) {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > 1e9 {
			return 0, cliapp.Usagef("--%s %v: want a non-negative number of GB", name, v)
		}
		return int64(v * 1e9), nil
	}
	if o.KVBudget, err = gb("kv-cache-gb", c.Float64("kv-cache-gb")); err != nil {
		return o, err
	}
	if o.ExpertCacheBytes, err = gb("expert-cache-gb", c.Float64("expert-cache-gb")); err != nil {
		return o, err
	}
	if o.ExpertCacheBytes > 0 && !o.Streaming {
		return o, cliapp.Usagef("--expert-cache-gb needs --streaming")
	}
	if c.IsSet("expert-policy") && !o.Streaming {
		return o, cliapp.Usagef("--expert-policy needs --streaming")
	}
	if o.ExpertPolicy, err = expertstream.ParsePolicy(c.String("expert-policy")); err != nil {
		return o, cliapp.Usagef("--expert-policy: %v", err)
	}
	mb := c.Float64("max-body-mb")
	if !(mb > 0) || math.IsInf(mb, 0) || mb > 1e6 {
		return o, cliapp.Usagef("--max-body-mb %v: want a positive number", mb)
	}
	o.MaxBodyBytes = int64(mb * 1e6)
	return o, nil
}
