package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

// TestReview21PollCloseResults (held check): Carol votes in Alice's
// poll. Bob, not its creator, sends closes with results (valid-looking,
// oversized, negative); Alice, the creator, with a modified client, sends
// a close whose result does not add up, then one with a valid result,
// then a second close dated back before it with another result. Every
// member must show the same poll, never a non-creator's count, never a
// panic, and no negative count.
func TestReview21PollCloseResults(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	alice, bob, carol, g := review20ThreeInGroup(t, relay, nil)
	ctx := context.Background()
	pm, err := alice.CreatePoll(ctx, g.ID, chat.PollSpec{Question: "Lunch?", Options: []string{"pizza", "sushi"}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poll at Carol", func() (bool, error) {
		_, err := carol.GroupPoll(ctx, g.ID, pm.ID)
		return err == nil, nil
	})
	if _, err := carol.VotePoll(ctx, g.ID, pm.ID, []int{1}); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		`{"close":"` + pm.ID + `","result":{"v":[3,0],"n":3}}`,
		`{"close":"` + pm.ID + `","result":{"v":[-5,5],"n":0}}`,
		`{"close":"` + pm.ID + `","result":{"v":[1,2,3,4,5,6,7,8,9,10,11],"n":11}}`,
		`{"close":"` + pm.ID + `","result":{"v":[1e30,0],"n":1}}`,
		`{"vote":{"p":"` + pm.ID + `","o":[0]},"result":{"v":[9,0],"n":9}}`,
	} {
		if _, err := bob.sealGroup(ctx, g.ID, &groupBody{}, []byte(raw), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.SendGroup(ctx, g.ID, "bob done"); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*testNode{"alice": alice, "bob": bob, "carol": carol}
	for name, n := range nodes {
		eventually(t, "Bob's last text at "+name, func() (bool, error) {
			return slices.Contains(groupTexts(t, n, g.ID), "bob done"), nil
		})
		// (And Carol's vote: at Bob, his own last text is there at once,
		// whether or not her vote has arrived — a flake in CI.)
		eventually(t, "Carol's vote (or a close) at "+name, func() (bool, error) {
			p, err := n.GroupPoll(ctx, g.ID, pm.ID)
			return err == nil && (p.Voters > 0 || p.Closed), nil
		})
		p, err := n.GroupPoll(ctx, g.ID, pm.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Closed || p.Voters != 1 || p.Options[1].Votes != 1 {
			t.Fatalf("%s: a non-creator's close or result took effect: %+v", name, p)
		}
	}
	// The creator's closes: one that does not add up (ignored: the votes
	// before it count), then one dated later with a valid result, then one
	// dated back before both with another.
	if _, err := alice.postGroup(ctx, g.ID, &groupBody{Close: pm.ID, Result: &pollResult{Votes: []int{1, 1}, Voters: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := alice.postGroup(ctx, g.ID, &groupBody{Close: pm.ID, Result: &pollResult{Votes: []int{2, 0}, Voters: 2}}, nil); err != nil {
		t.Fatal(err)
	}
	alice.setClock(-30 * time.Second)
	if _, err := alice.postGroup(ctx, g.ID, &groupBody{Close: pm.ID, Result: &pollResult{Votes: []int{0, 7}, Voters: 7}}, nil); err != nil {
		t.Fatal(err)
	}
	alice.setClock(0)
	if _, err := alice.SendGroup(ctx, g.ID, "alice done"); err != nil {
		t.Fatal(err)
	}
	views := map[string]string{}
	for name, n := range nodes {
		eventually(t, "Alice's last text at "+name, func() (bool, error) {
			return slices.Contains(groupTexts(t, n, g.ID), "alice done"), nil
		})
		p, err := n.GroupPoll(ctx, g.ID, pm.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Options {
			if o.Votes < 0 || o.Votes > p.Voters {
				t.Fatalf("%s: a count out of range: %+v", name, p)
			}
		}
		views[name] = fmt.Sprintf("closed=%v voters=%d %d/%d", p.Closed, p.Voters, p.Options[0].Votes, p.Options[1].Votes)
		// The poll as listed with the group's messages: the same.
		ms, err := n.GroupMessages(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.ID == pm.ID && m.Poll != nil {
				if got := fmt.Sprintf("closed=%v voters=%d %d/%d", m.Poll.Closed, m.Poll.Voters, m.Poll.Options[0].Votes, m.Poll.Options[1].Votes); got != views[name] {
					t.Fatalf("%s shows the poll as %s in its messages and %s alone", name, got, views[name])
				}
			}
		}
	}
	if views["alice"] != views["bob"] || views["bob"] != views["carol"] {
		t.Fatalf("members show different results: %v", views)
	}
	t.Logf("every member shows %s", views["alice"])
}
