package cpu_test

import (
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/kernels/kerneltest"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts cpu.Options
	}{
		{"default", cpu.Options{}},
		{"one_thread", cpu.Options{Threads: 1}},
		{"four_threads", cpu.Options{Threads: 4}},
		{"reference", cpu.Options{Reference: true, Threads: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := cpu.New(tc.opts)
			defer b.Close()
			kerneltest.TestBackend(t, b)
		})
	}
}
