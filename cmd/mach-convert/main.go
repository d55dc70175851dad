// Mach-convert turns a higher-precision MoE master into a servable 2-bit
// IQ2 GGUF-expert checkpoint: resolve, slice, calibrate, quantize, pack and
// gate, writing each phase under --out plus conversion_report.json.
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
	app := cliapp.NewApp("mach-convert", "bf16 master to a 2-bit IQ2 GGUF-expert checkpoint", `
EXAMPLES:
   mach convert mlx-community/Qwen3.6-35B-A3B-bf16 --out ./qwen36-a3b-iq2 --gates full
   mach-serve ./qwen36-a3b-iq2 --streaming --port 8080`)
	app.ArgsUsage = "MODEL"
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "out", Usage: "output directory"},
		&cli.StringFlag{Name: "gates", Value: "full", Usage: "validation gates: none, quick or full"},
		&cli.StringFlag{Name: "calibration", Usage: "calibration text file (JSON lines or plain text)"},
		&cli.StringFlag{Name: "type", Value: "iq2_xxs", Usage: "expert quantization: iq2_xxs, iq2_xs or q2_k"},
		&cli.BoolFlag{Name: "local-only", Usage: "never touch the network"},
		cliapp.JSONFlag("print the conversion report as JSON"),
	)
	app.Action = cliapp.NotImplemented
	return app
}
