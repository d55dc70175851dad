// Package archs lists the architectures this build can load: the one place
// that imports every architecture package. Adding an architecture means a
// line here and flipping its registry.Support.Forward flag (the test below
// keeps the two in step).
package archs

import (
	"context"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/deepseekv4"
	"github.com/maniac-ai/mach/pkg/model/gemma4"
	"github.com/maniac-ai/mach/pkg/model/gptoss"
	"github.com/maniac-ai/mach/pkg/model/qwen35moe"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
)

// Loaders returns a loader for every implemented architecture.
func Loaders() model.Loaders {
	return model.Loaders{
		qwen3moe.ModelType:   qwen3moe.Loader,
		gemma4.ModelType:     gemma4.Loader,
		gptoss.ModelType:     gptoss.Loader,
		qwen35moe.ModelType:  qwen35moe.Loader,
		deepseekv4.ModelType: deepseekv4.Loader,
	}
}

// StoreLoaders returns, for every architecture that can take its routed
// experts from an external store (expert streaming), a loader that does.
func StoreLoaders() moe.StoreLoaders {
	return moe.StoreLoaders{
		gemma4.ModelType: withStore(gemma4.Load,
			func(s moe.Store) gemma4.LoadOptions { return gemma4.LoadOptions{Store: s} }),
		gptoss.ModelType: withStore(gptoss.Load,
			func(s moe.Store) gptoss.LoadOptions { return gptoss.LoadOptions{Store: s} }),
		qwen35moe.ModelType: withStore(qwen35moe.Load,
			func(s moe.Store) qwen35moe.LoadOptions { return qwen35moe.LoadOptions{Store: s} }),
		deepseekv4.ModelType: withStore(deepseekv4.Load,
			func(s moe.Store) deepseekv4.LoadOptions { return deepseekv4.LoadOptions{Store: s} }),
		qwen3moe.ModelType: withStore(qwen3moe.Load,
			func(s moe.Store) qwen3moe.LoadOptions { return qwen3moe.LoadOptions{Store: s} }),
	}
}

// withStore adapts an architecture's Load to a moe.StoreLoadFunc; opts
// makes its LoadOptions with the store. A failed load returns a nil
// model.Model, not a nil *Model in one.
func withStore[M model.Model, O any](load func(context.Context, string, *modelconfig.Config, kernels.Backend, O) (M, error),
	opts func(moe.Store) O) moe.StoreLoadFunc {
	return func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store moe.Store) (model.Model, error) {
		m, err := load(ctx, dir, cfg, b, opts(store))
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}
