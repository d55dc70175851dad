//go:build !unix

package qwen35moe_test

func processCPU() (float64, bool) { return 0, false }
