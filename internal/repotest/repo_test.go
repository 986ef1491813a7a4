package repotest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/peergram/peergram"

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestPackagesHaveDocComments(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment (add a doc.go saying what it is for and why)", p.ImportPath)
		}
	}
}

// area is the top-level directory of one of our packages.
func area(path string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	top, _, _ := strings.Cut(rest, "/")
	return top
}

// allowed says which areas each area may import.
var allowed = map[string][]string{
	"cmd":      {"cmd", "node", "relay", "calls", "crypto", "storage", "internal"},
	"node":     {"node", "relay", "calls", "crypto", "storage"},
	"relay":    {"relay", "calls", "crypto", "storage"},
	"calls":    {"calls", "crypto", "storage"},
	"crypto":   {"crypto"},
	"storage":  {"storage"},
	"internal": {"internal", "cmd", "node", "relay", "calls", "crypto", "storage"},
}

func checkImport(from, to string) string {
	fa, ta := area(from), area(to)
	ok := false
	for _, a := range allowed[fa] {
		if a == ta {
			ok = true
		}
	}
	switch {
	case !ok:
		return "crosses the dependency direction"
	case ta == "cmd" && fa != "internal":
		return "imports cmd"
	case strings.HasPrefix(from, to+"/") && !strings.HasSuffix(from, "test"):
		// Test-helper packages (relaytest, localapitest) start the thing
		// they help test, like net/http/httptest.
		return "a subpackage imports its parent"
	case fa == "node" && to == module+"/relay":
		return "node may use relay protocol clients (relay/...), not the relay wiring"
	}
	return ""
}

func TestDependencyDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if why := checkImport(p.ImportPath, imp); why != "" {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
}

// TestCheckImport keeps the rule checker itself honest.
func TestCheckImport(t *testing.T) {
	tests := []struct {
		from, to string
		bad      bool
	}{
		{"cmd/peergram", "node", false},
		{"node", "relay/mailbox", false},
		{"node", "relay", true},
		{"relay", "node", true},
		{"crypto/sealed", "storage", true},
		{"crypto/sealed", "crypto/ratchet", false},
		{"storage", "crypto/identity", true},
		{"node/chat", "node", true},
		{"relay/mailbox", "relay", true},
		{"relay/relaytest", "relay", false},
		{"node", "cmd/peergram", true},
		{"calls", "node", true},
	}
	for _, tt := range tests {
		why := checkImport(module+"/"+tt.from, module+"/"+tt.to)
		if (why != "") != tt.bad {
			t.Errorf("%s → %s: got %q, want bad=%v", tt.from, tt.to, why, tt.bad)
		}
	}
}
