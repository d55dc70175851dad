//go:build unix

package qwen35moe_test

import "syscall"

// processCPU returns the CPU time the process has used (user + system), in
// seconds: on a shared machine it measures the work a step does when the
// wall clock also measures other processes.
func processCPU() (float64, bool) {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0, false
	}
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9, true
}
