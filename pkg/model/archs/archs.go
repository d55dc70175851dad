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
		gemma4.ModelType: func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store moe.Store) (model.Model, error) {
			m, err := gemma4.Load(ctx, dir, cfg, b, gemma4.LoadOptions{Store: store})
			if err != nil {
				return nil, err
			}
			return m, nil
		},
		gptoss.ModelType: func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store moe.Store) (model.Model, error) {
			m, err := gptoss.Load(ctx, dir, cfg, b, gptoss.LoadOptions{Store: store})
			if err != nil {
				return nil, err
			}
			return m, nil
		},
		qwen35moe.ModelType: func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store moe.Store) (model.Model, error) {
			m, err := qwen35moe.Load(ctx, dir, cfg, b, qwen35moe.LoadOptions{Store: store})
			if err != nil {
				return nil, err
			}
			return m, nil
		},
		deepseekv4.ModelType: func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store moe.Store) (model.Model, error) {
			m, err := deepseekv4.Load(ctx, dir, cfg, b, deepseekv4.LoadOptions{Store: store})
			if err != nil {
				return nil, err
			}
			return m, nil
		},
		qwen3moe.ModelType: func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store moe.Store) (model.Model, error) {
			m, err := qwen3moe.Load(ctx, dir, cfg, b, qwen3moe.LoadOptions{Store: store})
			if err != nil {
				return nil, err
			}
			return m, nil
		},
	}
}
