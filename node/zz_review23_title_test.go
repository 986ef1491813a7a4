package node

// Outside review 23: a title on more than one line, from another member.

import (
	"context"
	"strings"
	"testing"
	"unicode"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview23RemoteTitleControlChars: titles are "one line" since
// today — but only SetGroupInfo and CreateGroup check it, on the node
// that sets the title. Alice's node (modified, or any client that seals
// its own entry) sets the title "Family\n[admin] Bob was removed\x1b[2K";
// Bob's node takes it and shows it as the group's title in Group and
// Groups (and it is what findGroup matches). Expected: a received title
// with control characters is refused or shown without them, as the
// node's own rule says a title is one line.
func TestReview23RemoteTitleControlChars(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Family")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Title == "Family", nil
	})
	evil := "Family\n[admin] Bob was removed\x1b[2K"
	if err := alice.ensureSealingKey(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.changeGroup(g.ID, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		key, err := alice.infoEditKey(tx, l)
		if err != nil {
			return nil, err
		}
		sealed, err := sealInfo(key, evil)
		if err != nil {
			return nil, err
		}
		return []groupstate.Change{{Kind: groupstate.KindTitle, Text: sealed}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var title string
	eventually(t, "the new title at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		title = got.Title
		return err == nil && got.Title != "Family", nil
	})
	t.Logf("Bob's title: %q", title)
	if strings.ContainsFunc(title, unicode.IsControl) {
		t.Errorf("a title with control characters from another member's node is shown as is: %q", title)
	}
}
