package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/peergram/peergram/node/chat"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// TestAttackFutureEntryExpiresInvites: Carol, a plain member, signs a pin
// dated a year ahead and hands the log to Alice, the owner. Taken, its
// time would carry into every later entry (each is dated at most 10
// minutes before the one it follows): Alice's invite link, made for an hour, would be
// dated a year ahead and be expired for everyone who uses it. Alice's
// node does not take an entry dated further ahead than clocks differ;
// one dated a minute ahead is taken; Dave joins by the link.
func TestAttackFutureEntryExpiresInvites(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, carol, dave := nodes["alice"], nodes["bob"], nodes["carol"], nodes["dave"]
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	addEachOther(t, bob, carol, infos["bob"], infos["carol"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Clockwork")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)
	eventually(t, "the group at Carol", func() (bool, error) {
		st := carol.groupState(group)
		return st != nil && st.Seq == alice.groupState(group).Seq, nil
	})
	L := alice.groupState(group).Seq
	var changeLog func(time.Duration, groupstate.Change) payload

	// Carol's change at L+1, dated ahead by d, as a group-log payload.
	pinLog := func(d time.Duration) payload {
		var ref [32]byte
		rand.Read(ref[:])
		return changeLog(d, groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
	}
	changeLog = func(d time.Duration, c groupstate.Change) payload {
		t.Helper()
		var p payload
		if err := carol.db.View(func(tx *storage.Txn) error {
			l, err := carol.findGroup(tx, g.ID)
			if err != nil {
				return err
			}
			pin, err := groupstate.Sign(carol.keys.device, carol.keys.cert, l.Head(), time.Now().Add(d).UnixMilli(), c)
			if err != nil {
				return err
			}
			if _, err := l.Add(pin); err != nil {
				return err
			}
			p = payload{Kind: "group-log", Group: g.ID}
			for _, e := range l.Entries(0) {
				raw, err := e.MarshalBinary()
				if err != nil {
					return err
				}
				p.Log = append(p.Log, raw)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hand := func(p payload) {
		t.Helper()
		if err := alice.db.Update(func(tx *storage.Txn) error {
			return alice.applyGroupLog(tx, carol.keys.account.ID(), p)
		}); err != nil {
			t.Fatal(err)
		}
		if l := alice.reloadGroup(t, group); l.State().Seq > L+1 {
			t.Fatalf("log at %d", l.State().Seq)
		}
	}
	hand(pinLog(365 * 24 * time.Hour))
	if l := alice.reloadGroup(t, group); l.State().Seq != L || l.State().Time > time.Now().Add(maxEntryAhead).UnixMilli() {
		t.Fatalf("an entry dated a year ahead was taken: log at %d (from %d), dated %v", l.State().Seq, L, time.UnixMilli(l.State().Time))
	}
	hand(pinLog(time.Minute))
	if l := alice.reloadGroup(t, group); l.State().Seq != L+1 {
		t.Fatalf("an entry dated a minute ahead was not taken: log at %d (from %d)", l.State().Seq, L)
	}

	// A node's first log of a group is refused whole if an entry in it
	// is dated ahead: Carol adds Bob, her contact, a year ahead.
	bobIn := func(d time.Duration) bool {
		t.Helper()
		if err := bob.db.Update(func(tx *storage.Txn) error {
			return bob.applyGroupLog(tx, carol.keys.account.ID(), changeLog(d, groupstate.Change{Kind: groupstate.KindAdd, Account: bob.keys.account.ID()}))
		}); err != nil {
			t.Fatal(err)
		}
		gs, err := bob.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(gs) > 0
	}
	if bobIn(365 * 24 * time.Hour) {
		t.Fatal("a first log with an entry dated a year ahead was taken")
	}
	if !bobIn(time.Minute) {
		t.Fatal("a first log with an entry dated a minute ahead was not taken")
	}

	inv, err := alice.CreateInvite(ctx, g.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Dave joins by the link (once the relay holds the log)", func() (bool, error) {
		_, err := dave.JoinGroup(ctx, inv.Link)
		return err == nil, nil
	})
}

// reloadGroup reads group's log from n's store.
func (n *testNode) reloadGroup(t testing.TB, group [32]byte) *groupstate.Log {
	t.Helper()
	var l *groupstate.Log
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		l, err = n.loadGroupTx(tx, groupstate.GroupID(group))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAttackRelayLogDatedAhead: a relay whose clock runs 9 minutes fast
// keeps an entry Carol dated 15 minutes ahead on top of the group's log
// (within its own allowance). Dave, joining by a link that expires in 12
// minutes, fetches that log from the relay. His join follows the entry
// (a joiner allows twice what members do: one whose clock is a little
// slow must not stop short of what members took) but is dated no later
// than groupstate lets an entry precede its predecessor, so the link is
// not expired for it. Alice, the owner, keeps Dave's log until Carol's
// entry is within her bound, then takes both: Dave is a member.
func TestAttackRelayLogDatedAhead(t *testing.T) {
	relayLogAhead(t, 15*time.Minute, 12*time.Minute, 0)
}

// TestAttackRelayLogFarAhead: the relay keeps an entry 19 minutes ahead
// (its clock 9 minutes fast); Dave's clock is 2 minutes slow, so it is 21
// minutes ahead of him, beyond what a joiner follows. Had he followed
// it, his join would be dated 9 minutes ahead, after the 8-minute link's
// expiry. He joins on what comes before it, where Alice's log is.
func TestAttackRelayLogFarAhead(t *testing.T) {
	relayLogAhead(t, 19*time.Minute, 8*time.Minute, -2*time.Minute)
}

// relayLogAhead runs the two tests above: Carol's pin dated pinAhead ahead
// on a relay whose clock is 9 minutes fast, an invite link for link,
// Dave's clock off by skew.
func relayLogAhead(t *testing.T, pinAhead, link, skew time.Duration) {
	relay := startRelayFull(t, t.TempDir(), nil, nil, func(c *history.Config) {
		c.Now = func() time.Time { return time.Now().Add(9 * time.Minute) }
	})
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "carol", "dave"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, carol, dave := nodes["alice"], nodes["carol"], nodes["dave"]
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Fast clock")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	inv, err := alice.CreateInvite(ctx, g.ID, link)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := [32]byte(gid)
	eventually(t, "the invite at Carol", func() (bool, error) {
		st := carol.groupState(group)
		return st != nil && st.Seq == alice.groupState(group).Seq, nil
	})
	L := alice.groupState(group).Seq
	entries, lists := review8PinAhead(t, carol, g.ID, pinAhead)
	hc := history.NewClient(carol.host)
	eventually(t, "the relay keeps Carol's entry", func() (bool, error) {
		if err := hc.Register(ctx, relay.h.ID(), group, entries, lists, carol.keys.device); err != nil {
			return false, err
		}
		held, _, err := hc.Log(ctx, relay.h.ID(), group)
		if err != nil {
			return false, err
		}
		return uint64(len(held)) == L+2, fmt.Errorf("the relay holds %d entries, want %d", len(held), L+2)
	})
	dave.setClock(skew)
	eventually(t, "Dave joins by the link", func() (bool, error) {
		_, err := dave.JoinGroup(ctx, inv.Link)
		return err == nil, nil
	})
	if skew != 0 {
		if d := dave.reloadGroup(t, group).Head(); d.Change.Kind != groupstate.KindJoin || d.Seq != L+1 {
			t.Fatalf("Dave's join: %s at %d (want a join at %d)", d.Change.Kind, d.Seq, L+1)
		}
		eventually(t, "Dave a member at Alice", func() (bool, error) {
			return alice.groupState(group).Role(dave.keys.account.ID()) == groupstate.RoleMember, nil
		})
		return
	}
	if d := dave.reloadGroup(t, group).Head(); d.Change.Kind != groupstate.KindJoin || d.Seq != L+2 || d.Time > time.Now().Add(maxEntryAhead).UnixMilli() {
		t.Fatalf("Dave's join: %s at %d, dated %v ahead", d.Change.Kind, d.Seq, time.Until(time.UnixMilli(d.Time)))
	}
	time.Sleep(time.Second)
	if alice.groupState(group).Role(dave.keys.account.ID()) != groupstate.RoleNone {
		t.Fatal("Alice took an entry dated 15 minutes ahead")
	}
	alice.setClock(6 * time.Minute) // Carol's entry is 9 minutes ahead of Alice now
	eventually(t, "Dave a member at Alice", func() (bool, error) {
		return alice.groupState(group).Role(dave.keys.account.ID()) == groupstate.RoleMember, nil
	})
}

// TestInvitationToHeldGroup: an invitation to a group whose log the node
// holds as a member (a store from before invitations were dropped on
// joining) is dropped when accepted; the log stays as it was.
func TestInvitationToHeldGroup(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	home, _ := initHome(t, "alice")
	alice := startNode(t, home, relay.addr)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Held")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateInvite(ctx, g.ID, 0); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(gid)
	before := alice.reloadGroup(t, group).State().Seq
	other := newFakeDevice(t, relay, nil, "other")
	if err := alice.db.Update(func(tx *storage.Txn) error {
		l, err := alice.loadGroupTx(tx, group)
		if err != nil {
			return err
		}
		p := payload{Kind: "group-log", Group: g.ID}
		for _, e := range l.Entries(0)[:1] { // the creation alone
			raw, err := e.MarshalBinary()
			if err != nil {
				return err
			}
			p.Log = append(p.Log, raw)
		}
		return alice.storeInvitation(tx, group, other.acct.ID(), other.acct.ID(), p)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.JoinGroup(ctx, g.ID); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("accepting an invitation to a group held as a member: %v", err)
	}
	if l := alice.reloadGroup(t, group); l.State().Seq != before {
		t.Fatalf("the log went from %d to %d entries' head", before, l.State().Seq)
	}
	gs, err := alice.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Role != "owner" {
		t.Fatalf("groups: %+v (%v)", gs, err)
	}
}
