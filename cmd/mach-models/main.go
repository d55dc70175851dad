// Mach-models lists the models known to mach: local checkpoints in the cache
// root and extra directories, merged with the remote catalog when one is
// configured.
package main

import (
	"net/http"
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
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
	build  preflight.Build
	getenv func(string) string
	// http is the catalog client; nil means one with catalogTimeout.
	http *http.Client
}

func defaultDeps() deps {
	return deps{build: preflight.ThisBuild(registry.Default()), getenv: os.Getenv}
}

const description = `
Lists local checkpoints, merged by name with the remote catalog when one is
configured. Columns: name, source (local, remote or local+remote),
model_type, supported, installed, size.

LOCAL SCAN: the Hugging Face hub cache ($HF_HUB_CACHE, else $HF_HOME/hub,
else ~/.cache/huggingface/hub), the engine cache root (--cache-dir, else
$MACH_CACHE_DIR, else ~/.cache/mach), every --dir and every directory in
$LME_MODELS_DIR: the places mach-generate and mach check look for a repo
id first (a --dir or LME_MODELS_DIR entry that does not exist or is not a
directory gets a warning on stderr). In each,
a checkpoint is a directory holding config.json: the directory itself, a
child, or a grandchild (org/name trees); Hugging Face hub caches
(models--org--name/snapshots/<rev>/, directly or under hub/) are listed as
org/name at the snapshot refs/main points to. A checkpoint is installed when
its weights (*.safetensors or *.gguf) are present; mach check's config-only
fetches are listed but not installed. size counts weights and the expert
sidecar.

SUPPORTED: yes when this build can serve the architecture; "not yet" when
its model_type is registered but this build cannot serve it (see
mach check --all-archs); no when the model_type is not registered.

REMOTE CATALOG: GET $LME_CATALOG_URL (a base URL, to which
/v1/local-moe/catalog is appended, or the full catalog URL) with
"Authorization: Bearer $LME_CATALOG_TOKEN". Accepted JSON:

   {"models": [{"name": "org/name", "model_type": "qwen3_5_moe",
                "size_bytes": 19000000000, "repo_id": "org/name",
                "revision": "main", "description": "..."}]}

or the bare list. name is required; the other keys are optional and unknown
keys are ignored. A network error, a non-200 answer or malformed JSON prints
a warning and the local listing (exit 0). Without both variables, or with
--local-only, only local checkpoints are listed (without --local-only, a
hint on stderr names the variable that is missing).

--json prints a list of {name, source, model_type, supported, registered,
reason, installed, size_bytes, path, repo_id}.

ENVIRONMENT:
   LME_CATALOG_URL    catalog base URL or a full /v1/local-moe/catalog URL
   LME_CATALOG_TOKEN  bearer token for the catalog request
   LME_MODELS_DIR     extra scan directories, separated like PATH
   HF_HUB_CACHE       Hugging Face hub cache (default $HF_HOME/hub)
   HF_HOME            Hugging Face home (default ~/.cache/huggingface)
   MACH_CACHE_DIR     engine cache root (default ~/.cache/mach)

EXAMPLES:
   mach-models
   mach-models --local-only
   mach-models --json
   mach-models --dir ~/models --dir /mnt/ssd/ckpts`

func newApp(d deps) *cli.App {
	app := cliapp.NewApp("mach-models", "list local checkpoints and the remote catalog", description)
	app.Flags = append(app.Flags,
		&cli.BoolFlag{Name: "local-only", Usage: "only scan local checkpoints"},
		cliapp.JSONFlag(""),
		&cli.StringSliceFlag{Name: "dir", Usage: "extra directory to scan (repeatable)"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root (default ~/.cache/mach, or $MACH_CACHE_DIR)"},
	)
	app.Action = func(c *cli.Context) error {
		if err := cliapp.NoArgs(c); err != nil {
			return err
		}
		return run(c.Context, d, options{
			LocalOnly: c.Bool("local-only"),
			JSON:      c.Bool("json"),
			Dirs:      c.StringSlice("dir"),
			CacheDir:  c.String("cache-dir"),
		}, c.App.Writer, c.App.ErrWriter)
	}
	return app
}
