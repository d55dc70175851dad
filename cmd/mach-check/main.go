// Mach-check is a static, pre-load model-support preflight: whether a
// checkpoint's architecture is supported, which serving paths it can run,
// which artifacts it needs and whether it fits in memory, from config.json,
// safetensors headers and sidecar metadata alone, never loading weights.
package main

import (
	"math"
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/hostmem"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp(defaultDeps())
	os.Exit(cliapp.Main(app, cliapp.Interspersed(app, os.Args)))
}

// deps are what run needs from the outside world; tests replace them.
type deps struct {
	build preflight.Build
	// hub returns the client for a cache root (HF_ENDPOINT, HF_TOKEN).
	hub func(cacheRoot string) *hub.Client
	// host reads the host's memory.
	host func() (hostmem.Info, error)
	// getenv reads MACH_CACHE_DIR.
	getenv func(string) string
}

func defaultDeps() deps {
	return deps{
		build:  preflight.ThisBuild(registry.Default()),
		hub:    hub.NewClient,
		host:   hostmem.Read,
		getenv: os.Getenv,
	}
}

const description = `
MODEL is a local checkpoint directory or a Hugging Face repo id
(org/name[@revision], or --revision). A directory is inspected in place:
config.json, the safetensors headers (bounded reads, no weights mapped) and
expert_sidecar/layout.json. A repo id whose snapshot, weights included, is
already in the Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub, default
~/.cache/huggingface/hub) or the engine cache is inspected there the same
way, without any request. Otherwise only config.json and, best-effort,
expert_sidecar/layout.json are fetched from $HF_ENDPOINT (default
https://huggingface.co) at --revision, with $HF_TOKEN (or the
huggingface-cli login token) as bearer token, and cached under the engine
cache root (<cache>/hub/models--org--name/snapshots/<commit>/); weights are
never downloaded. If the hub cannot be reached, a previously cached copy is
used. --local-only and HF_HUB_OFFLINE=1 never touch the network: a repo id
is then inspected from what the caches hold, and one they lack fails (exit
4) naming the missing files.

The report gives model_type, layout (stacked, per_expert, engine, unknown),
the routed-expert quant, the routed experts per MoE layer (listed per layer
when a pruned checkpoint's layers differ) and top-k, the artifact probe
(expert sidecar, draft directory), a memory estimate, every serving path's status (ok, blocked,
needs_artifact, unknown, n/a) with its reason, the verdict and a suggested
mach-serve command. Statuses are what THIS build can do: a path it does not
implement is blocked. The verdict is "supported" only when the architecture
is registered and this build can serve it (openai_http ok).

EXPERT SIDECAR: expert_sidecar/layout.json is checked against config.json
(model_type, MoE layers, expert count) and, for a local checkpoint, every
declared layer_XX.bin must exist with its declared size. --verify also reads
the layer files and checks every expert's CRC-32C (and a recorded sha256):
the report then says sidecar=yes (checksums verified), or invalid with the
first layer and expert that does not match, and the exit status is 4 unless
the sidecar checks out (progress on a terminal).

DRAFT DIRECTORY (specdec): --draft-dir, else the first of MODEL/draft,
MODEL/dflash_draft, MODEL/eagle3_draft and MODEL-draft that exists. It is
usable when it holds a config.json with a model_type and valid safetensors.

MEMORY: experts and non-expert bytes come from the safetensors headers
(vision/audio towers excluded), or from config.json arithmetic at the
checkpoint's bits when only the config is known. KV bytes are bf16 at
--context-length (default min(max_position_embeddings, 8192); a larger value
than max_position_embeddings is a usage error, as for mach-serve) by cache kind:
standard (every layer), rotating (sliding layers capped at the window),
hybrid_gdn (full-attention layers plus the constant Gated DeltaNet state),
compressed (sliding window plus one entry per compression ratio). The working
set is experts (or the --expert-cache-gb budget, when smaller) + non-experts
+ KV. Verdict against available memory (Linux MemAvailable, capped by the
cgroup limit; macOS free+speculative+purgeable+file-backed pages): fits when
the working set is at most 80% of it, tight up to 100%, wont_fit above,
unknown when either side is unknown. GB are 10^9 bytes.

--all-archs prints the path × architecture matrix of every registered
architecture for this build (no MODEL); --json gives
{"paths": [...], "archs": {model_type: {path: {status, reason}}}}.

JSON REPORT KEYS: model, model_type, supported, layout, quant {mode, bits,
group_size}, experts {routed, per_layer, top_k}, artifacts {sidecar,
draft_dir}, memory {verdict, experts_bytes, non_expert_bytes, kv_bytes,
context_length, working_set_bytes, available_bytes}, paths {name: {status, reason}}, verdict, serve_command.

ENVIRONMENT:
   HF_ENDPOINT     hub base URL (default https://huggingface.co)
   HF_TOKEN        bearer token for gated or private repos (else $HF_HOME/token)
   HF_HUB_CACHE    Hugging Face hub cache (default $HF_HOME/hub)
   HF_HOME         Hugging Face home (default ~/.cache/huggingface)
   HF_HUB_OFFLINE  1: never touch the network, like --local-only
   MACH_CACHE_DIR  engine cache root (default ~/.cache/mach)

EXAMPLES:
   mach check ./checkpoints/qwen3-coder
   mach check mlx-community/Qwen3-Coder-30B-A3B-MLX-4bit
   mach check MODEL --json
   mach check --all-archs
   mach check MODEL --draft-dir ./draft --context-length 16384 --expert-cache-gb 4
   mach check MODEL --local-only
   mach check ./qwen3_6_35b_a3b_engine_k256 --verify

Exit status 0 means supported, 1 not supported (also an unknown model_type),
2 a usage error, 4 a missing or malformed file (config.json, safetensors,
tensors that disagree with config.json; with --verify, an expert sidecar that
is missing or does not match its checksums), 5 a hub failure.`

