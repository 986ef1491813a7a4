package node

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestDeclineInvitation: Dave, added by Alice who is not his contact,
// declines the invitation. Nothing of it stays at his node, Alice's group sees him
// leave (a declined add would otherwise come back with the group's next
// change: its members send the log to everyone it lists), her next
// change brings no invitation back, and a new add is a new invitation.
func TestDeclineInvitation(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	daveHome, daveInfo := initHome(t, "dave")
	alice := startNode(t, aliceHome, relay.addr)
	dave := startNode(t, daveHome, relay.addr)
	ctx := context.Background()
	eventually(t, "Dave's keys at Alice", func() (bool, error) {
		c, err := alice.AddContact(ctx, daveInfo.AccountID, "dave")
		return err == nil && c.Devices == 1, nil
	})
	g, err := alice.CreateGroup(ctx, "Declined")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	events := dave.Subscribe(sctx)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	// The invitation is news to Dave's clients (a "group" event).
	for got := false; !got; {
		select {
		case ev := <-events:
			got = ev.Type == chat.EventGroup && ev.GroupID == g.ID
		case <-time.After(30 * time.Second):
			t.Fatal("no group event for the invitation")
		}
	}
	invited := func() bool {
		gs, err := dave.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(gs, func(x chat.Group) bool { return x.ID == g.ID && x.Role == "invited" })
	}
	eventually(t, "the invitation at Dave", func() (bool, error) { return invited(), nil })

	if err := dave.DeclineGroup(ctx, "No such group"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("declining no invitation: %v", err)
	}
	if err := alice.DeclineGroup(ctx, g.ID); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("the owner declines her own group: %v", err)
	}
	if err := dave.DeclineGroup(ctx, "Declined"); err != nil { // by its title, as group list shows it
		t.Fatal(err)
	}
	for got := false; !got; {
		select {
		case ev := <-events:
			got = ev.Type == chat.EventGroupGone && ev.GroupID == g.ID
		case <-time.After(30 * time.Second):
			t.Fatal("no group_gone event for the declined invitation")
		}
	}
	if invited() {
		t.Fatal("the invitation is still listed after declining it")
	}
	if _, err := dave.Group(ctx, g.ID); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("a declined group is kept: %v", err)
	}
	if err := dave.DeclineGroup(ctx, g.ID); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("declining twice: %v", err)
	}
	if _, err := dave.JoinGroup(ctx, g.ID); err == nil {
		t.Fatal("joined a group whose invitation was declined")
	}
	lists := func(n *testNode, account string) bool {
		got, err := n.Group(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(got.Members, func(m chat.GroupMember) bool { return m.AccountID == account })
	}
	eventually(t, "Dave out of Alice's group", func() (bool, error) { return !lists(alice, daveInfo.AccountID), nil })

	// Alice's next change goes to the members only; a direct message
	// sent after it is a barrier: once Dave has it, a log sent to him
	// before would have arrived too.
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr("Declined, renamed")}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "dave", "after the rename"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Alice's message at Dave", func() (bool, error) {
		ms, err := dave.Messages(ctx, aliceInfo.AccountID, false)
		return err == nil && slices.ContainsFunc(ms, func(m chat.Message) bool { return m.Text == "after the rename" }), nil
	})
	if invited() {
		t.Fatal("the group's next change brought the declined invitation back")
	}

	// Declining is not blocking: a new add is a new invitation.
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new invitation at Dave", func() (bool, error) { return invited(), nil })
	if _, err := dave.JoinGroup(ctx, g.ID); err != nil {
		t.Fatalf("accepting the new invitation: %v", err)
	}
	eventually(t, "Dave in Alice's group", func() (bool, error) { return lists(alice, daveInfo.AccountID), nil })
}

