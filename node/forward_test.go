package node

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
)

// TestForwardIntoGroup: a group message forwarded into a group arrives
// as a forward — its text the original's, its origin beside it, naming
// the original's sender (a group's; a channel's names none:
// TestChannelSubscribe) — and a text that only looks like one is not.
func TestForwardIntoGroup(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	alice, bob, carol, g := review20ThreeInGroup(t, relay, nil)
	ctx := context.Background()
	orig, err := alice.SendGroup(ctx, g.ID, "worth repeating")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the original at Bob", func() (bool, error) {
		return slices.Contains(groupTexts(t, bob, g.ID), "worth repeating"), nil
	})
	id, err := bob.ForwardGroupMessage(ctx, g.ID, orig.ID, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroup(ctx, g.ID, "Forwarded from Polls:\nworth repeating"); err != nil {
		t.Fatal(err)
	}
	var fwd, typed *chat.GroupMessage
	eventually(t, "both at Carol", func() (bool, error) {
		ms, err := carol.GroupMessages(ctx, g.ID)
		for i := range ms {
			switch {
			case ms[i].ID == id:
				fwd = &ms[i]
			case strings.HasPrefix(ms[i].Text, "Forwarded from"):
				typed = &ms[i]
			}
		}
		return err == nil && fwd != nil && typed != nil, err
	})
	want := chat.Forward{From: "Polls", Author: alice.keys.account.ID().String(), SentAt: orig.SentAt}
	if fwd.Text != "worth repeating" || fwd.Forwarded == nil || *fwd.Forwarded != want || fwd.From != bob.keys.account.ID().String() {
		t.Fatalf("the forward at Carol: %+v (forwarded %+v), want %+v from Bob", fwd, fwd.Forwarded, want)
	}
	if typed.Forwarded != nil {
		t.Fatalf("a typed text shown as a forward: %+v", typed.Forwarded)
	}
}

// TestForwardRefCheck: a forward's origin as it arrives is bounded; one
// that is not is dropped (a payload's) or makes the body invalid (a
// group message's).
func TestForwardRefCheck(t *testing.T) {
	tests := []struct {
		name string
		f    forwardRef
		ok   bool
	}{
		{"whole", forwardRef{From: "News", Author: identity.AccountID{1}.String(), At: 1}, true},
		{"a title only", forwardRef{From: "News"}, true},
		{"no title", forwardRef{At: 5}, false},
		{"a title too long", forwardRef{From: strings.Repeat("x", chat.MaxForwardFrom+1)}, false},
		{"a title not UTF-8", forwardRef{From: "\xff"}, false},
		{"an author not an account", forwardRef{From: "News", Author: "mallory"}, false},
		{"a negative time", forwardRef{From: "News", At: -1}, false},
		{"a time past year 9999", forwardRef{From: "News", At: maxForwardTime + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.check(); (err == nil) != tt.ok {
				t.Fatalf("check: %v, want ok=%v", err, tt.ok)
			}
			body := groupBody{Text: "copy", Fwd: &tt.f}
			if err := body.check(); (err == nil) != tt.ok {
				t.Fatalf("a group body with it: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if err := (&groupBody{Poll: &pollBody{Question: "q", Options: []string{"a", "b"}}, Fwd: &forwardRef{From: "News"}}).check(); err == nil {
		t.Fatal("a forward's origin on a poll")
	}
}

// TestForwardMalformedDropped: a text whose forward's origin is out of
// bounds is kept as a plain text (its origin dropped); a sound one is a
// forward.
func TestForwardMalformedDropped(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	carol := newFakeDevice(t, relay, nil, "carol")
	carol.publish(t, nil, carol.cert)
	ctx := context.Background()
	if _, err := bob.AddContact(ctx, carol.acct.ID().String(), "carol"); err != nil {
		t.Fatal(err)
	}
	bad := payload{Kind: "text", Text: "a bad origin", Seq: 1, Fwd: &forwardRef{From: strings.Repeat("x", chat.MaxForwardFrom+1)}}
	good := payload{Kind: "text", Text: "a sound origin", Seq: 2, Fwd: &forwardRef{From: "News"}}
	for _, p := range []payload{bad, good} {
		if got := carol.send(t, bob, p, newMessageID(t)); got != int(directOK) {
			t.Fatalf("%q: answer %d", p.Text, got)
		}
	}
	var ms []chat.Message
	eventually(t, "both at Bob", func() (bool, error) {
		var err error
		ms, err = bob.Messages(ctx, "carol", false)
		return err == nil && len(ms) == 2, err
	})
	for _, m := range ms {
		switch m.Text {
		case bad.Text:
			if m.Forwarded != nil {
				t.Errorf("an origin out of bounds kept: %+v", m.Forwarded)
			}
		case good.Text:
			if m.Forwarded == nil || m.Forwarded.From != "News" {
				t.Errorf("a sound origin lost: %+v", m.Forwarded)
			}
		}
	}
}
