package node

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peergram/peergram/node/localapi"
)

// TestHomeIsPrivate: the home ends up closed to group and others, even if
// it existed with wider permissions.
func TestHomeIsPrivate(t *testing.T) {
	home := filepath.Join(t.TempDir(), "h")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(home, "x"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(home)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("home mode %v, want 0700", fi.Mode().Perm())
	}
}

// readOnly makes dir read-only for this process: a read-only tmpfs mount
// when running as root (root ignores permission bits), else mode 0500.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		return
	}
	if out, err := exec.Command("mount", "--bind", "-o", "ro", dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("bind-mount read-only: %v: %s", err, out)
	}
	// A bind mount ignores "ro" on its first step on older kernels: remount.
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		exec.Command("umount", dir).Run()
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
}

// TestReadOnlyHome: init and daemon on a home the node cannot write give
// one clear sentence (ErrHomeNotWritable), not a store error dump.
func TestReadOnlyHome(t *testing.T) {
	t.Run("init", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "h")
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		readOnly(t, home)
		_, err := Init(home, "x")
		if !errors.Is(err, ErrHomeNotWritable) || strings.Contains(err.Error(), "\\n") {
			t.Fatalf("init on a read-only home: %v", err)
		}
	})
	t.Run("daemon", func(t *testing.T) {
		home, _ := initHome(t, "ro")
		readOnly(t, home)
		n, err := New(Config{Home: home, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, DisableMDNS: true})
		if err != nil {
			t.Fatal(err)
		}
		err = n.Run(context.Background())
		if !errors.Is(err, ErrHomeNotWritable) || strings.Contains(err.Error(), "\\n") {
			t.Fatalf("daemon on a read-only home: %v", err)
		}
	})
}

// TestAPITokenAndSocket: the daemon serves its API on a Unix socket in the
// home (0600) as well as on loopback TCP, and writes a new token at every
// start: a token from before a restart is refused.
func TestAPITokenAndSocket(t *testing.T) {
	home, _ := initHome(t, "a")
	readToken := func() string {
		b, err := os.ReadFile(filepath.Join(home, fileToken))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	n := startNode(t, home)
	first := readToken()
	sock := filepath.Join(home, fileSocket)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v", fi, err)
	}
	ctx := context.Background()
	c := localapi.NewUnixClient(sock, first)
	defer c.Close()
	if id, err := c.Identity(ctx); err != nil || id.AccountID != n.keys.account.ID().String() {
		t.Fatalf("identity over the socket: %+v, %v", id, err)
	}
	n.stop()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after stop: %v", err)
	}
	n = startNode(t, home)
	second := readToken()
	if second == first {
		t.Fatal("the token did not change across a restart")
	}
	old := localapi.NewClient(n.APIURL(), first)
	defer old.Close()
	if err := old.Health(ctx); !errors.Is(err, localapi.ErrUnauthorized) {
		t.Fatalf("old token after a restart: %v, want unauthorized", err)
	}
	cur := localapi.NewUnixClient(sock, second)
	defer cur.Close()
	if err := cur.Health(ctx); err != nil {
		t.Fatalf("new token: %v", err)
	}
}
