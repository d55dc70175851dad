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
	Verify           bool
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
	// The same bound mach-serve's --context-length has (pkg/scheduler).
	if p := in.Config.MaxPositionEmbeddings; p > 0 && opts.ContextLength > p {
		return cliapp.Usagef("--context-length %d exceeds the model's %d (max_position_embeddings in %s)", opts.ContextLength, p, in.Config.Name())
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
	if opts.Verify {
		// --verify fails on a sidecar that does not check out, whatever
		// the verdict: the report above says why.
		switch s := in.Sidecar; {
		case !s.Present:
			return fault.Mark(fmt.Errorf("--verify: %s has no expert_sidecar/layout.json to verify", opts.Model), fault.ErrIO)
		case in.Remote:
			return fault.Mark(fmt.Errorf("--verify: the layer files of a remote checkpoint are not downloaded; verify a local copy"), fault.ErrUsage)
		case !s.Checksummed:
			return fault.Mark(fmt.Errorf("--verify: expert sidecar failed: %w", s.Err), fault.ErrIO)
		}
	}
	if !rep.Supported {
		return fault.Mark(errors.New(rep.Verdict), fault.ErrUnsupported)
	}
	return nil
}

// resolve finds the checkpoint through pkg/hub (a local directory, a
// cached snapshot, or a config-only fetch), loads its config and inspects
// it: in full when the weights are there, from config.json (and
// layout.json) alone otherwise.
func resolve(ctx context.Context, d deps, opts options, stderr io.Writer) (*checkpoint.Inspection, error) {
	var progress io.Writer
	if isTerminal(stderr) {
		progress = stderr
	}
	r := hub.NewResolver(hub.Options{Getenv: d.getenv, CacheDir: opts.CacheDir, LocalOnly: opts.LocalOnly, NewClient: d.hub, Progress: progress})
	m, err := r.Resolve(ctx, opts.Model, hub.Request{Revision: opts.Revision, Need: hub.NeedConfig})
	if err != nil {
		return nil, err
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(stderr, "mach-check: warning: %s\n", w)
	}
	cfg, err := modelconfig.Load(m.Dir)
	if err != nil {
		return nil, err
	}
	if !m.ConfigOnly {
		in, err := checkpoint.Inspect(m.Dir, cfg, checkpoint.Options{DraftDir: opts.DraftDir})
		if err != nil || !opts.Verify {
			return in, err
		}
		var track sidecar.Progress
		if progress != nil {
			track = func(done, total int64) {
				fmt.Fprintf(progress, "\rverifying expert_sidecar/: %.2f/%.2f GB\033[K", float64(done)/1e9, float64(total)/1e9)
				if done == total {
					fmt.Fprint(progress, "\r\033[K")
				}
			}
		}
		return in, in.VerifySidecarChecksums(ctx, track)
	}
	var layout *sidecar.Layout
	var layoutErr error
	if m.HasLayout {
		layout, layoutErr = sidecar.ReadFile(filepath.Join(m.Dir, filepath.FromSlash(hub.LayoutFile)))
	}
	in := checkpoint.InspectConfig(m.Dir, cfg, layout, opts.DraftDir)
	if layoutErr != nil {
		in.Sidecar = checkpoint.SidecarProbe{Present: true, Err: layoutErr}
		in.Warnings = append(in.Warnings, layoutErr.Error())
	}
	return in, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
