package groupnet

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
)

// rv11Chain signs a chain of n pins by d after prev (a log of d's own
// group if prev is nil) and returns its last entry: a predecessor of any
// sequence number, which no log of the group under attack holds.
func rv11Chain(t *testing.T, d device, n int) *groupstate.Entry {
	t.Helper()
	now := time.Now().UnixMilli()
	e, err := groupstate.Sign(d.key, d.cert, nil, now, groupstate.Change{Kind: groupstate.KindCreate, Text: "side", Perms: groupstate.DefaultPerms})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		e, err = groupstate.Sign(d.key, d.cert, e, now, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{byte(i), 1}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestReview11JunkOldEntriesSpread: entries that no log can ever take —
// an entry far below the fork window (final), following a predecessor
// no log holds — pass EntryMaySpread as long as the checker's state
// "permits" their change. That covers a member's junk pin and, with a
// group's invite link (public, for a channel with a name), a stranger's
// junk joins, by as many fresh accounts as it likes. Each is accepted
// by every validator (not ignored, not rejected: nobody is scored down)
// and reaches every member's takeStateEntry, which loads the group's log
// and replays it up to that place before finding it does not chain —
// not the "two signature checks" the threat model counts for a junk
// join. A removed (not banned) member's old join, wrapped anew, spreads
// too. Expected: an entry that cannot compete (below the fork window)
// is ignored.
func TestReview11JunkOldEntriesSpread(t *testing.T) {
	owner, member, stranger, gone := newDevice(t), newDevice(t), newDevice(t), newDevice(t)
	now := time.Now().UnixMilli()
	create, err := groupstate.Sign(owner.key, owner.cert, nil, now, groupstate.Change{Kind: groupstate.KindCreate, Text: "g", Perms: groupstate.DefaultPerms})
	if err != nil {
		t.Fatal(err)
	}
	l, err := groupstate.NewLog(create)
	if err != nil {
		t.Fatal(err)
	}
	add := func(d device, c groupstate.Change) *groupstate.Entry {
		t.Helper()
		e, err := groupstate.Sign(d.key, d.cert, l.Head(), now, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var ref [32]byte
	copy(ref[:], pub)
	add(owner, groupstate.Change{Kind: groupstate.KindAdd, Account: member.cert.Account})
	add(owner, groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref})
	gid := l.Group()
	oldJoin := add(gone, groupstate.Change{Kind: groupstate.KindJoin, Ref: ref, Text: groupstate.InviteProof(key, gid, gone.cert.Account)})
	add(owner, groupstate.Change{Kind: groupstate.KindRemove, Account: gone.cert.Account})
	for i := range 3 * groupstate.ForkWindow {
		add(owner, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{byte(i), 2}})
		if i < groupstate.ForkWindow {
			add(owner, groupstate.Change{Kind: groupstate.KindUnpin, Ref: [32]byte{byte(i), 2}})
		}
	}
	st := l.State()
	t.Logf("the log is at %d", st.Seq)

	memberPin, err := groupstate.Sign(member.key, member.cert, rv11Chain(t, member, 2), now, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{0xee}})
	if err != nil {
		t.Fatal(err)
	}
	strangerJoin, err := groupstate.Sign(stranger.key, stranger.cert, rv11Chain(t, stranger, 2), now, groupstate.Change{Kind: groupstate.KindJoin, Ref: ref, Text: groupstate.InviteProof(key, gid, stranger.cert.Account)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		e    *groupstate.Entry
	}{
		{"a member's pin at entry 3 after a predecessor no log holds", memberPin},
		{"a stranger's join (valid proof) at entry 3 after a predecessor no log holds", strangerJoin},
		{"a removed member's old join, long final", oldJoin},
	} {
		if tc.e.Seq+groupstate.ForkWindow >= st.Seq {
			t.Fatalf("%s: entry %d is within the fork window of %d", tc.name, tc.e.Seq, st.Seq)
		}
		err := EntryMaySpread(st, tc.e)
		t.Logf("%s (seq %d): %v", tc.name, tc.e.Seq, err)
		if err == nil {
			t.Errorf("%s (seq %d, the log at %d, final below %d) spreads", tc.name, tc.e.Seq, st.Seq, st.Seq-groupstate.ForkWindow)
		} else if !errors.Is(err, ErrUnknownDevice) && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
