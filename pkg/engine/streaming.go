package engine

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// checkStreaming refuses --streaming with mach check's reasons: the
// expert_streaming path must be ok for this build and checkpoint (a valid
// expert_sidecar/), and the architecture must take an external store.
func checkStreaming(dir string, arch registry.Arch, in *checkpoint.Inspection, opts Options) error {
	r := preflight.ThisBuild(opts.Registry).Gate(capability.ExpertStreaming, arch, in)
	switch r.Status {
	case capability.OK:
	case capability.NeedsArtifact:
		return fault.Mark(fmt.Errorf("%s: --streaming: %s", dir, r.Reason), fault.ErrIO)
	case capability.Blocked:
		return fault.Mark(fmt.Errorf("%s: --streaming: blocked: %s", dir, r.Reason), fault.ErrNotImplemented)
	default:
		return fault.Mark(fmt.Errorf("%s: --streaming: expert_streaming is %s: %s", dir, r.Status, r.Reason), fault.ErrUnsupported)
	}
	if _, ok := opts.StoreLoaders[arch.ModelType]; !ok {
		return fault.NotImplemented(fmt.Sprintf("expert streaming for %s", arch.ModelType))
	}
	return nil
}

// loadStreaming opens the expert store and loads the model over it.
func (e *Engine) loadStreaming(ctx context.Context, cfg *modelconfig.Config, so expertstream.Options) error {
	so.Hidden, so.Width = cfg.HiddenSize, cfg.ExpertWidth()
	store, err := expertstream.Open(filepath.Join(e.Dir, sidecar.DirName), e.backend, so)
	if err != nil {
		return err
	}
	m, err := e.opts.StoreLoaders[cfg.ModelType](ctx, e.Dir, cfg, e.backend, store)
	if err != nil {
		_ = store.Close()
		return err
	}
	e.model, e.experts = m, store
	return nil
}

// ExpertStore returns the expert-streaming store, or nil when the experts
// are resident. mach-serve exports its Stats in /metrics.
func (e *Engine) ExpertStore() *expertstream.Store { return e.experts }
