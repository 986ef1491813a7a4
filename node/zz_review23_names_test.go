package node

// Outside review 23: names in group views.

import (
	"context"
	"testing"
)

// TestReview23HeldAliaslessContactName: Bob adds Carol with no alias;
// Carol's self-signed device name is "alice", the alias Bob gave his
// contact Alice. Held: AddContact with an empty name derives an alias
// ("alice (2)"), so in Bob's group view Carol cannot pass for Alice.
func TestReview23HeldAliaslessContactName(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, bobInfo := initHome(t, "bob")
	aliceHome, aliceInfo := initHome(t, "alice")
	carolHome, carolInfo := initHome(t, "alice") // Carol names herself "alice"
	bob := startNode(t, bobHome, relay.addr)
	alice := startNode(t, aliceHome, relay.addr)
	carol := startNode(t, carolHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	eventually(t, "Carol's keys at Bob (no alias)", func() (bool, error) {
		c, err := bob.AddContact(ctx, carolInfo.AccountID, "")
		return err == nil && c.Devices == 1, nil
	})
	_ = carol
	g, err := bob.CreateGroup(ctx, "Names")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.AddGroupMembers(ctx, g.ID, []string{"alice", carolInfo.AccountID}); err != nil {
		t.Fatal(err)
	}
	info, err := bob.Group(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var a, c struct {
		name    string
		contact bool
	}
	for _, m := range info.Members {
		switch m.AccountID {
		case aliceInfo.AccountID:
			a.name, a.contact = m.Name, m.Contact
		case carolInfo.AccountID:
			c.name, c.contact = m.Name, m.Contact
		}
	}
	t.Logf("Bob's view: Alice %+v, Carol %+v", a, c)
	if a == c {
		t.Errorf("a contact without an alias shows up under a self-given name exactly like another contact's alias (%q, contact=%v): nothing marks it as self-given", c.name, c.contact)
	}
}
