// Mach-prune converts a source checkpoint into the per-expert engine layout,
// keeping the experts a plan selects (or all of them).
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
	app := cliapp.NewApp("mach-prune", "slice a checkpoint to a keep-list of experts (engine layout)", `
k<n> in an artifact name is the number of routed experts kept per layer.

EXAMPLES:
   mach-prune --source /path/to/source --output ./qwen3_6_a3b_k128 \
     --plan keep_list.jsonl --candidate-id qwen3_6_a3b_uniform_avgk128
   mach-prune --source ./src --output ./engine_k256 --keep all`)
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "source", Usage: "source checkpoint directory"},
		&cli.StringFlag{Name: "output", Usage: "output directory"},
		&cli.StringFlag{Name: "plan", Usage: "plan file (JSON Lines, one candidate per line)"},
		&cli.StringFlag{Name: "candidate-id", Usage: "candidate in the plan to apply"},
		&cli.StringFlag{Name: "keep", Usage: "'all' converts the layout without pruning"},
		&cli.BoolFlag{Name: "force", Usage: "overwrite a non-empty output directory"},
		cliapp.JSONFlag("print the summary as JSON"),
	)
	app.Action = cliapp.NotImplemented
	return app
}
