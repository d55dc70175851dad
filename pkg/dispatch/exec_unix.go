//go:build unix

package dispatch

import (
	"fmt"
	"os"
	"syscall"

	"github.com/maniac-ai/mach/pkg/fault"
)

// Exec replaces the current process with path, so stdin, stdout, stderr,
// signals and the exit status belong to the subcommand itself. It returns
// only on failure.
func Exec(path string, args []string) error {
	argv := append([]string{path}, args...)
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fault.Mark(fmt.Errorf("run %s: %w", path, err), fault.ErrIO)
	}
	return nil
}
