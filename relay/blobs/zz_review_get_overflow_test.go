package blobs

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/peergram/peergram/crypto/identity"
)

// TestReviewHelperBlobServer is not a test: run by
// TestReviewGetRangeOverflow as a separate process, it serves a blob
// store (the relay's, or with REVIEW_READONLY a node's read-only file
// store) and prints its address, so that a crash is observed from outside.
func TestReviewHelperBlobServer(t *testing.T) {
	if os.Getenv("REVIEW_BLOB_HELPER") != "1" {
		t.Skip("helper process only")
	}
	var mod func(*Config)
	if os.Getenv("REVIEW_READONLY") == "1" {
		mod = func(c *Config) { c.ReadOnly = true; c.Protocol = "/peergram/file/1.0.0" }
	}
	r := startRelay(t, mod)
	if os.Getenv("REVIEW_READONLY") == "1" {
		// The node's own file: a recipient holds the token.
		var tok Token
		copy(tok[:], []byte("review-token-review-token-review"))
		if _, err := r.srv.Add(tok, identity.AccountID{1}, []byte("chunk ciphertext of a sent file")); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("ADDR %s/p2p/%s\n", r.h.Addrs()[0], r.h.ID())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}

func reviewSpawn(t *testing.T, readOnly bool) (*exec.Cmd, peer.AddrInfo, *strings.Builder, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReviewHelperBlobServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REVIEW_BLOB_HELPER=1")
	if readOnly {
		cmd.Env = append(cmd.Env, "REVIEW_READONLY=1")
	}
	stdin, _ := cmd.StdinPipe()
	t.Cleanup(func() { stdin.Close() })
	out, _ := cmd.StdoutPipe()
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "ADDR ") {
			addr = strings.TrimPrefix(l, "ADDR ")
			break
		}
	}
	if addr == "" {
		t.Fatalf("helper printed no address; stderr: %s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ma, err := multiaddr.NewMultiaddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(ma)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, *ai, stderr, exited
}

// TestReviewGetRangeOverflow: Get's range end is Offset+Length computed
// in uint64; Offset=1, Length=2^64-1 wraps to 0, which passes the
// "end < size" test, and b[1:0] panics in the stream handler — no
// recover in serve or libp2p — so the whole relay process dies. Anyone
// can do it: upload a blob of one's own (any fresh account) with one's
// own token, then Get it with that range.
func TestReviewGetRangeOverflow(t *testing.T) {
	_, ai, stderr, exited := reviewSpawn(t, false)
	h := newHost(t)
	if err := h.Connect(context.Background(), ai); err != nil {
		t.Fatal(err)
	}
	u := newUserOn(t, h) // a fresh account, as any peer can make
	tok := token(t)
	data := []byte("mallory's own blob")
	if err := u.c.Put(context.Background(), ai.ID, u.dev, u.cert, tok, data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, gerr := u.c.Get(ctx, ai.ID, tok, sha256.Sum256(data), 1, math.MaxUint64)
	select {
	case err := <-exited:
		t.Fatalf("ATTACK WORKS: the relay process died after a Get with offset 1, length 2^64-1 (get: %v; exit: %v)\n%s",
			gerr, err, tail(stderr.String(), 1200))
	case <-time.After(3 * time.Second):
	}
	t.Logf("relay still up; get answered %v", gerr)
}

// TestReviewGetRangeOverflowNode: the same against a node's read-only
// file store (/peergram/file/1.0.0): any recipient of one of the node's
// files (a member of a group it posted a file in) kills the sender's node.
func TestReviewGetRangeOverflowNode(t *testing.T) {
	_, ai, stderr, exited := reviewSpawn(t, true)
	h := newHost(t)
	if err := h.Connect(context.Background(), ai); err != nil {
		t.Fatal(err)
	}
	c := NewClientFor(h, "/peergram/file/1.0.0")
	var tok Token
	copy(tok[:], []byte("review-token-review-token-review"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hash := sha256.Sum256([]byte("chunk ciphertext of a sent file"))
	if _, _, err := c.Get(ctx, ai.ID, tok, hash, 0, 0); err != nil {
		t.Fatalf("a normal get: %v", err)
	}
	_, _, gerr := c.Get(ctx, ai.ID, tok, hash, 1, math.MaxUint64)
	select {
	case err := <-exited:
		t.Fatalf("ATTACK WORKS: the node's file server process died (get: %v; exit: %v)\n%s", gerr, err, tail(stderr.String(), 1200))
	case <-time.After(3 * time.Second):
	}
	t.Logf("node still up; get answered %v", gerr)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// newUserOn is newUser with a given host (not connected to a relay).
func newUserOn(t *testing.T, h host.Host) *user {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "d", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	return &user{acct, dev, cert, NewClient(h)}
}
