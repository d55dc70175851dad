package moe

import (
	"context"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
)

// StoreLoadFunc loads an architecture whose routed experts come from store
// (expert streaming) instead of being bound from the checkpoint. The model
// closes the store when it is closed.
type StoreLoadFunc func(ctx context.Context, dir string, cfg *modelconfig.Config, b kernels.Backend, store Store) (model.Model, error)

// StoreLoaders maps config.json model_type to the architecture's
// StoreLoadFunc (model/archs.StoreLoaders has every architecture of this
// build that can take one).
type StoreLoaders map[string]StoreLoadFunc
