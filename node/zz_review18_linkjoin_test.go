package node

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
)

// TestReview18LinkJoinOverAMembershipStoredMeanwhile (FINDING): a join
// by link checks that this account is not a member (findGroup and the
// in-memory state) once, outside any transaction, before it fetches the
// group's log from a relay (up to 30 s per relay). A log that makes the
// account a member, stored meanwhile by another path (here: a fetched
// log in which Alice, a contact, added Bob — applyFetched, staged), is
// then deleted whole by clearLogOutside (its first transaction deletes
// a held group with no check: first=true) and replaced by the relay's
// log with Bob's join on it: the add Bob held is gone from his store,
// his join is published on a fork of it. The commit claims "a path that
// stores or extends the group meanwhile is never overwritten or
// deleted by a staging"; for the link join it is (the non-staged path
// does the same with clearGroupLog in its keeping transaction).
//
// The link names a relay that holds the fetch until Bob holds the
// group, then fails it; Bob's home relay answers next.
//
// Fix: check membership inside the transactions that clear and keep —
// clearLogOutside's first transaction (and the non-staged keeping
// transaction) load the held log and refuse (chat.ErrInvalid, "a member
// already") if this account is a member of it, or if it is not the log
// the join began from.
func TestReview18LinkJoinOverAMembershipStoredMeanwhile(t *testing.T) {
	// (A log over a transaction is staged by the join; a short one is
	// written by the keeping transaction alone: both must check.)
	for _, pins := range []int{2500, 20} {
		t.Run(fmt.Sprintf("%d entries", pins+1), func(t *testing.T) { r18LinkJoinRace(t, pins) })
	}
}

func r18LinkJoinRace(t *testing.T, pins int) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	id := r12NewGroup(t, alice, "link race")
	writePins(t, alice, id, pins)
	inv, err := alice.CreateInvite(ctx, hex.EncodeToString(id[:]), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	held := alice.reloadGroup(t, id)
	var raws [][]byte
	for _, e := range held.Entries(0) {
		b, _ := e.MarshalBinary()
		raws = append(raws, b)
	}
	c := history.NewClient(bob.host)
	eventually(t, "the relay holding Alice's log", func() (bool, error) {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		entries, _, err := c.Log(fctx, relay.h.ID(), id)
		return len(entries) == len(raws), err
	})

	// A relay that holds a fetch until released, then fails it.
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	fetching, release := make(chan struct{}, 16), make(chan struct{})
	h.SetStreamHandler(history.ProtocolID, func(s network.Stream) {
		fetching <- struct{}{}
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		_ = s.Reset()
	})
	base, _, _ := strings.Cut(inv.Link, "?")
	link := base + "?relay=" + url.QueryEscape(fmt.Sprintf("%s/p2p/%s", h.Addrs()[0], h.ID()))

	type result struct {
		err error
	}
	joined := make(chan result, 1)
	go func() {
		_, err := bob.JoinGroup(ctx, link)
		joined <- result{err}
	}()
	select {
	case <-fetching:
	case r := <-joined:
		t.Fatalf("the join ended before fetching: %v", r.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the join never asked the link's relay")
	}
	// Meanwhile: Alice adds Bob (an entry her relay has not seen yet) and
	// Bob's node takes the log with it (a fetch: applyFetched, staged).
	add, addRaw := alice.r12Owner(t, held.Head(), groupstate.Change{Kind: groupstate.KindAdd, Account: bob.keys.account.ID()})
	whole := append(append([][]byte(nil), raws...), addRaw)
	if err := bob.applyFetched(id, alice.keys.account.ID(), payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: whole, accepted: true}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := holdsEntry(bob, id, add)(); !ok {
		t.Fatal("Bob does not hold the log that adds him: the test's premise")
	}
	close(release)
	var r result
	select {
	case r = <-joined:
	case <-time.After(25 * time.Second):
		t.Fatal("the join did not end")
	}
	l, err := bob.r12Replayed(id)
	if err != nil {
		t.Fatalf("Bob's log after the join (%v): %v", r.err, err)
	}
	t.Logf("the join: %v; Bob's log: head %d (%v by %s)", r.err, l.Head().Seq, l.Head().Change.Kind, l.Head().Author())
	if !holds(l, add) {
		t.Fatalf("the join (err %v) deleted the log Bob held as a member since it began: entry %d is now a %v, not Alice's add",
			r.err, add.Seq, l.At(add.Seq).Change.Kind)
	}
}
