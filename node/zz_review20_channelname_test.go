package node

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/history"
)

// TestReview20PublicNameLapsesWhileChannelLives: Alice's channel is
// @dailynews at her relay. Her node keeps the channel registered (every
// reregister, 12 h, or when its log grows), but a public name lives
// RegistrationTTL (30 days) from its publication and nothing renews it
// (docs/protocol.md: "the group holding a name renews it"). Here the TTL
// is 6 s and Alice's channel is registered again within it (its log grew,
// as a renewal would): Mallory must not be able to take the name of a
// channel that lives, and Bob joining @dailynews must land in Alice's.
func TestReview20PublicNameLapsesWhileChannelLives(t *testing.T) {
	const ttl = 6 * time.Second
	relay := startRelayFull(t, t.TempDir(), nil, nil, func(c *history.Config) { c.RegistrationTTL = ttl })
	aliceHome, _ := initHome(t, "alice")
	malloryHome, _ := initHome(t, "mallory")
	bobHome, _ := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	mallory := startNode(t, malloryHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	ch, err := alice.CreateChannel(ctx, "Daily news")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.PublishChannelName(ctx, ch.ID, "dailynews"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, ch.ID, "the real news"); err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	time.Sleep(ttl / 3)
	// Alice's channel lives on: its log grows and her node registers it
	// again within the term (as it does every 12 hours of 30 days).
	// (Review 20 registered it again only after the term, when the relay
	// had forgotten the channel itself — and a name with it; what it
	// found is that nothing renewed the name of a channel kept
	// registered: the relay now renews a group's name with the group.)
	if _, err := alice.CreateInvite(ctx, ch.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	alice.wakeHistory()
	c := history.NewClient(bob.host)
	raw, _ := hex.DecodeString(ch.ID)
	gid := [32]byte(raw)
	want := int(alice.groupState(gid).Seq) + 1
	eventually(t, "Alice's channel registered again at the relay, within the TTL", func() (bool, error) {
		entries, _, err := c.Log(ctx, relay.h.ID(), gid)
		return err == nil && len(entries) == want, err
	})
	time.Sleep(time.Until(published.Add(ttl + time.Second)))
	if g, err := alice.Group(ctx, ch.ID); err != nil || g.PublicName != "dailynews" {
		t.Fatalf("Alice's channel: %+v (%v)", g, err)
	}
	fake, err := mallory.CreateChannel(ctx, "Daily news")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.SendGroup(ctx, fake.ID, "fake news"); err != nil {
		t.Fatal(err)
	}
	_, perr := mallory.PublishChannelName(ctx, fake.ID, "dailynews")
	joined, jerr := bob.JoinGroup(ctx, "@dailynews")
	switch {
	case perr == nil && jerr == nil && joined.ID == fake.ID:
		time.Sleep(2 * time.Second)
		t.Fatalf("Alice's live channel lost @dailynews (never renewed): Mallory took it and Bob, joining @dailynews, subscribed to Mallory's channel (posts %q); Alice's node still shows public_name %q",
			groupTexts(t, bob, fake.ID), "dailynews")
	case perr == nil:
		t.Fatalf("Mallory took the name of Alice's live channel (Bob's join: %+v, %v)", joined.ID, jerr)
	case !errors.Is(perr, chat.ErrInvalid):
		t.Fatalf("Mallory's publish: %v", perr)
	}
	if jerr != nil || joined.ID != ch.ID {
		t.Fatalf("Bob joining @dailynews: %+v (%v)", joined, jerr)
	}
	eventually(t, "Alice's posts at Bob", func() (bool, error) {
		return slices.Contains(groupTexts(t, bob, ch.ID), "the real news"), nil
	})
}
