// Mach-archs lists the Mixture-of-Experts architectures this build of mach
// knows, from the in-code architecture registry: the authoritative answer to
// "what can this engine load?". A checkpoint whose config.json model_type is
// not listed cannot be loaded.
//
// Usage:
//
//	mach-archs           human-readable table
//	mach-archs --json    the full arch_summary, one object per architecture
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(cliapp.Main(newApp(registry.Default()), os.Args))
}

// modulePath is trimmed from model_module in the table; --json keeps it.
const modulePath = "github.com/maniac-ai/mach"

type options struct {
	JSON bool
}

func newApp(reg *registry.Registry) *cli.App {
	app := cliapp.NewApp("mach-archs", "list the MoE architectures this build can serve", `
Lists every registered architecture with its static facts:

   model_type    config.json model_type key
   swiglu        expert activation (plain_swiglu, silu_limited, plain_geglu)
   stacked       whether the upstream axis-0 stacked expert layout loads directly
                 (no: slice it first with mach-prune; deepseek_v4 only)
   expert_bias   per-expert Linear biases (gpt_oss only)
   wrapped       text model nested under text_config (qwen3_5_moe, gemma4)
   bits, group   default routed-expert quantization fallbacks
   model_module  the Go package implementing the forward pass

--json emits the full arch_summary (the object GET /v1/capabilities embeds):
the facts above plus kv_cache_kind (standard, hybrid_gdn, compressed,
rotating), specdec_kind (specdec_v7, mtp_eagle3 or null), swiglu_params and
continuous_batching (status and reason for this build), sorted by model_type.

EXAMPLES:
   mach-archs
   mach-archs --json | jq '.[].model_type'
   mach archs`)
	app.Flags = append(app.Flags, cliapp.JSONFlag(""))
	app.Action = func(c *cli.Context) error {
		if err := cliapp.NoArgs(c); err != nil {
			return err
		}
		return run(c.Context, reg, options{JSON: c.Bool("json")}, c.App.Writer)
	}
	return app
}

func run(_ context.Context, reg *registry.Registry, opts options, w io.Writer) error {
	archs := reg.All()
	if opts.JSON {
		out := make([]registry.Summary, len(archs))
		for i, a := range archs {
			out[i] = a.Summary()
		}
		return cliapp.WriteJSON(w, out)
	}
	header := []string{"model_type", "swiglu", "stacked", "expert_bias", "wrapped", "bits", "group", "model_module"}
	rows := make([][]string, 0, len(archs))
	for _, a := range archs {
		rows = append(rows, []string{
			a.ModelType, string(a.Activation), cliapp.YesNo(a.Stacked), cliapp.YesNo(a.ExpertBias),
			cliapp.YesNo(a.Wrapped), strconv.Itoa(a.DefaultBits), strconv.Itoa(a.DefaultGroup),
			strings.TrimPrefix(a.ModelModule, modulePath+"/"),
		})
	}
	if err := cliapp.WriteTable(w, header, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d architectures. Serving paths per architecture: mach check --all-archs\n", len(archs))
	return err
}
