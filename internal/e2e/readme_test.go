package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock returns the first ```sh block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i := strings.Index(s, heading)
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	if start < 0 {
		t.Fatal("no sh block after the heading")
	}
	s = s[start+len("```sh\n"):]
	end := strings.Index(s, "```")
	if end < 0 {
		t.Fatal("unterminated sh block")
	}
	return s[:end]
}

// TestReadmeWalkthrough runs the README's walkthrough pasted as one block,
// as a newcomer would: every line at once, no pauses. Its build line
// builds into the test's directory instead of the repository.
func TestReadmeWalkthrough(t *testing.T) {
	e := build(t)
	block := readmeBlock(t, "## Two people, one relay, one machine")
	const buildLine = "go build -o bin/ ./cmd/...\n"
	if !strings.HasPrefix(block, buildLine) {
		t.Fatalf("the walkthrough no longer starts with %q", buildLine)
	}
	block = strings.TrimPrefix(block, buildLine)
	work := filepath.Dir(e.bin) // holds bin/
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", block)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so the test can stop what the block left running
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("walkthrough failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "hello bob") {
		t.Fatalf("Bob's chat does not show the message:\n%s", out)
	}
	// The last command prints Alice's chat as JSON: delivered (or read).
	j := strings.LastIndex(out, "[")
	var msgs []struct {
		Text   string `json:"text"`
		Status string `json:"status"`
	}
	if j < 0 || json.Unmarshal([]byte(out[j:]), &msgs) != nil || len(msgs) != 1 || msgs[0].Text != "hello bob" || (msgs[0].Status != "delivered" && msgs[0].Status != "read") {
		t.Fatalf("Alice's chat as JSON:\n%s", out)
	}
}
