// Mach-serve serves a checkpoint over an OpenAI-compatible HTTP API.
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
	app := cliapp.NewApp("mach-serve", "OpenAI-compatible HTTP server", `
EXAMPLES:
   mach-serve ./qwen3_6_35b_a3b_engine_k256 --streaming --port 8080
   mach-serve --checkpoint ./ckpt --max-batch 8 --api-key secret`)
	app.ArgsUsage = "[CHECKPOINT]"
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory or repo id (or give it as the argument)"},
		&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "listen address"},
		&cli.IntFlag{Name: "port", Value: 8080, Usage: "listen port"},
		&cli.BoolFlag{Name: "streaming", Usage: "stream routed experts from expert_sidecar/"},
		&cli.Float64Flag{Name: "expert-cache-gb", Usage: "expert cache budget for --streaming"},
		&cli.BoolFlag{Name: "target-only", Usage: "no speculative decoding"},
		&cli.StringFlag{Name: "draft-dir", Usage: "speculative-decode draft directory"},
		&cli.IntFlag{Name: "context-length", Usage: "maximum context length per sequence"},
		&cli.IntFlag{Name: "max-batch", Value: 8, Usage: "maximum concurrent sequences"},
		&cli.IntFlag{Name: "max-queue", Value: 64, Usage: "maximum queued requests before 429"},
		&cli.StringFlag{Name: "api-key", EnvVars: []string{"MACH_API_KEY"}, Usage: "require Authorization: Bearer KEY on /v1/*"},
		&cli.StringFlag{Name: "served-model-name", Usage: "model name reported by /v1/models"},
		&cli.StringFlag{Name: "backend", Usage: "compatibility alias: production or dflash"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		&cli.StringFlag{Name: "revision", Usage: "Hugging Face revision of a repo id (default main)"},
		&cli.BoolFlag{Name: "local-only", Usage: "never touch the network; a repo id must already be cached"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root searched for a repo id (default $MACH_CACHE_DIR or ~/.cache/mach)"},
	)
	// NOTE for the server: at start-up, CHECKPOINT comes from
	// checkpointArg(c) and becomes a directory through
	// resolveCheckpoint(ctx, os.Getenv, resolveOptions{...}, c.App.ErrWriter)
	// (pkg/hub: the caches first, then a download of only what serving
	// needs). It is not called yet so that this stub downloads nothing
	// before answering "not implemented".
	app.Action = cliapp.NotImplemented
	return app
}
