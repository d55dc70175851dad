package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/preflight"
)

type options struct {
	LocalOnly bool
	JSON      bool
	Dirs      []string
	CacheDir  string
}

// row is one listed model; its JSON form is --json's.
type row struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	ModelType string `json:"model_type"`
	// Supported: this build can serve the architecture.
	Supported bool `json:"supported"`
	// Registered: the model_type is in the registry.
	Registered bool   `json:"registered"`
	Reason     string `json:"reason"`
	Installed  bool   `json:"installed"`
	SizeBytes  int64  `json:"size_bytes"`
	Path       string `json:"path,omitempty"`
	RepoID     string `json:"repo_id,omitempty"`
}

func run(ctx context.Context, d deps, opts options, stdout, stderr io.Writer) error {
	// The same places hub.Resolver looks: the Hugging Face hub cache, then
	// the engine cache root.
	roots := hub.CacheDirs(d.getenv, opts.CacheDir)
	// Directories the user named must exist: a typo there would otherwise
	// list nothing without a word (the cache roots may well be absent).
	named := slices.Clone(opts.Dirs)
	for _, p := range filepath.SplitList(d.getenv(envModelsDir)) {
		if p != "" {
			named = append(named, p)
		}
	}
	for i, p := range named {
		from := "--dir"
		if i >= len(opts.Dirs) {
			from = envModelsDir
		}
		switch st, err := os.Stat(p); {
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(stderr, "mach-models: warning: %s %s does not exist\n", from, p)
		case err != nil:
			fmt.Fprintf(stderr, "mach-models: warning: %s: %v\n", from, err)
		case !st.IsDir():
			fmt.Fprintf(stderr, "mach-models: warning: %s %s is not a directory\n", from, p)
		}
	}
	roots = append(roots, named...)
	found, errs := checkpoint.Scan(roots)
	for _, err := range errs {
		fmt.Fprintf(stderr, "mach-models: warning: %v\n", err)
	}
	rows := make([]row, 0, len(found))
	for _, f := range found {
		r := row{Name: f.Name, Source: "local", ModelType: f.ModelType, Installed: f.Installed, SizeBytes: f.SizeBytes, Path: f.Dir, RepoID: f.RepoID}
		if f.ConfigErr != nil {
			r.Reason = f.ConfigErr.Error()
		}
		rows = append(rows, r)
	}
	if !opts.LocalOnly {
		url, token := d.getenv(envCatalogURL), d.getenv(envCatalogToken)
		switch {
		case url == "" && token == "":
			fmt.Fprintf(stderr, "mach-models: listing local checkpoints only; set %s and %s to include the remote catalog\n", envCatalogURL, envCatalogToken)
		case url == "" || token == "":
			set, unset := envCatalogURL, envCatalogToken
			if url == "" {
				set, unset = envCatalogToken, envCatalogURL
			}
			fmt.Fprintf(stderr, "mach-models: listing local checkpoints only; %s is set but %s is not: set it too to include the remote catalog\n", set, unset)
		default:
			entries, err := fetchCatalog(ctx, d.http, url, token)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stderr, "mach-models: warning: remote catalog unavailable: %v; listing local checkpoints only\n", err)
			} else {
				rows = merge(rows, entries)
			}
		}
	}
	for i := range rows {
		judge(d.build, &rows[i])
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	if opts.JSON {
		return cliapp.WriteJSON(stdout, rows)
	}
	return writeTable(stdout, rows)
}

// merge adds catalog entries, joining them to local rows with the same name
// or repo id.
func merge(rows []row, entries []catalogEntry) []row {
	for _, e := range entries {
		matched := false
		for i := range rows {
			r := &rows[i]
			if r.Source == "remote" {
				continue
			}
			if r.Name == e.Name || (r.RepoID != "" && (r.RepoID == e.Name || r.RepoID == e.RepoID)) {
				r.Source = "local+remote"
				if r.ModelType == "" {
					r.ModelType = e.ModelType
				}
				if !r.Installed && e.SizeBytes > 0 {
					r.SizeBytes = e.SizeBytes
				}
				matched = true
			}
		}
		if !matched {
			rows = append(rows, row{Name: e.Name, Source: "remote", ModelType: e.ModelType, SizeBytes: e.SizeBytes, RepoID: e.RepoID})
		}
	}
	return rows
}

// judge fills supported, registered and reason from the same gates mach
// check uses.
func judge(b preflight.Build, r *row) {
	if r.ModelType == "" {
		if r.Reason == "" {
			r.Reason = "model_type unknown"
		}
		return
	}
	arch, ok := b.Registry.Lookup(r.ModelType)
	if !ok {
		r.Reason = fmt.Sprintf("model_type %q is not registered", r.ModelType)
		return
	}
	r.Registered = true
	v := preflight.Decide(arch, b.Paths(arch, nil))
	r.Supported = v.Supported
	if !v.Supported {
		r.Reason = v.Reason
	}
}

func writeTable(w io.Writer, rows []row) error {
	table := make([][]string, 0, len(rows))
	var notYet bool
	for _, r := range rows {
		supported := "no"
		switch {
		case r.Supported:
			supported = "yes"
		case r.Registered:
			supported, notYet = "not yet", true
		case r.ModelType == "":
			supported = "?"
		}
		mt := r.ModelType
		if mt == "" {
			mt = "?"
		}
		size := "-"
		if r.SizeBytes > 0 {
			size = cliapp.Size(r.SizeBytes)
		}
		table = append(table, []string{r.Name, r.Source, mt, supported, cliapp.YesNo(r.Installed), size})
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no models found (scan more directories with --dir or LME_MODELS_DIR)")
		return err
	}
	if err := cliapp.WriteTable(w, []string{"name", "source", "model_type", "supported", "installed", "size"}, table); err != nil {
		return err
	}
	if notYet {
		_, err := fmt.Fprintln(w, "\nnot yet: the architecture is registered but this build cannot serve it (mach check --all-archs says why)")
		return err
	}
	return nil
}