func newApp(d deps) *cli.App {
	app := cliapp.NewApp("mach-check", "preflight a checkpoint: support, serving paths, artifacts, memory", description)
	app.ArgsUsage = "MODEL"
	app.Flags = append(app.Flags,
		cliapp.JSONFlag("emit the full report as JSON instead of the human table"),
		&cli.BoolFlag{Name: "all-archs", Usage: "print the path × architecture matrix for every registered arch (omit MODEL)"},
		&cli.StringFlag{Name: "draft-dir", Usage: "speculative-decode draft directory to probe for the specdec path"},
		&cli.IntFlag{Name: "context-length", Usage: "context length for the KV-byte estimate, at most max_position_embeddings (default min(max_position_embeddings, 8192))"},
		&cli.Float64Flag{Name: "expert-cache-gb", Usage: "streaming expert-cache budget (GB) used for the memory verdict"},
		&cli.BoolFlag{Name: "local-only", Usage: "never touch the network; MODEL must be a local directory or a cached repo id"},
		&cli.BoolFlag{Name: "verify", Usage: "also read expert_sidecar/'s layer files and check every expert's checksum"},
		&cli.StringFlag{Name: "revision", Value: "main", Usage: "Hugging Face revision (ignored for local paths)"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root for config-only fetches (default ~/.cache/mach, or $MACH_CACHE_DIR)"},
	)
	app.Action = func(c *cli.Context) error {
		opts := options{
			JSON:          c.Bool("json"),
			AllArchs:      c.Bool("all-archs"),
			DraftDir:      c.String("draft-dir"),
			ContextLength: c.Int("context-length"),
			LocalOnly:     c.Bool("local-only"),
			Verify:        c.Bool("verify"),
			Revision:      c.String("revision"),
			CacheDir:      c.String("cache-dir"),
		}
		switch c.Args().Len() {
		case 0:
		case 1:
			opts.Model = c.Args().First()
		default:
			return cliapp.Usagef("want one MODEL, got %d arguments", c.Args().Len())
		}
		if opts.ContextLength < 0 {
			return cliapp.Usagef("--context-length %d: want a positive number of tokens", opts.ContextLength)
		}
		gb := c.Float64("expert-cache-gb")
		if gb < 0 || math.IsNaN(gb) || math.IsInf(gb, 0) || gb > 1e9 {
			return cliapp.Usagef("--expert-cache-gb %v: want a non-negative number of GB", gb)
		}
		opts.ExpertCacheBytes = int64(gb * 1e9)
		return run(c.Context, d, opts, c.App.Writer, c.App.ErrWriter)
	}
	return app
}
