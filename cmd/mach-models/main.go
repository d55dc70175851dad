// Mach-models lists the models known to mach: local checkpoints in the cache
// root and extra directories, merged with the remote catalog when one is
// configured.
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
	app := cliapp.NewApp("mach-models", "list local checkpoints and the remote catalog", `
Columns: name, source (local, remote or local+remote), model_type, supported,
installed, size.

ENVIRONMENT:
   LME_CATALOG_URL    catalog base URL or a full /v1/local-moe/catalog URL
   LME_CATALOG_TOKEN  bearer token for the catalog request
   LME_MODELS_DIR     extra scan directories, separated like PATH

EXAMPLES:
   mach-models
   mach-models --local-only
   mach-models --json
   mach-models --dir ~/models --dir /mnt/ssd/ckpts`)
	app.Flags = append(app.Flags,
		&cli.BoolFlag{Name: "local-only", Usage: "only scan local checkpoints"},
		cliapp.JSONFlag(""),
		&cli.StringSliceFlag{Name: "dir", Usage: "extra directory to scan (repeatable)"},
		&cli.StringFlag{Name: "cache-dir", Usage: "engine cache root (default ~/.cache/mach, or $MACH_CACHE_DIR)"},
	)
	app.Action = cliapp.NotImplemented
	return app
}
