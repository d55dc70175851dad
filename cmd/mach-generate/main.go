// Mach-generate runs one-shot text generation without standing up HTTP,
// for smoke-testing a checkpoint: it loads MODEL, encodes the prompt (plain
// text, a chat turn through the checkpoint's chat template, or raw token
// ids), streams the generated text to stdout and reports statistics on
// stderr (--verbose) or as one JSON object (--json).
package main

import (
	"io"
	"math"
	"os"
	"strings"

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
	return deps{registry: registry.Default(), loaders: archs.Loaders(), storeLoaders: archs.StoreLoaders(), getenv: os.Getenv, stdin: os.Stdin}
}

const description = `
MODEL is a local checkpoint directory (config.json, safetensors weights and,
for text prompts, tokenizer.json) or a Hugging Face repo id
(org/name[@revision], or --revision). A repo id is looked up in the Hugging
Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub, default
~/.cache/huggingface/hub), then in the engine cache (--cache-dir,
$MACH_CACHE_DIR, default ~/.cache/mach); a cached snapshot with the weights
is used without touching the network. Otherwise only the files generation
needs (config, tokenizer and chat template, the safetensors shards and
index) are downloaded from $HF_ENDPOINT (default https://huggingface.co,
with $HF_TOKEN or the huggingface-cli login token) into the Hugging Face
cache, where Python tools find them too: resumable, verified against the
hub's sha256, with progress on a terminal. --local-only or HF_HUB_OFFLINE=1
never touch the network and name the missing files instead.

Without MODEL, mach's default model is used: a small qwen3_moe (13 M
parameters) trained on the Python documentation, shipped with mach (see its
MODEL_CARD.md). It is found at $MACH_DEFAULT_MODEL, else beside the binary
(../share/mach/models/default as make install puts it, share/mach/models/default
in a release archive, ../models/default from a checkout's bin/), else in
models/default of the checkout holding the working directory;
--log-level info names the directory used.

PROMPT: exactly one of --prompt, --prompt-file (- reads stdin) or
--prompt-tokens. Text is encoded the way Hugging Face tokenizers' encode does
by default, so the tokenizer's post-processor decides whether a BOS token is
added. --chat wraps the text as a user turn (after --system, if given) and
applies the checkpoint's chat template with the generation prompt.
--prompt-tokens takes raw ids (for checkpoints without a tokenizer; the
output then has ids but no text). --tokenize-only prints the prompt's ids
after templating and exits; it reads only config.json and the tokenizer
files and loads no weights.

SAMPLING: --temperature 0 is greedy. Otherwise the logits are divided by the
temperature, then truncated by --top-k, --top-p and --min-p, and a token is
drawn; --seed makes the draw reproducible. Generation stops at an
end-of-sequence token (tokenizer, generation_config.json, config.json), at a
--stop string (the text stops before it) or after --max-tokens tokens.

OUTPUT: the text streams to stdout as it is generated, followed by a newline.
--verbose adds load time, prompt and decode throughput and peak memory on
stderr. --json prints one object instead: prompt_tokens and tokens (id
arrays), text, finish_reason (stop or length), timings {load_s, prefill_s,
decode_s, prefill_tokens_per_s, decode_tokens_per_s}, peak_rss_bytes,
model_type and backend.

EXPERT STREAMING: --streaming serves the routed experts from the
checkpoint's expert_sidecar/ (mach-export-sidecar writes it) instead of
mapping them from the safetensors: non-expert weights stay resident, experts
are read with direct I/O into a cache of --expert-cache-gb GB (10^9 bytes;
default 4, or the whole sidecar when smaller; at least one layer of experts)
evicted by --expert-policy: adaptive (the default: follows whichever of the
others would have hit most lately), lrfu (decayed frequency), lru, or
layer-lru (the per-layer LRU baseline). A layer's reads start as soon as its
router has run, and while decoding the next layer's router also runs on this
layer's input so its likely experts are read ahead (early routing);
--expert-speculate adds guesses learned from co-occurrence (off by default:
they cost more bandwidth than they saved in our measurements). Each expert's
checksum is verified on its first read. The output is identical to resident
serving.
With --json, timings also hold expert_cache_hit_rate and expert_bytes_read
(whole request), expert_decode_hit_rate, expert_bytes_read_per_token and
expert_stall_ms_per_token (decoding), expert_read_latency_ms (mean),
expert_cache_bytes and expert_direct_io; --verbose prints them.

Checkpoints this build cannot run are refused before any weight is loaded,
with the reason mach check gives (exit 1); --streaming without a valid
expert_sidecar/ is refused with what to run (exit 4).

EXAMPLES:
   mach-generate --chat --prompt "What does the json module do?" --temperature 0
   mach-generate mlx-community/Qwen3-30B-A3B-4bit --prompt "def reverse(s):" --max-tokens 64 --temperature 0.0
   mach-generate org/name@v1.0 --local-only --prompt "Hello"
   mach-generate ./ckpt --chat --system "Be brief." --prompt "Hello"
   mach-generate ./ckpt --prompt-file prompt.txt --top-p 0.9 --seed 7 --stop "\n\n"
   mach-generate ./ckpt --prompt-tokens 1,2,3 --max-tokens 8 --json
   mach-generate ./ckpt --prompt "Hello" --tokenize-only`

