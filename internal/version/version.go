// Package version names the build of Peergram that is running. Both
// binaries, peergram and peergram-relay, print it, so a user and a relay
// operator can tell whether they run the same code, and a bug report says
// which code it is about.
//
// The version comes from the build information the Go toolchain embeds
// (runtime/debug.ReadBuildInfo), not from a variable set with -ldflags: a
// binary built by "go install module@version" or "go build" in a checkout
// names itself, and no release step can forget to stamp one of the two
// binaries and not the other. In order of preference it is the main
// module's version (a release tag, or the pseudo-version Go 1.24+ derives
// from the checkout's commit), else the VCS revision, else Devel (a build
// with -buildvcs=false outside a tagged module, as CI makes).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Devel is the version of a build that carries neither a module version
// nor a VCS revision.
const Devel = "devel"

// revLen is how many hex digits of a VCS revision are shown, as git's
// abbreviated hashes and Go's pseudo-versions do.
const revLen = 12

// String returns the version of the running binary: the main module's
// version ("v1.2.3", "v0.0.0-20260101120000-abcdef123456+dirty"), else the
// VCS revision ("abcdef123456", "+dirty" if the tree was modified), else
// Devel.
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Devel
	}
	return fromBuildInfo(info)
}

// Full returns String followed by the Go version and the platform, the
// line both binaries print for their version command:
// "v1.2.3 go1.26.8 linux/amd64".
func Full() string {
	return fmt.Sprintf("%s %s %s/%s", String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// fromBuildInfo picks the version out of info (see String).
func fromBuildInfo(info *debug.BuildInfo) string {
	// "(devel)" is what the toolchain writes for a main module it has no
	// version for.
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(revLen, len(s.Value))]
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return Devel
	case dirty:
		return rev + "+dirty"
	}
	return rev
}
