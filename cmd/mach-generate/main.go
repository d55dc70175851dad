// Mach-generate runs one-shot text generation without standing up HTTP,
// for smoke-testing a checkpoint.
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
	app := cliapp.NewApp("mach-generate", "one-shot text generation", `
MODEL is a local checkpoint directory or a Hugging Face repo id.

EXAMPLES:
   mach-generate mlx-community/Qwen3.6-35B-A3B-MLX-4bit --prompt "def reverse(s):" --max-tokens 64 --temperature 0.0
   mach-generate ./ckpt --chat --system "Be brief." --prompt "Hello"
   mach-generate ./ckpt --prompt "Hello" --tokenize-only`)
	app.ArgsUsage = "MODEL"
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "prompt", Usage: "prompt text"},
		&cli.StringFlag{Name: "prompt-file", Usage: "read the prompt from a file (- for stdin)"},
		&cli.StringFlag{Name: "prompt-tokens", Usage: "raw prompt token ids, comma-separated (no tokenizer needed)"},
		&cli.BoolFlag{Name: "chat", Usage: "apply the chat template to the prompt as a user turn"},
		&cli.StringFlag{Name: "system", Usage: "system message for --chat"},
		&cli.IntFlag{Name: "max-tokens", Value: 256, Usage: "maximum tokens to generate"},
		&cli.Float64Flag{Name: "temperature", Value: 0.7, Usage: "sampling temperature (0 = greedy)"},
		&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "nucleus sampling mass"},
		&cli.IntFlag{Name: "top-k", Usage: "sample from the k most likely tokens (0 = off)"},
		&cli.Float64Flag{Name: "min-p", Usage: "drop tokens below min-p × the top probability"},
		&cli.Int64Flag{Name: "seed", Usage: "random seed for reproducible sampling"},
		&cli.StringSliceFlag{Name: "stop", Usage: "stop string (repeatable)"},
		&cli.BoolFlag{Name: "tokenize-only", Usage: "print the prompt's token ids after templating and exit; loads no weights"},
		cliapp.JSONFlag("print one JSON object with tokens, text, finish_reason and timings"),
		&cli.BoolFlag{Name: "verbose", Usage: "print statistics to stderr"},
		&cli.BoolFlag{Name: "streaming", Usage: "stream routed experts from expert_sidecar/"},
		&cli.Float64Flag{Name: "expert-cache-gb", Usage: "expert cache budget for --streaming"},
	)
	app.Action = cliapp.NotImplemented
	return app
}
