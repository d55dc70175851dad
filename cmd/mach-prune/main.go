// Mach-prune converts a source checkpoint into the per-expert engine layout,
// keeping the experts a plan selects (or all of them).
package main

import (
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(cliapp.Main(newApp(), os.Args))
}

const description = `
Writes --output as a checkpoint in the per-expert engine layout: one tensor
per kept routed expert and projection (model.layers.L.mlp.experts.E.
{gate,up,down}_proj.*, w1/w3/w2 for deepseek_v4; gate and up always separate
[out, in] matrices), experts renumbered densely in kept order, the routers'
rows and per-expert router biases/scales sliced to match, DeepSeek hash
tables remapped, config.json's expert count updated (plus
num_experts_per_layer when layers keep different numbers), expert_map.json
mapping new ids to source ids, every other tensor carried over unchanged
(same dtype and quantization), tokenizer and chat files copied. Sources may
be stacked (transformers fused gate_up_proj, MLX switch_mlp / switch_glu,
gpt-oss MXFP4 blocks or input-major bf16) or per expert, for every
registered architecture.

k<n> in an artifact name is the number of routed experts kept per layer:
k256 of a 256-expert model is the full set, a pure layout conversion.

PLAN (--plan): JSON Lines, one candidate per line:
   {"candidate_id": "qwen3_6_a3b_uniform_avgk128", "num_experts": 256,
    "keep": {"0": [0, 3, 7, ...], "1": [...], ...}}
num_experts is the source model's routed experts per layer; keep maps every
MoE layer (index as a string) to its kept expert ids, ascending. Optional:
model_type, source, method, scores ({"layer": [one per expert]}) and meta
(any object). mach-reap writes these files. Without --plan (or with --keep
all) every expert is kept.

The plan must match the model: num_experts equal to the source's, a list
for every MoE layer and no other, at least num_experts_per_tok experts per
layer, and for DeepSeek hash layers every expert their table routes to.

WRITING: the source is streamed tensor by tensor (memory does not grow with
the model); the output
is built in a temporary directory beside --output (shards of at most
--max-shard-size, model.safetensors.index.json last), fsynced and renamed
into place, so an interrupted run leaves no partial checkpoint. --output
must not exist or be empty; --force replaces an existing checkpoint
directory (one holding config.json). The source's expert_sidecar/ is not
copied: run mach-export-sidecar on the output.

Progress goes to stderr on a terminal; the summary (experts kept per layer,
bytes before and after) to stdout, or as JSON with --json.

EXAMPLES:
   mach-prune --source /path/to/source --output ./qwen3_6_a3b_k128 \
     --plan keep_list.jsonl --candidate-id qwen3_6_a3b_uniform_avgk128
   mach-prune --source ./src --output ./engine_k256 --keep all
   mach-prune --source ./src --output ./out --plan plan.jsonl --candidate-id k6 --dry-run --json
   mach check ./qwen3_6_a3b_k128

Exit status 0 on success, 1 for an architecture or layout this build cannot
prune, 2 for a usage error (bad flags, unknown candidate id, a plan that does
not fit the checkpoint, an output directory that is in the way), 4 for a
missing or malformed file (config.json, safetensors, plan), 130 when
interrupted.`

func newApp() *cli.App {
	app := cliapp.NewApp("mach-prune", "slice a checkpoint to a keep-list of experts (engine layout)", description)
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "source", Usage: "source checkpoint directory"},
		&cli.StringFlag{Name: "output", Usage: "output directory (created; must not exist or be empty unless --force)"},
		&cli.StringFlag{Name: "plan", Usage: "plan file (JSON Lines, one candidate per line)"},
		&cli.StringFlag{Name: "candidate-id", Usage: "candidate in the plan to apply (may be omitted when the plan has one)"},
		&cli.StringFlag{Name: "keep", Usage: "'all' converts the layout without pruning (the default without --plan)"},
		&cli.BoolFlag{Name: "force", Usage: "replace an existing checkpoint directory at --output"},
		&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest shard: bytes, or a size such as 5GB, 500MB, 2GiB"},
		&cli.BoolFlag{Name: "dry-run", Usage: "check the plan against the checkpoint and print the summary without writing"},
		cliapp.JSONFlag("print the summary as JSON"),
	)
	app.Action = func(c *cli.Context) error {
		if err := cliapp.NoArgs(c); err != nil {
			return err
		}
		opts := options{
			Source:       c.String("source"),
			Output:       c.String("output"),
			Plan:         c.String("plan"),
			CandidateID:  c.String("candidate-id"),
			Keep:         c.String("keep"),
			Force:        c.Bool("force"),
			MaxShardSize: c.String("max-shard-size"),
			DryRun:       c.Bool("dry-run"),
			JSON:         c.Bool("json"),
		}
		return run(c.Context, registry.Default(), opts, c.App.Writer, c.App.ErrWriter)
	}
	return app
}
