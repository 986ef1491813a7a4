package groupnet

import (
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
)

// TestSpreadOtherBranch: an entry a checker cannot judge because it
// follows an entry the checker does not hold (the winning side of a fork
// the checker is on the losing side of) is ignored, not rejected: an
// honest peer forwards it, and a rejection scores that peer down (one
// takes it below the gossip threshold). Carol leaves while the owner
// sets a title on the same head; the owner's entry wins, and Carol's
// node leaves again after it. A checker holding Carol's first leave used
// to reject the second (Carol "not a member"), penalising whoever
// forwarded it. An entry that does follow the checker's head and is not
// permitted is still rejected.
func TestSpreadOtherBranch(t *testing.T) {
	owner, carol, stranger := newDevice(t), newDevice(t), newDevice(t)
	now := time.Now().UnixMilli()
	sign := func(d device, prev *groupstate.Entry, c groupstate.Change) *groupstate.Entry {
		t.Helper()
		e, err := groupstate.Sign(d.key, d.cert, prev, now, c)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	create := sign(owner, nil, groupstate.Change{Kind: groupstate.KindCreate, Text: "g", Perms: groupstate.DefaultPerms})
	l, err := groupstate.NewLog(create)
	if err != nil {
		t.Fatal(err)
	}
	add := sign(owner, create, groupstate.Change{Kind: groupstate.KindAdd, Account: carol.cert.Account})
	if _, err := l.Add(add); err != nil {
		t.Fatal(err)
	}
	leave := sign(carol, add, groupstate.Change{Kind: groupstate.KindLeave})
	if _, err := l.Add(leave); err != nil {
		t.Fatal(err)
	}
	st := l.State() // the checker: on the leave's side
	title := sign(owner, add, groupstate.Change{Kind: groupstate.KindTitle, Text: "t"})
	again := sign(carol, title, groupstate.Change{Kind: groupstate.KindLeave})
	strangerPin := sign(stranger, leave, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{1}})

	for _, tc := range []struct {
		name string
		e    *groupstate.Entry
		want error
	}{
		{"the owner's rival entry (a fork)", title, nil},
		{"Carol's leave after the owner's entry (another branch)", again, ErrUnknownDevice},
		{"a stranger's entry after the checker's head", strangerPin, ErrNotAllowed},
	} {
		err := EntryMaySpread(st, tc.e)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
