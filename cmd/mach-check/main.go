// Mach-check is a static, pre-load model-support preflight: whether a
// checkpoint's architecture is supported, which serving paths it can run,
// which artifacts it needs and whether it fits in memory, from config.json
// and sidecar metadata alone, never loading weights.
package main

import (
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(cliapp.Main(newApp(), os.Args))
}

func newApp() *cli.App {
	app := cliapp.NewApp("mach-check", "preflight a checkpoint: support, serving paths, artifacts, memory", `
MODEL is a local checkpoint directory or a Hugging Face repo id (only
config.json and expert_sidecar/layout.json are fetched; weights never are).

EXAMPLES:
   mach check ./checkpoints/qwen3-coder
   mach check mlx-community/Qwen3-Coder-30B-A3B-MLX-4bit
   mach check MODEL --json
   mach check --all-archs
   mach check MODEL --draft-dir ./draft --context-length 16384 --expert-cache-gb 4
   mach check MODEL --local-only`)
	app.ArgsUsage = "MODEL"
	app.Flags = append(app.Flags,
		cliapp.JSONFlag("emit the full report as JSON instead of the human table"),
		&cli.BoolFlag{Name: "all-archs", Usage: "print the path × architecture matrix for every registered arch (omit MODEL)"},
		&cli.StringFlag{Name: "draft-dir", Usage: "speculative-decode draft directory to probe for the specdec path"},
		&cli.IntFlag{Name: "context-length", Usage: "context length for the KV-byte estimate (default min(max_position_embeddings, 8192))"},
		&cli.Float64Flag{Name: "expert-cache-gb", Usage: "streaming expert-cache budget used for the memory verdict"},
		&cli.BoolFlag{Name: "local-only", Usage: "never touch the network; MODEL must be a local directory"},
		&cli.StringFlag{Name: "revision", Value: "main", Usage: "Hugging Face revision (ignored for local paths)"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root for config-only fetches (default ~/.cache/mach, or $MACH_CACHE_DIR)"},
	)
	app.Action = cliapp.NotImplemented
	return app
}