func newApp(d deps) *cli.App {
	app := cliapp.NewApp("mach-generate", "one-shot text generation", description)
	app.ArgsUsage = "[MODEL]"
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "prompt", Usage: "prompt text"},
		&cli.StringFlag{Name: "prompt-file", Usage: "read the prompt from a file (- for stdin)"},
		&cli.StringFlag{Name: "prompt-tokens", Usage: "raw prompt token ids, comma-separated (no tokenizer needed)"},
		&cli.BoolFlag{Name: "chat", Usage: "apply the chat template to the prompt as a user turn"},
		&cli.StringFlag{Name: "system", Usage: "system message for --chat"},
		&cli.IntFlag{Name: "max-tokens", Value: 256, Usage: "maximum tokens to generate"},
		&cli.Float64Flag{Name: "temperature", Value: 0.7, Usage: "sampling temperature (0 = greedy)"},
		&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "nucleus sampling mass, in (0, 1]"},
		&cli.IntFlag{Name: "top-k", Usage: "sample from the k most likely tokens (0 = off)"},
		&cli.Float64Flag{Name: "min-p", Usage: "drop tokens below min-p × the top probability (0 = off)"},
		&cli.Int64Flag{Name: "seed", Usage: "random seed for reproducible sampling (default: from the clock)"},
		&cli.StringSliceFlag{Name: "stop", Usage: "stop string (repeatable)"},
		&cli.BoolFlag{Name: "tokenize-only", Usage: "print the prompt's token ids after templating and exit; loads no weights"},
		cliapp.JSONFlag("print one JSON object with tokens, text, finish_reason and timings"),
		&cli.BoolFlag{Name: "verbose", Usage: "print statistics to stderr"},
		&cli.StringFlag{Name: "kv-cache", Value: "f16", Usage: "key/value cache storage: f16 or f32"},
		&cli.IntFlag{Name: "threads", Usage: "compute threads (default: GOMAXPROCS)"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root searched for a repo id (default $MACH_CACHE_DIR or ~/.cache/mach)"},
		&cli.StringFlag{Name: "revision", Usage: "Hugging Face revision of a repo id: branch, tag or commit (default main)"},
		&cli.BoolFlag{Name: "local-only", Usage: "never touch the network; a repo id must already be cached"},
		&cli.BoolFlag{Name: "streaming", Usage: "stream routed experts from expert_sidecar/ (see EXPERT STREAMING)"},
		&cli.Float64Flag{Name: "expert-cache-gb", Usage: "expert cache budget in GB for --streaming (default 4, capped at the sidecar's size)"},
		&cli.StringFlag{Name: "expert-policy", Value: "adaptive", Usage: "expert cache eviction for --streaming: adaptive, lrfu, lru or layer-lru"},
		&cli.BoolFlag{Name: "expert-speculate", Usage: "with --streaming, also read the next layer's likely experts"},
	)
	app.Action = func(c *cli.Context) error {
		opts, err := parseOptions(c, d)
		if err != nil {
			return err
		}
		return run(c.Context, d, opts, c.App.Writer, c.App.ErrWriter)
	}
	return app
}