// TestDeclineEndInvitation: an invitation kept as a long log's end (no
// whole log to sign a leave after) is dropped, and the same end
// delivered again makes no new one; an end carrying a new add does.
func TestDeclineEndInvitation(t *testing.T) {
	malloryHome, _ := initHome(t, "mallory")
	daveHome, _ := initHome(t, "dave")
	mallory := startNode(t, malloryHome)
	dave := startNode(t, daveHome)
	ctx := context.Background()
	g, err := mallory.CreateGroup(ctx, "Long")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	writePins(t, mallory, group, 30)
	l := mallory.reloadGroup(t, group)
	sign := func(c groupstate.Change) {
		t.Helper()
		e, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, l.Head(), l.Head().Time, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	self := dave.keys.account.ID()
	sign(groupstate.Change{Kind: groupstate.KindAdd, Account: self})
	end := func() payload {
		return payload{Kind: "group-log", Group: g.ID, From: l.Head().Seq - 16, Log: r13Raws(t, l.Entries(l.Head().Seq-16))}
	}
	deliver := func(p payload) {
		t.Helper()
		if err := dave.db.Update(func(tx *storage.Txn) error { return dave.applyGroupLog(tx, mallory.keys.account.ID(), p) }); err != nil {
			t.Fatal(err)
		}
	}
	held := func() bool {
		t.Helper()
		var ok bool
		if err := dave.db.View(func(tx *storage.Txn) (err error) {
			ok, err = tx.Has(dave.st.groupInv, invKey(group, mallory))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	first := end()
	deliver(first)
	if !held() {
		t.Fatal("the end was not kept as an invitation: the test's premise")
	}
	if err := dave.DeclineGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if held() {
		t.Fatal("the end invitation is still held after declining it")
	}
	deliver(first)
	if held() {
		t.Fatal("the declined end, delivered again, is an invitation again")
	}
	// A later change's end that still carries the declined add.
	sign(groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{1, 2, 3}})
	deliver(end())
	if held() {
		t.Fatal("a later end carrying the declined add is an invitation again")
	}
	// Removed and added again: a new add, a new invitation.
	sign(groupstate.Change{Kind: groupstate.KindRemove, Account: self})
	sign(groupstate.Change{Kind: groupstate.KindAdd, Account: self})
	deliver(end())
	if !held() {
		t.Fatal("a new add after the declined one made no invitation")
	}
}

// TestDeclineWholeLogRemembered: a whole-log invitation declined stays
// declined when the group's log comes again — the same, or with a later
// change (members send the log to everyone it lists, and the leave may
// not have reached them) — while a new add is a new invitation.
func TestDeclineWholeLogRemembered(t *testing.T) {
	home, _ := initHome(t, "dave")
	dave := startNode(t, home)
	self := dave.keys.account.ID()
	victor := r12NewUser(t, "victor")
	id, raws, add := r18Group(t, victor, nil, self)
	gid := hex.EncodeToString(id[:])
	r18Deliver(t, dave, victor.id(), payload{Kind: "group-log", Group: gid, Log: raws})
	if !r18HasInvitation(t, dave, id) {
		t.Fatal("no invitation: the test's premise")
	}
	if err := dave.DeclineGroup(context.Background(), gid); err != nil {
		t.Fatal(err)
	}
	pin, b := r12Sign(t, victor.dev, victor.cert, add, groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{7}})
	later := append(append([][]byte(nil), raws...), b)
	for name, log := range map[string][][]byte{"the same log": raws, "a later change": later} {
		r18Deliver(t, dave, victor.id(), payload{Kind: "group-log", Group: gid, Log: log})
		if r18HasInvitation(t, dave, id) {
			t.Fatalf("%s brought the declined invitation back", name)
		}
	}
	out, b1 := r12Sign(t, victor.dev, victor.cert, pin, groupstate.Change{Kind: groupstate.KindRemove, Account: self})
	_, b2 := r12Sign(t, victor.dev, victor.cert, out, groupstate.Change{Kind: groupstate.KindAdd, Account: self})
	r18Deliver(t, dave, victor.id(), payload{Kind: "group-log", Group: gid, Log: append(later, b1, b2)})
	if !r18HasInvitation(t, dave, id) {
		t.Fatal("a new add after the declined one made no invitation")
	}
}
