// Mach-reap runs REAP (router-weighted expert activation pruning) saliency
// analysis over calibration text and writes a prune plan for mach-prune.
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
	app := cliapp.NewApp("mach-reap", "REAP expert-saliency analysis and prune plan", `
EXAMPLES:
   mach-reap --model ./ckpt --calibration calib.jsonl --keep 96 --output plan.jsonl`)
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "model", Usage: "checkpoint directory or repo id"},
		&cli.StringFlag{Name: "calibration", Usage: "calibration text (JSON lines or plain text)"},
		&cli.IntFlag{Name: "keep", Usage: "experts to keep per layer"},
		&cli.StringFlag{Name: "output", Usage: "plan file to write (JSON Lines)"},
		&cli.StringFlag{Name: "candidate-id", Usage: "candidate id to record in the plan"},
		cliapp.JSONFlag("print the saliency summary as JSON"),
	)
	app.Action = cliapp.NotImplemented
	return app
}
