// Mach-export-sidecar writes expert_sidecar/ (layout.json and one
// layer_XX.bin per MoE layer) for direct-pread expert streaming.
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
	app := cliapp.NewApp("mach-export-sidecar", "write expert_sidecar/ for direct-pread streaming", `
EXAMPLES:
   mach-export-sidecar --checkpoint ./qwen3_6_35b_a3b_engine_k256 --num-experts 256 --bits 4`)
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "checkpoint", Usage: "engine-layout checkpoint directory"},
		&cli.StringFlag{Name: "output", Usage: "output directory (default CHECKPOINT/expert_sidecar)"},
		&cli.IntFlag{Name: "num-experts", Usage: "routed experts per layer (must match the checkpoint)"},
		&cli.IntFlag{Name: "bits", Usage: "quantize bf16/f16/f32 experts to B-bit MLX affine on the way"},
		&cli.IntFlag{Name: "group-size", Value: 64, Usage: "group size for --bits"},
		cliapp.JSONFlag("print the layout summary as JSON"),
	)
	app.Action = cliapp.NotImplemented
	return app
}
