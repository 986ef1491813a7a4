package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestAttackTokenToStaleAPIDuringStartup: the CLI takes "a daemon holds
// DIR/daemon.lock" as proof that DIR/api is that daemon's. It is not while
// a daemon starts: node.Run takes the lock, opens the store, builds the
// host, writes the new token, starts listening — and only then replaces
// DIR/api, which until that moment still names the port of the daemon
// killed with -9 (possibly another local user's listener now). A CLI that
// polls in that window ('peergram wait' does, every 100 ms; 'send --wait'
// too) on a home without a socket (path too long for one) sends the new
// token to the squatter. Here the test plays the starting daemon: it holds
// the lock and has written the new token, not yet DIR/api.
func TestAttackTokenToStaleAPIDuringStartup(t *testing.T) {
	c := newCLI(t)
	var seen atomic.Int32
	squatter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			seen.Add(1)
		}
		w.Write([]byte(`[]`))
	}))
	defer squatter.Close()
	writeFile(t, filepath.Join(c.home, "api"), squatter.URL+"\n") // left by the daemon killed with -9
	lock, err := os.OpenFile(filepath.Join(c.home, "daemon.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(c.home, "token"), testToken+"\n") // the new daemon's token
	c.run("contacts", "list", "--home", c.home)
	if n := seen.Load(); n != 0 {
		t.Fatalf("the starting daemon's new token was sent to the squatter on the stale DIR/api port (%d requests)", n)
	}
}
