package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/relay/directory"
)

// blackhole accepts TCP connections and never answers.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).String()
}

func randomPeer(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAttackContactStallsOutbox: one contact can hold up every message the
// node sends to anyone. The outbox delivers jobs one at a time; a job tries
// each target device directly (up to 4 s) and then each relay its signed
// directory record names (up to identity.MaxDevices devices × MaxRelays = 8
// relays × 10 s deposit timeout). A contact whose record names a peer and
// eight relays that accept TCP and never answer costs ~84 s per device per
// attempt (~90 min with 64 devices), retried every RetryMax, and every job
// queued behind it — to any contact — waits.
func TestAttackContactStallsOutbox(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()

	mallory := newFakeDevice(t, relay, nil, "mallory")
	list := mallory.publish(t, nil, mallory.cert)
	var relays []string
	for range directory.MaxRelays {
		host, port, _ := net.SplitHostPort(blackhole(t))
		relays = append(relays, fmt.Sprintf("/ip4/%s/tcp/%s/p2p/%s", host, port, randomPeer(t)))
	}
	rec, err := directory.SignRecord(mallory.dev, directory.Record{PeerID: randomPeer(t), Relays: relays, Issued: time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := mallory.dir.Publish(pctx, mallory.relay, list, mallory.prekeys.Bundle(mallory.dev), rec); err != nil {
		t.Fatal(err)
	}
	dave := newFakeDevice(t, relay, nil, "dave")
	dave.publish(t, nil, dave.cert)
	for _, c := range []*fakeDevice{mallory, dave} {
		if _, err := bob.AddContact(ctx, c.acct.ID().String(), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.Send(ctx, "mallory", "to mallory"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // Bob's outbox is now working on Mallory's job
	start := time.Now()
	if _, err := bob.Send(ctx, "dave", "to dave"); err != nil {
		t.Fatal(err)
	}
	deadline := start.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if slices.Contains(jobsTo(t, bob), dave.acct.ID().String()) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Logf("Dave's message left after %v", time.Since(start))
		return
	}
	t.Fatalf("Bob's message to Dave still queued after %v behind Mallory's", time.Since(start))
}

// jobsTo lists the recipients of the node's outbox jobs.
func jobsTo(t *testing.T, n *testNode) []string {
	var out []string
	for _, j := range jobs(t, n) {
		out = append(out, j.To.String())
	}
	return out
}
