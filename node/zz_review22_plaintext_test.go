package node

// Outside review 22: what a relay keeps of a group's features.

import (
	"context"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
)

// TestReview22HeldNoPlaintextInRelayForFeatures: a poll (question and
// options), a vote, a reply, a pin, a closed poll and a description
// change with the marker, posted while Bob is offline so that the relay's
// history carries them; Bob gets them from there. No file under the
// relay's directory holds the marker. (Held.)
func TestReview22HeldNoPlaintextInRelayForFeatures(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Features")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		_, err := bob.Group(ctx, g.ID)
		return err == nil, nil
	})
	raw, _ := hex.DecodeString(g.ID)
	eventually(t, "the relay in the group's topic", func() (bool, error) {
		return slices.Contains(alice.groups.net.Peers(groupstate.GroupID(raw)), relay.h.ID()), nil
	})
	first, err := alice.SendGroup(ctx, g.ID, "plain first")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "first at Bob", func() (bool, error) { return len(groupTexts(t, bob, g.ID)) == 1, nil })
	bob.stop()
	poll, err := alice.CreatePoll(ctx, g.ID, chat.PollSpec{Question: "Q " + testMarker, Options: []string{"A " + testMarker, "B " + testMarker}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.VotePoll(ctx, g.ID, poll.ID, []int{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.PostGroup(ctx, g.ID, chat.GroupPost{Text: "reply " + testMarker, ReplyTo: first.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.PinGroupMessage(ctx, g.ID, first.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.ClosePoll(ctx, g.ID, poll.ID); err != nil {
		t.Fatal(err)
	}
	desc := "description " + testMarker
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Description: &desc}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "the poll and the reply at Bob", func() (bool, error) { return len(groupTexts(t, bob, g.ID)) >= 3, nil })
	time.Sleep(time.Second)
	relay.close()
	assertNoMarker(t, relayDir)
}
