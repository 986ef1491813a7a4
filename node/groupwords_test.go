package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
)

// TestGroupChangeWords: a change the user may not make is refused with
// the rule and the user's role (not the entry's internals), and still
// matches chat.ErrInvalid and groupstate.ErrForbidden; adds name each
// account once, and refuse the user's own account and a member.
func TestGroupChangeWords(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Words")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "bob"}); err != nil || len(got.Members) != 2 {
		t.Fatalf("add bob twice in one call: %+v (%v)", got, err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "member", nil
	})
	for _, tc := range []struct {
		name string
		do   func() error
		want string
		rule bool // refused by the log's rules (groupstate.ErrForbidden)
	}{
		{"a member removes the owner", func() error { _, err := bob.RemoveGroupMember(ctx, g.ID, "alice"); return err },
			"not allowed: may not remove an owner (your role: member)", true},
		{"a member promotes", func() error { _, err := bob.SetGroupRole(ctx, g.ID, "alice", "admin"); return err },
			"not allowed: the owner promotes and demotes (your role: member)", true},
		{"a member changes the title", func() error {
			title := "Mine"
			_, err := bob.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: &title})
			return err
		}, "you may not change this group's info", false},
		{"demote a member", func() error { _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); return err },
			"bob is not an admin", false},
		{"promote the owner", func() error { _, err := alice.SetGroupRole(ctx, g.ID, aliceInfo.AccountID, "admin"); return err },
			"is the group's owner", false},
		{"add a member", func() error { _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); return err },
			"bob is in the group already (member)", false},
		{"add oneself", func() error { _, err := alice.AddGroupMembers(ctx, g.ID, []string{aliceInfo.AccountID}); return err },
			"is you", false},
	} {
		err := tc.do()
		if !errors.Is(err, chat.ErrInvalid) || !strings.Contains(fmtErr(err), tc.want) || errors.Is(err, groupstate.ErrForbidden) != tc.rule {
			t.Errorf("%s: %v, want %q (a rule's refusal: %v)", tc.name, err, tc.want, tc.rule)
		}
		if err != nil && strings.Contains(err.Error(), "groupstate") {
			t.Errorf("%s: the entry's internals in %q", tc.name, err)
		}
	}
	if _, err := bob.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{}); err == nil {
		t.Error("an empty change")
	}
	for _, title := range []string{"two\nlines", "bell\a", " ", strings.Repeat("x", groupstate.MaxTitle+1), "bad \xff"} {
		if _, err := alice.CreateGroup(ctx, title); !errors.Is(err, chat.ErrInvalid) {
			t.Errorf("create titled %q: %v", title, err)
		}
		if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: &title}); !errors.Is(err, chat.ErrInvalid) {
			t.Errorf("retitle to %q: %v", title, err)
		}
	}

	// Bob removed from one "Words", added to a new one: the title names
	// the one he is in.
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob out", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "none", nil
	})
	g2, err := alice.CreateGroup(ctx, "Words")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g2.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second group at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g2.ID)
		return err == nil && got.Role == "member" && got.Title == "Words", nil
	})
	got, err := bob.Group(ctx, "Words")
	if err != nil || got.ID != g2.ID {
		t.Fatalf("Bob's \"Words\" is %s (%v), want the group he is in, %s", got.ID, err, g2.ID)
	}
	if _, err := bob.SendGroup(ctx, "Words", "by title"); err != nil {
		t.Fatalf("send by title: %v", err)
	}
	// Alice is in both: the title is ambiguous for her.
	if _, err := alice.Group(ctx, "Words"); !errors.Is(err, chat.ErrUnknownGroup) || !strings.Contains(err.Error(), "2 groups are titled") {
		t.Fatalf("Alice's \"Words\": %v", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
