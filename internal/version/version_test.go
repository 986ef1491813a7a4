package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		s := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}}
		if modified != "" {
			s = append(s, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return s
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"release tag", "v1.2.3", vcs(rev, "false"), "v1.2.3"},
		{"pseudo-version from the checkout", "v0.0.0-20260101120000-0123456789ab+dirty", vcs(rev, "true"), "v0.0.0-20260101120000-0123456789ab+dirty"},
		{"devel with revision", "(devel)", vcs(rev, "false"), "0123456789ab"},
		{"devel with modified tree", "(devel)", vcs(rev, "true"), "0123456789ab+dirty"},
		{"no version at all", "", nil, Devel},
		{"-buildvcs=false", "(devel)", []debug.BuildSetting{{Key: "-buildvcs", Value: "false"}}, Devel},
		{"short revision", "(devel)", vcs("abc", ""), "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/peergram/peergram", Version: tt.version}, Settings: tt.settings}
			if got := fromBuildInfo(info); got != tt.want {
				t.Errorf("fromBuildInfo = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFull(t *testing.T) {
	f := strings.Fields(Full())
	if len(f) != 3 || f[0] != String() || !strings.HasPrefix(f[1], "go1.") || !strings.Contains(f[2], "/") {
		t.Fatalf("Full() = %q, want \"<version> go1.x os/arch\"", Full())
	}
	if String() == "" || String() == "dev" {
		t.Fatalf("String() = %q", String())
	}
}
