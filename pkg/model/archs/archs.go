// Package archs lists the architectures this build can load: the one place
// that imports every architecture package. Adding an architecture means a
// line here and flipping its registry.Support.Forward flag (the test below
// keeps the two in step).
package archs

import (
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
)

// Loaders returns a loader for every implemented architecture.
func Loaders() model.Loaders {
	return model.Loaders{
		qwen3moe.ModelType: qwen3moe.Loader,
	}
}