func parseOptions(c *cli.Context, d deps) (options, error) {
	o := options{
		Prompt:       c.String("prompt"),
		PromptFile:   c.String("prompt-file"),
		PromptTokens: c.String("prompt-tokens"),
		Chat:         c.Bool("chat"),
		System:       c.String("system"),
		MaxTokens:    c.Int("max-tokens"),
		Temperature:  c.Float64("temperature"),
		TopP:         c.Float64("top-p"),
		TopK:         c.Int("top-k"),
		MinP:         c.Float64("min-p"),
		Stop:         c.StringSlice("stop"),
		TokenizeOnly: c.Bool("tokenize-only"),
		JSON:         c.Bool("json"),
		Verbose:      c.Bool("verbose"),
		KVCache:      c.String("kv-cache"),
		Threads:      c.Int("threads"),
		CacheDir:     c.String("cache-dir"),
		Revision:     c.String("revision"),
		LocalOnly:    c.Bool("local-only"),
		Streaming:    c.Bool("streaming"),
	}
	if c.IsSet("seed") {
		s := uint64(c.Int64("seed"))
		o.Seed = &s
	}
	switch c.Args().Len() {
	case 0:
		// The default model (resolved in run).
	case 1:
		o.Model = c.Args().First()
	default:
		return o, cliapp.Usagef("want at most one MODEL, got %d arguments (quote a prompt with spaces: --prompt \"…\")", c.Args().Len())
	}
	sources := 0
	for _, s := range []string{o.Prompt, o.PromptFile, o.PromptTokens} {
		if s != "" {
			sources++
		}
	}
	switch {
	case sources == 0:
		return o, cliapp.Usagef("no prompt: give --prompt, --prompt-file or --prompt-tokens")
	case sources > 1:
		return o, cliapp.Usagef("give only one of --prompt, --prompt-file and --prompt-tokens")
	case o.Chat && o.PromptTokens != "":
		return o, cliapp.Usagef("--chat applies the chat template to text; it cannot be used with --prompt-tokens")
	case o.System != "" && !o.Chat:
		return o, cliapp.Usagef("--system needs --chat")
	case o.MaxTokens < 1:
		return o, cliapp.Usagef("--max-tokens %d: want at least 1", o.MaxTokens)
	case o.Temperature < 0 || math.IsNaN(o.Temperature) || math.IsInf(o.Temperature, 0):
		return o, cliapp.Usagef("--temperature %v: want 0 (greedy) or more", o.Temperature)
	case !(o.TopP > 0 && o.TopP <= 1):
		return o, cliapp.Usagef("--top-p %v: want a number in (0, 1]", o.TopP)
	case o.TopK < 0:
		return o, cliapp.Usagef("--top-k %d: want 0 (off) or more", o.TopK)
	case !(o.MinP >= 0 && o.MinP < 1):
		return o, cliapp.Usagef("--min-p %v: want a number in [0, 1)", o.MinP)
	case o.KVCache != "f16" && o.KVCache != "f32":
		return o, cliapp.Usagef("--kv-cache %q: want f16 or f32", o.KVCache)
	case o.Threads < 0:
		return o, cliapp.Usagef("--threads %d: want a positive number", o.Threads)
	}
	for _, s := range o.Stop {
		if s == "" {
			return o, cliapp.Usagef("--stop needs a non-empty string")
		}
	}
	if gb := c.Float64("expert-cache-gb"); gb < 0 || math.IsNaN(gb) || math.IsInf(gb, 0) || gb > 1e9 || (gb > 0 && !o.Streaming) {
		return o, cliapp.Usagef("--expert-cache-gb %v: a non-negative budget, with --streaming", gb)
	} else {
		o.ExpertCacheBytes = int64(gb * 1e9)
	}
	if (c.IsSet("expert-policy") || c.IsSet("expert-speculate")) && !o.Streaming {
		return o, cliapp.Usagef("--expert-policy and --expert-speculate need --streaming")
	}
	o.ExpertSpeculate = c.Bool("expert-speculate")
	p, err := expertstream.ParsePolicy(c.String("expert-policy"))
	if err != nil {
		return o, cliapp.Usagef("--expert-policy: %v", err)
	}
	o.ExpertPolicy = p
	if o.PromptFile != "" {
		var b []byte
		var err error
		if o.PromptFile == "-" {
			b, err = io.ReadAll(io.LimitReader(d.stdin, maxPromptBytes+1))
		} else {
			b, err = readLimited(o.PromptFile)
		}
		if err != nil {
			return o, err
		}
		if len(b) > maxPromptBytes {
			return o, cliapp.Usagef("--prompt-file %s: larger than %d bytes", o.PromptFile, maxPromptBytes)
		}
		o.Prompt = string(b)
		if strings.TrimSpace(o.Prompt) == "" {
			return o, cliapp.Usagef("--prompt-file %s is empty", o.PromptFile)
		}
	}
	return o, nil
}
