package history

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
)

// TestReview21RenewRevivesLapsedName: Bob, an admin of Alice's group,
// published @quarterly. Alice demoted him: the group's registrations go
// on, but the name is no longer renewed (its signer is no admin) and its
// term ends — lookups stop answering it and another group may take it
// (publishName: a name is taken only while its stored expiry is ahead).
// Later Alice promotes Bob again and the group is registered: renewName
// finds the old record still in the store (the store's TTL is kept by
// the wall clock, rounded up to a second; the record's own expiry is what
// the relay goes by) and gives it a new term. A name that lapsed must not
// come back by a registration ("one that lapsed already … is not
// revived"): only a new publish binds it again.
func TestReview21RenewRevivesLapsedName(t *testing.T) {
	const ttl = time.Minute
	var offset atomic.Int64
	alice, bob := newMember(t), newMember(t)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, func(c *Config) {
		c.RegistrationTTL = ttl
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t)}
	gid, base := groupLog(t, alice, bob)
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	link := "peergram://join/" + hex.EncodeToString(gid[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)
	var ref [32]byte
	copy(ref[:], ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	entries := appendLog(t, base, alice,
		groupstate.Change{Kind: groupstate.KindPromote, Account: bob.acct.ID()},
		groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref})
	if err := c.Register(ctx, rh.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishName(ctx, rh.ID(), "quarterly", gid, link, bob.dev); err != nil {
		t.Fatal(err)
	}
	// 40 s on (relay clock): Bob demoted; the group is renewed, the name not.
	offset.Store(int64(40 * time.Second))
	entries = appendLog(t, entries, alice, groupstate.Change{Kind: groupstate.KindDemote, Account: bob.acct.ID()})
	if err := c.Register(ctx, rh.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	// 70 s on: the name's term (60 s from its publication) is over.
	offset.Store(int64(70 * time.Second))
	if rec, err := c.LookupName(ctx, rh.ID(), "quarterly"); err == nil {
		t.Fatalf("premise: the name answers after its term: %+v", rec)
	}
	// Bob promoted again, the group registered (as any member's node does).
	entries = appendLog(t, entries, alice, groupstate.Change{Kind: groupstate.KindPromote, Account: bob.acct.ID()})
	if err := c.Register(ctx, rh.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	if rec, err := c.LookupName(ctx, rh.ID(), "quarterly"); err == nil {
		t.Fatalf("a lapsed public name came back with a registration (no publish): lookup answers group %x again, for a new term", rec.Group[:8])
	}
	// And so another group, which could take it a moment before, cannot.
	gid2, base2 := groupLog(t, alice, bob)
	seed2 := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed2)
	var ref2 [32]byte
	copy(ref2[:], ed25519.NewKeyFromSeed(seed2).Public().(ed25519.PublicKey))
	e2 := appendLog(t, base2, alice, groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref2})
	if err := c.Register(ctx, rh.ID(), gid2, e2, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	link2 := "peergram://join/" + hex.EncodeToString(gid2[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed2)
	var se *StatusError
	if err := c.PublishName(ctx, rh.ID(), "quarterly", gid2, link2, alice.dev); errors.As(err, &se) && se.Code == CodeFull {
		t.Fatal("a lapsed name, revived by a registration, is taken again")
	}
}

// TestReview21RenewOnlyByMembers (held check): a registration signed by
// the device of a member who was removed, or of an account never in the
// group, renews nothing: the name lapses with its term.
func TestReview21RenewOnlyByMembers(t *testing.T) {
	const ttl = 3 * time.Second
	alice, bob, mallory := newMember(t), newMember(t), newMember(t)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, func(c *Config) { c.RegistrationTTL = ttl })
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t), mallory.listBytes(t)}
	gid, base := groupLog(t, alice, bob, mallory)
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	link := "peergram://join/" + hex.EncodeToString(gid[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)
	var ref [32]byte
	copy(ref[:], ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	entries := appendLog(t, base, alice,
		groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref},
		groupstate.Change{Kind: groupstate.KindRemove, Account: mallory.acct.ID()})
	if err := c.Register(ctx, rh.ID(), gid, entries, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishName(ctx, rh.ID(), "members_only", gid, link, alice.dev); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stranger := newMember(t)
	for time.Since(start) < ttl {
		for _, m := range []*member{mallory, stranger} {
			_ = c.Register(ctx, rh.ID(), gid, entries, append(lists, stranger.listBytes(t)), m.dev)
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(time.Until(start.Add(ttl + 700*time.Millisecond)))
	if rec, err := c.LookupName(ctx, rh.ID(), "members_only"); err == nil {
		t.Fatalf("registrations by a removed member and a stranger kept the name alive: %+v", rec)
	}
}
