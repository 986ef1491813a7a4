package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bin is the peergram-relay binary built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "peergram-relay-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "peergram-relay")
	goTool := "go"
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building peergram-relay:", err)
		return 1
	}
	return m.Run()
}

type result struct {
	code           int
	stdout, stderr string
}

// relayCmd returns the binary run with args and env added to a minimal
// environment (HOME is a temporary directory so the ~/.peergram-relay
// default never touches the real one).
func relayCmd(t *testing.T, ctx context.Context, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	return cmd
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := relayCmd(t, ctx, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%v: %v", args, err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

var peerIDLine = regexp.MustCompile(`(?m)^peer ID (12D3Koo\w+)$`)

func TestInitRunSIGTERM(t *testing.T) {
	home := filepath.Join(t.TempDir(), "relay")
	res := run(t, nil, "init", "--home", home)
	m := peerIDLine.FindStringSubmatch(res.stdout)
	if res.code != 0 || m == nil {
		t.Fatalf("init: exit %d, stdout %q, stderr %q; want 0 and a peer ID", res.code, res.stdout, res.stderr)
	}
	id := m[1]

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := relayCmd(t, ctx, nil, "run", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "info")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var printed string
	select {
	case printed = <-lines:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("no address printed; stderr %q", stderr.String())
	}
	if !regexp.MustCompile(`^/ip4/127\.0\.0\.1/tcp/[1-9]\d*/p2p/` + id + `$`).MatchString(printed) {
		t.Errorf("printed address %q, want /ip4/127.0.0.1/tcp/<port>/p2p/%s", printed, id)
	}
	file, err := os.ReadFile(filepath.Join(home, "addrs"))
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != printed+"\n" {
		t.Errorf("addrs file %q, want the printed %q", file, printed+"\n")
	}

	// A second relay on the same home refuses to start.
	second := run(t, nil, "run", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0")
	if want := "another relay is already running on " + home; second.code != 1 || !strings.Contains(second.stderr, want) {
		t.Errorf("second run: exit %d, stderr %q; want 1 and %q", second.code, second.stderr, want)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines { // drain until the process closes stdout
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v; stderr %q", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(home, "addrs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("addrs file after SIGTERM: %v, want removed", err)
	}
	checkLog(t, stderr.String())
}

// checkLog checks a relay's log at --log-level info: one record per line,
// no Badger chatter, and the stop announced and confirmed.
func checkLog(t *testing.T, log string) {
	t.Helper()
	for _, want := range []string{`msg="relay running"`, `msg="relay stopping"`, `msg="relay stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	for line := range strings.Lines(log) {
		if !strings.HasPrefix(line, "time=") {
			t.Errorf("log line is not a record (a multi-line dump?): %q", line)
		}
		if strings.Contains(line, "component=badger") && !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			t.Errorf("Badger logs below Warn at --log-level info: %q", line)
		}
	}
}

func TestUsage(t *testing.T) {
	initialised := filepath.Join(t.TempDir(), "relay")
	if res := run(t, nil, "init", "--home", initialised); res.code != 0 {
		t.Fatalf("init: %+v", res)
	}
	empty := t.TempDir()
	envHomeDir := filepath.Join(t.TempDir(), "from-env")

	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"unknown command", nil, []string{"bogus"}, 2, "", `unknown command "bogus"`},
		{"unknown flag", nil, []string{"run", "--nope"}, 2, "", "unknown flag: --nope\nRun 'peergram-relay run --help' for usage."},
		{"stray argument", nil, []string{"init", "x"}, 2, "", `unknown command "x"`},
		{"not initialised", nil, []string{"run", "--home", empty}, 1, "",
			"relay home " + empty + " is not initialised: run 'peergram-relay init --home " + empty + "'"},
		{"bad listen", nil, []string{"run", "--home", initialised, "--listen", "tcp:4001"}, 2, "", `listen address "tcp:4001"`},
		{"public metrics refused", nil, []string{"run", "--home", initialised, "--metrics", "0.0.0.0:9090"}, 2, "", "not a loopback address"},
		{"bad log level", nil, []string{"run", "--home", initialised, "--log-level", "loud"}, 2, "", `--log-level "loud"`},
		{"init twice", nil, []string{"init", "--home", initialised}, 1, "", "already initialised"},
		{"home from env", []string{"PEERGRAM_RELAY_HOME=" + envHomeDir}, []string{"init"}, 0, "initialised relay home " + envHomeDir, ""},
		{"version", nil, []string{"version"}, 0, "peergram-relay ", ""},
		{"completion", nil, []string{"completion", "bash"}, 0, "__start_peergram-relay", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.env, tt.args...)
			if res.code != tt.code || !strings.Contains(res.stdout, tt.stdout) || !strings.Contains(res.stderr, tt.stderr) {
				t.Fatalf("%v: exit %d\nstdout %q\nstderr %q\nwant exit %d, stdout with %q, stderr with %q",
					tt.args, res.code, res.stdout, res.stderr, tt.code, tt.stdout, tt.stderr)
			}
			if tt.code != 0 && !strings.HasPrefix(res.stderr, "peergram-relay: ") {
				t.Errorf("stderr %q does not start with the program name", res.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(envHomeDir, "identity.key")); err != nil {
		t.Errorf("PEERGRAM_RELAY_HOME not used: %v", err)
	}
}

// TestVersionMatchesPeergram builds the peergram binary the same way as
// peergram-relay and checks that both name the same build, derived from
// the module's build information (internal/version), never a placeholder.
func TestVersionMatchesPeergram(t *testing.T) {
	peergram := filepath.Join(t.TempDir(), "peergram")
	build := exec.Command("go", "build", "-o", peergram, "../peergram")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building peergram: %v\n%s", err, out)
	}
	res := run(t, nil, "version")
	relayLine := strings.Fields(res.stdout)
	out, err := exec.Command(peergram, "version").Output()
	if err != nil {
		t.Fatalf("peergram version: %v", err)
	}
	nodeLine := strings.Fields(string(out))
	if res.code != 0 || len(relayLine) != 4 || relayLine[0] != "peergram-relay" || !strings.HasPrefix(relayLine[2], "go1.") {
		t.Fatalf("peergram-relay version printed %q (exit %d), want \"peergram-relay VERSION GO OS/ARCH\"", res.stdout, res.code)
	}
	if len(nodeLine) != 4 || nodeLine[0] != "peergram" {
		t.Fatalf("peergram version printed %q", out)
	}
	if !slices.Equal(relayLine[1:], nodeLine[1:]) {
		t.Errorf("peergram-relay says %q, peergram says %q", relayLine[1:], nodeLine[1:])
	}
	if v := relayLine[1]; v == "dev" || v == "" {
		t.Errorf("version %q is a placeholder", v)
	}
}
