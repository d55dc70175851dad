package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

type options struct {
	Model            string
	JSON             bool
	AllArchs         bool
	DraftDir         string
	ContextLength    int
	ExpertCacheBytes int64
	LocalOnly        bool
	Revision         string
	CacheDir         string
}

func run(ctx context.Context, d deps, opts options, stdout, stderr io.Writer) error {
	if opts.AllArchs {
		if opts.Model != "" {
			return cliapp.Usagef("--all-archs prints the matrix of every architecture; omit MODEL (%s)", opts.Model)
		}
		return writeMatrix(stdout, d.build, opts.JSON)
	}
	if opts.Model == "" {
		return cliapp.Usagef("missing MODEL: a checkpoint directory or a Hugging Face repo id (or --all-archs)")
	}
	in, err := resolve(ctx, d, opts, stderr)
	if err != nil {
		return err
	}
	arch, err := d.build.Registry.Require(in.Config.ModelType)
	if err != nil {
		var ue *registry.UnknownError
		if errors.As(err, &ue) {
			return fault.Mark(fmt.Errorf("%s: %w", in.Config.Name(), err), fault.ErrUnsupported)
		}
		return err
	}
	rep := d.build.Check(opts.Model, arch, in, preflight.CheckOptions{Memory: preflight.MemoryOptions{
		ContextLength:    opts.ContextLength,
		ExpertCacheBytes: opts.ExpertCacheBytes,
		Host:             d.host,
	}})
	for _, w := range in.Warnings {
		fmt.Fprintf(stderr, "mach-check: warning: %s\n", w)
	}
	if in.Draft.Dir != "" && !in.Draft.Usable {
		fmt.Fprintf(stderr, "mach-check: warning: draft directory %s is not usable: %s\n", in.Draft.Dir, in.Draft.Reason)
	}
	if opts.JSON {
		err = cliapp.WriteJSON(stdout, rep)
	} else {
		err = writeReport(stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Supported {
		return fault.Mark(errors.New(rep.Verdict), fault.ErrUnsupported)
	}
	return nil
}

// resolve finds the checkpoint (a local directory or a hub repo), loads its
// config and inspects it.
func resolve(ctx context.Context, d deps, opts options, stderr io.Writer) (*checkpoint.Inspection, error) {
	if st, err := os.Stat(opts.Model); err == nil {
		if !st.IsDir() {
			return nil, cliapp.Usagef("%s is a file; MODEL is a checkpoint directory (holding config.json) or a repo id", opts.Model)
		}
		cfg, err := modelconfig.Load(opts.Model)
		if err != nil {
			return nil, err
		}
		return checkpoint.Inspect(opts.Model, cfg, checkpoint.Options{DraftDir: opts.DraftDir})
	}
	if opts.LocalOnly {
		return nil, fault.Mark(fmt.Errorf("%s: no such directory (--local-only needs a local checkpoint directory and never fetches a repo)", opts.Model), fault.ErrIO)
	}
	if !hub.LooksLikeRepoID(opts.Model) {
		return nil, fault.Mark(fmt.Errorf("%s: no such directory, and not a Hugging Face repo id (org/name)", opts.Model), fault.ErrIO)
	}
	if err := hub.ValidateRepoID(opts.Model); err != nil {
		return nil, err
	}
	root, err := cacheRoot(d, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	client := d.hub(root)
	if isTerminal(stderr) {
		fmt.Fprintf(stderr, "fetching config.json of %s@%s from %s …\n", opts.Model, opts.Revision, client.Endpoint)
	}
	snap, err := client.FetchConfig(ctx, opts.Model, opts.Revision)
	if err != nil {
		return nil, err
	}
	for _, w := range snap.Warnings {
		fmt.Fprintf(stderr, "mach-check: warning: %s\n", w)
	}
	cfg, err := modelconfig.Load(snap.Dir)
	if err != nil {
		return nil, err
	}
	var layout *sidecar.Layout
	var layoutErr error
	if snap.HasLayout {
		layout, layoutErr = sidecar.ReadFile(filepath.Join(snap.Dir, filepath.FromSlash(hub.LayoutFile)))
	}
	in := checkpoint.InspectConfig(snap.Dir, cfg, layout, opts.DraftDir)
	if layoutErr != nil {
		in.Sidecar = checkpoint.SidecarProbe{Present: true, Err: layoutErr}
		in.Warnings = append(in.Warnings, layoutErr.Error())
	}
	return in, nil
}

func cacheRoot(d deps, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if v := d.getenv(hub.EnvCacheDir); v != "" {
		return v, nil
	}
	return hub.CacheRoot("")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
