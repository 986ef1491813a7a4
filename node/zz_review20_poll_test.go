package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

// review20ThreeInGroup starts Alice, Bob and Carol (contacts of each
// other) with a Sender Keys group of the three made by Alice.
func review20ThreeInGroup(t *testing.T, relay *testRelay, mod func(*Config)) (alice, bob, carol *testNode, g chat.Group) {
	t.Helper()
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	carolHome, carolInfo := initHome(t, "carol")
	alice = startNodeWith(t, aliceHome, mod, relay.addr)
	bob = startNodeWith(t, bobHome, mod, relay.addr)
	carol = startNodeWith(t, carolHome, mod, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	addEachOther(t, alice, carol, aliceInfo, carolInfo)
	addEachOther(t, bob, carol, bobInfo, carolInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Polls")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{alice, bob, carol} {
		eventually(t, "the group at every member", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 3, nil
		})
	}
	return alice, bob, carol, g
}

// TestReview20PollBackdatedVoteAfterClose: Alice's poll gets Bob's vote,
// then Alice closes it and every node shows it closed with one voter.
// Carol, seeing the close, votes anyway with her envelope dated a few
// seconds before the close (a modified client; the gossip validators take
// times up to 2 minutes in the past, relay Store up to the retention).
// The close must freeze the results: "votes sent after do not count".
func TestReview20PollBackdatedVoteAfterClose(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	alice, bob, carol, g := review20ThreeInGroup(t, relay, nil)
	ctx := context.Background()
	pm, err := alice.CreatePoll(ctx, g.ID, chat.PollSpec{Question: "Lunch?", Options: []string{"pizza", "sushi"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the poll", func() (bool, error) {
			_, err := n.GroupPoll(ctx, g.ID, pm.ID)
			return err == nil, nil
		})
	}
	// Carol's chain reaches everyone before the close (a text of hers),
	// so that her late vote is not held waiting for it.
	if _, err := carol.SendGroup(ctx, g.ID, "carol is here"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.VotePoll(ctx, g.ID, pm.ID, []int{0}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's vote and Carol's text at Alice", func() (bool, error) {
		p, err := alice.GroupPoll(ctx, g.ID, pm.ID)
		return err == nil && p.Voters == 1 && slices.Contains(groupTexts(t, alice, g.ID), "carol is here"), nil
	})
	time.Sleep(3 * time.Second) // Carol's last post well before the close
	if _, err := alice.ClosePoll(ctx, g.ID, pm.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the close at Carol", func() (bool, error) {
		p, err := carol.GroupPoll(ctx, g.ID, pm.ID)
		return err == nil && p.Closed, nil
	})
	before, _ := alice.GroupPoll(ctx, g.ID, pm.ID)
	if _, err := carol.VotePoll(ctx, g.ID, pm.ID, []int{1}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("Carol's own node let her vote in a closed poll: %v", err)
	}
	// Past her own node's check, dated 2 s before now: the close is
	// less than 2 s old, so the vote claims to precede it.
	carol.setClock(-2 * time.Second)
	if _, err := carol.postGroup(ctx, g.ID, &groupBody{Vote: &voteBody{Poll: pm.ID, Options: []int{1}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.SendGroup(ctx, g.ID, "after my late vote"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{alice, bob} {
		eventually(t, "Carol's later text", func() (bool, error) {
			return slices.Contains(groupTexts(t, n, g.ID), "after my late vote"), nil
		})
		p, err := n.GroupPoll(ctx, g.ID, pm.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Voters != before.Voters || p.Options[1].Votes != 0 {
			t.Fatalf("a vote cast after the poll was closed counts: voters %d → %d, sushi %d (before: %+v, after: %+v)",
				before.Voters, p.Voters, p.Options[1].Votes, before, p)
		}
	}
}

// TestReview20PollMalformedPayloads: bodies past the sender's own checks
// — an 11-option poll, an empty question, duplicate, negative and
// out-of-range vote indexes, two options in a single-choice poll, a
// close of a text message, a vote naming another group's poll — count
// for nothing at the other members, and the tally is the same there.
func TestReview20PollMalformedPayloads(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	alice, bob, carol, g := review20ThreeInGroup(t, relay, nil)
	ctx := context.Background()
	other, err := alice.CreateGroup(ctx, "Elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	op, err := alice.CreatePoll(ctx, other.ID, chat.PollSpec{Question: "Other?", Options: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := alice.CreatePoll(ctx, g.ID, chat.PollSpec{Question: "Lunch?", Options: []string{"pizza", "sushi"}})
	if err != nil {
		t.Fatal(err)
	}
	txt, err := alice.SendGroup(ctx, g.ID, "a text")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poll at Bob", func() (bool, error) {
		_, err := bob.GroupPoll(ctx, g.ID, pm.ID)
		return err == nil && slices.Contains(groupTexts(t, bob, g.ID), "a text"), nil
	})
	if _, err := carol.VotePoll(ctx, g.ID, pm.ID, []int{1}); err != nil {
		t.Fatal(err)
	}
	opts11 := `"` + strings.Repeat(`x","`, 10) + `x"`
	for _, raw := range []string{
		`{"poll":{"q":"Eleven?","o":[` + opts11 + `]}}`,
		`{"poll":{"q":"   ","o":["a","b"]}}`,
		`{"poll":{"q":"Long option?","o":["a","` + strings.Repeat("y", 101) + `"]}}`,
		`{"vote":{"p":"` + pm.ID + `","o":[0,0]}}`,
		`{"vote":{"p":"` + pm.ID + `","o":[-1]}}`,
		`{"vote":{"p":"` + pm.ID + `","o":[1e3]}}`,
		`{"vote":{"p":"` + pm.ID + `","o":["0"]}}`,
		`{"vote":{"p":"` + strings.ToUpper(pm.ID) + `","o":[0]}}`,
		`{"close":"` + txt.ID + `"}`,
		`{"close":"` + pm.ID + `","vote":{"p":"` + pm.ID + `","o":[0]}}`,
		`{"vote":{"p":"` + op.ID + `","o":[0]}}`,
	} {
		if _, err := bob.sealGroup(ctx, g.ID, &groupBody{}, []byte(raw), nil); err != nil {
			t.Fatal(err)
		}
	}
	// A valid vote first, then one with two options in a single-choice
	// poll (his latest: it replaces his vote and counts for nothing).
	if _, err := bob.postGroup(ctx, g.ID, &groupBody{Vote: &voteBody{Poll: pm.ID, Options: []int{0}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.postGroup(ctx, g.ID, &groupBody{Vote: &voteBody{Poll: pm.ID, Options: []int{0, 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.postGroup(ctx, g.ID, &groupBody{Vote: &voteBody{Poll: pm.ID, Options: []int{9}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroup(ctx, g.ID, "bob done"); err != nil {
		t.Fatal(err)
	}
	var views []chat.Poll
	for _, n := range []*testNode{alice, carol} {
		eventually(t, "Bob's last text", func() (bool, error) {
			return slices.Contains(groupTexts(t, n, g.ID), "bob done"), nil
		})
		texts := groupTexts(t, n, g.ID)
		for _, bad := range []string{"Eleven?", "   ", "Long option?"} {
			if slices.Contains(texts, bad) {
				t.Fatalf("a malformed poll %q is listed: %q", bad, texts)
			}
		}
		p, err := n.GroupPoll(ctx, g.ID, pm.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Closed || p.Voters != 1 || p.Options[0].Votes != 0 || p.Options[1].Votes != 1 {
			t.Fatalf("malformed votes or closes counted: %+v", p)
		}
		views = append(views, p)
	}
	if a, c := views[0], views[1]; a.Voters != c.Voters || a.Options[0].Votes != c.Options[0].Votes || a.Options[1].Votes != c.Options[1].Votes {
		t.Fatalf("results differ: Alice %+v, Carol %+v", a, c)
	}
	if p, err := alice.GroupPoll(ctx, other.ID, op.ID); err != nil || p.Voters != 0 {
		t.Fatalf("a vote of another group counted in this one: %+v (%v)", p, err)
	}
}
