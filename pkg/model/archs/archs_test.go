package archs_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/stretchr/testify/require"
)

// The registry claims a forward pass exactly for the architectures this
// build can load.
func TestLoadersMatchRegistry(t *testing.T) {
	loaders := archs.Loaders()
	reg := registry.Default()
	for _, a := range reg.All() {
		_, has := loaders[a.ModelType]
		require.Equal(t, a.Support.Forward, has, "%s: registry Support.Forward=%v but loader present=%v", a.ModelType, a.Support.Forward, has)
	}
	for mt := range loaders {
		_, ok := reg.Lookup(mt)
		require.True(t, ok, "loader for unregistered model_type %q", mt)
	}
}

// Every architecture that can stream its experts can also be loaded, and
// the registry claims streaming exactly for those.
func TestStoreLoadersAreLoaders(t *testing.T) {
	loaders := archs.Loaders()
	stores := archs.StoreLoaders()
	for mt := range stores {
		_, ok := loaders[mt]
		require.True(t, ok, "store loader for %q without a loader", mt)
	}
	for _, a := range registry.Default().All() {
		_, has := stores[a.ModelType]
		require.Equal(t, a.Support.Streaming, has, "%s: registry Support.Streaming=%v but store loader present=%v", a.ModelType, a.Support.Streaming, has)
	}
}
