package node

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestStrangerReAddIsAnInvitation: Alice left a group (her node keeps
// its log); Victor, a member who is not her contact, adds her back and
// sends her the log. As for a group she never held, that is an
// invitation she may accept, not a membership. Before, her node took
// the log as it takes a held group's (mergeLog) and she was a member
// again without being asked (outside review 19's note).
func TestStrangerReAddIsAnInvitation(t *testing.T) {
	for _, contact := range []bool{false, true} {
		name := "a stranger's add"
		if contact {
			name = "a contact's add" // joins at once, as for a new group
		}
		t.Run(name, func(t *testing.T) { reAdd(t, contact) })
	}
}

func reAdd(t *testing.T, contact bool) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	self := alice.keys.account.ID()
	victor := r12NewUser(t, "victor")
	id, raws, _ := r18Group(t, victor, nil, self)
	gid := hex.EncodeToString(id[:])
	accepted := payload{Kind: "group-log", Group: gid, Log: raws, accepted: true}
	r18Deliver(t, alice, victor.id(), accepted)
	if alice.reloadGroup(t, id).State().Role(self) == groupstate.RoleNone {
		t.Fatal("Alice is not a member: the test's premise")
	}
	if _, err := alice.LeaveGroup(context.Background(), gid); err != nil {
		t.Fatal(err)
	}
	left := alice.reloadGroup(t, id)
	if left.State().Role(self) != groupstate.RoleNone {
		t.Fatal("Alice is a member after leaving: the test's premise")
	}
	var all [][]byte
	for _, e := range left.Entries(0) {
		b, _ := e.MarshalBinary()
		all = append(all, b)
	}
	readd, b := r12Sign(t, victor.dev, victor.cert, left.Head(), groupstate.Change{Kind: groupstate.KindAdd, Account: self})
	all = append(all, b)
	if contact {
		if err := alice.db.Update(func(tx *storage.Txn) error {
			return alice.st.putContact(tx, &contactRecord{Account: victor.id(), Name: "victor", State: stateContact})
		}); err != nil {
			t.Fatal(err)
		}
	}
	r18Deliver(t, alice, victor.id(), payload{Kind: "group-log", Group: gid, Log: all})
	if contact {
		if l := alice.reloadGroup(t, id); l.State().Role(self) == groupstate.RoleNone || r18HasInvitation(t, alice, id) {
			t.Fatal("a contact's add back did not take Alice in at once")
		}
		return
	}
	if l := alice.reloadGroup(t, id); l.State().Role(self) != groupstate.RoleNone || holds(l, readd) {
		t.Fatal("a stranger's add took Alice back into a group she left, unasked")
	}
	if !r18HasInvitation(t, alice, id) {
		t.Fatal("no invitation for the stranger's add")
	}
	if _, err := alice.JoinGroup(context.Background(), gid); err != nil {
		t.Fatalf("accepting the invitation: %v", err)
	}
	if l := alice.reloadGroup(t, id); l.State().Role(self) == groupstate.RoleNone || !holds(l, readd) {
		t.Fatal("not a member after accepting the invitation")
	}
}
