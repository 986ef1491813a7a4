package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

// review20Channel starts Alice (a channel's owner), Bob (subscribed by
// link) and Carol (Bob's contact), and has Alice post once.
func review20Channel(t *testing.T, relay *testRelay) (alice, bob, carol *testNode, ch chat.Group, post chat.GroupMessage, bobInfo, carolInfo Info) {
	t.Helper()
	aliceHome, _ := initHome(t, "alice")
	var bobHome, carolHome string
	bobHome, bobInfo = initHome(t, "bob")
	carolHome, carolInfo = initHome(t, "carol")
	alice = startNode(t, aliceHome, relay.addr)
	bob = startNode(t, bobHome, relay.addr)
	carol = startNode(t, carolHome, relay.addr)
	addEachOther(t, bob, carol, bobInfo, carolInfo)
	ctx := context.Background()
	ch, err := alice.CreateChannel(ctx, "News")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := alice.CreateInvite(ctx, ch.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob subscribes", func() (bool, error) {
		_, err := bob.JoinGroup(ctx, inv.Link)
		return err == nil, nil
	})
	if post, err = alice.SendGroup(ctx, ch.ID, "the real headline"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the post at Bob", func() (bool, error) {
		return slices.Contains(groupTexts(t, bob, ch.ID), "the real headline"), nil
	})
	return alice, bob, carol, ch, post, bobInfo, carolInfo
}

// TestReview20ForwardOriginUnverifiable: Bob forwards Alice's channel
// post to Carol, then sends her a "forward" of the same channel that he
// typed himself, with other words. What Carol's node shows of the two
// must differ beyond the text (an origin it checked, or at least a mark
// that one is a forward): otherwise any contact can put words in a
// channel's mouth, and Carol cannot tell.
func TestReview20ForwardOriginUnverifiable(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	_, bob, carol, ch, post, _, _ := review20Channel(t, relay)
	ctx := context.Background()
	if _, err := bob.ForwardGroupMessage(ctx, ch.ID, post.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "carol", "Forwarded from News:\nthe fake headline"); err != nil {
		t.Fatal(err)
	}
	var msgs []chat.Message
	eventually(t, "both at Carol", func() (bool, error) {
		var err error
		msgs, err = carol.Messages(ctx, "bob", false)
		return err == nil && len(msgs) == 2, err
	})
	strip := func(m chat.Message) map[string]any {
		raw, _ := json.Marshal(m)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		for _, k := range []string{"id", "chat", "from", "outgoing", "text", "sent_at", "received_at", "status", "seq", "from_name", "from_contact", "warning"} {
			delete(out, k)
		}
		return out
	}
	genuine, forged := strip(msgs[0]), strip(msgs[1])
	gj, _ := json.Marshal(genuine)
	fj, _ := json.Marshal(forged)
	if string(gj) == string(fj) {
		t.Fatalf("Carol's node shows a genuine forward (%q) and one Bob typed (%q) alike: nothing but the text claims the origin (%s)",
			msgs[0].Text, msgs[1].Text, gj)
	}
}

// TestReview20ForwardToContactCapturedByGroupTitle: Mallory, a contact of
// Bob, makes a group titled "carol" (Bob's alias of his contact Carol)
// and adds Bob. Bob forwards a channel post "to carol", meaning his
// contact: it must reach Carol's chat, not Mallory's group.
func TestReview20ForwardToContactCapturedByGroupTitle(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	_, bob, carol, ch, post, bobInfo, carolInfo := review20Channel(t, relay)
	ctx := context.Background()
	malloryHome, malloryInfo := initHome(t, "mallory")
	mallory := startNode(t, malloryHome, relay.addr)
	addEachOther(t, bob, mallory, bobInfo, malloryInfo)
	for _, title := range []string{carolInfo.AccountID, "carol"} {
		trap, err := mallory.CreateGroup(ctx, title)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mallory.AddGroupMembers(ctx, trap.ID, []string{"bob"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the trap group at Bob, titled", func() (bool, error) {
			g, err := bob.Group(ctx, trap.ID)
			return err == nil && g.Title == title, nil
		})
		if _, err := bob.ForwardGroupMessage(ctx, ch.ID, post.ID, title); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if got := groupTexts(t, mallory, trap.ID); len(got) > 0 {
			t.Fatalf("Bob forwarded to his contact %q, and the post went to Mallory's group titled %q: %q", title, title, got)
		}
		eventually(t, "the forward in Carol's chat", func() (bool, error) {
			msgs, err := carol.Messages(ctx, "bob", false)
			if err != nil && !errors.Is(err, chat.ErrUnknownContact) {
				return false, err
			}
			return len(msgs) > 0, nil
		})
	}
}
