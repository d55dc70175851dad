package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/hub"
	"github.com/urfave/cli/v2"
)

// checkpointArg is CHECKPOINT: the argument or --checkpoint, not both; ""
// when neither is given (the default model).
func checkpointArg(c *cli.Context) (string, error) {
	arg, flag := c.Args().First(), c.String("checkpoint")
	switch {
	case c.Args().Len() > 1:
		return "", cliapp.Usagef("want one CHECKPOINT, got %d arguments", c.Args().Len())
	case arg != "" && flag != "" && arg != flag:
		return "", cliapp.Usagef("CHECKPOINT given twice (%s and --checkpoint %s); give one", arg, flag)
	case arg != "":
		return arg, nil
	case flag != "":
		return flag, nil
	}
	return "", nil
}

// resolveOptions are the flags resolution reads.
type resolveOptions struct {
	Checkpoint, Revision, CacheDir string
	LocalOnly, Streaming, JSONLogs bool
}

// resolveCheckpoint turns CHECKPOINT into a directory through pkg/hub: a
// directory as is, a repo id from the Hugging Face or engine cache, or
// downloaded (weights and tokenizer; the expert sidecar too for
// --streaming). The server calls it at start-up, before loading.
func resolveCheckpoint(ctx context.Context, getenv hub.Getenv, o resolveOptions, stderr io.Writer) (*hub.Model, error) {
	need := hub.NeedWeights | hub.NeedTokenizer
	if o.Streaming {
		need |= hub.NeedSidecar
	}
	var progress io.Writer
	if f, ok := stderr.(*os.File); ok && !o.JSONLogs {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			progress = stderr
		}
	}
	r := hub.NewResolver(hub.Options{Getenv: getenv, CacheDir: o.CacheDir, LocalOnly: o.LocalOnly, Progress: progress})
	m, err := r.Resolve(ctx, o.Checkpoint, hub.Request{Revision: o.Revision, Need: need})
	if err != nil {
		return nil, err
	}
	for _, w := range m.Warnings {
		fmt.Fprintf(stderr, "mach-serve: warning: %s\n", w)
	}
	return m, nil
}
