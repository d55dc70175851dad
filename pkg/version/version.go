// Package version reports the version of the mach binaries. It is a leaf
// package: it imports nothing from mach.
package version

import "runtime/debug"

// Version is set at link time by the release build:
//
//	-ldflags "-X github.com/maniac-ai/mach/pkg/version.Version=v1.2.3"
var Version = ""

// Commit is the VCS revision, set at link time like Version.
var Commit = ""

// String returns the version: the link-time value, else the module version
// recorded by the go command, else "devel".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	return "devel"
}

// Revision returns the VCS revision the binary was built from, or "".
func Revision() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}
