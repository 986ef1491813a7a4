package node

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// r13Write signs changes by n after the log of group it holds and writes
// them straight into its store (as writePins does), then has it register
// them at its relay.
func r13Write(t *testing.T, n *testNode, group groupstate.GroupID, changes ...groupstate.Change) *groupstate.Log {
	t.Helper()
	l := n.reloadGroup(t, group)
	batch := n.db.NewBatch()
	for _, c := range changes {
		e, err := groupstate.Sign(n.keys.device, n.keys.cert, l.Head(), l.Head().Time, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		if err := batch.Set(n.st.groupLog, groupEntryKey(group, e.Seq), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	n.refreshGroup(n.runCtx, group)
	n.wakeHistory()
	return l
}

// TestReview13RemovedMemberForksInvitee: storeEndInvitation keeps any
// run of verifying entries that adds this account, with no check of who
// sent it or where it forks; acceptLongInvitation then builds "the log"
// as the relay's entries[:inv.From] + the invitation's entries, and
// checkFetched only replays that. Mallory, removed from Alice's group G
// long ago, signs a branch off an entry from when she was a member — 20
// pins and an add of Dave — and sends it to Dave as a long log's end.
// Dave sees an invitation from a stranger; he accepts: his node fetches
// G's real log from his own relay (which shows Mallory's removal and
// hundreds of entries since), throws away everything from the fork on,
// and joins Mallory's branch: a G in which Mallory was never removed.
// More than ForkWindow entries past the fork, it is final for Dave: G's
// real log, given to him whole afterwards, is refused (ErrFinal), so he
// stays for good in a fork where his group messages go to Mallory. Right:
// the accepted log must be the relay's log as fetched, with the
// invitation's entries ON it (entries[inv.From+i] == inv.Log[i]) —
// refuse otherwise — and this account a member at the relay log's head.
func TestReview13RemovedMemberForksInvitee(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	malloryHome, _ := initHome(t, "mallory")
	daveHome, _ := initHome(t, "dave")
	alice := startNode(t, aliceHome, relay.addr)
	mallory := startNode(t, malloryHome)
	dave := startNode(t, daveHome, relay.addr)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "real G")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	// Mallory was a member; then she was removed; the group went on.
	l := r13Write(t, alice, group, groupstate.Change{Kind: groupstate.KindAdd, Account: mallory.keys.account.ID()})
	forkAt := l.Head() // Mallory's add: she is a member after it
	r13Write(t, alice, group, groupstate.Change{Kind: groupstate.KindRemove, Account: mallory.keys.account.ID()})
	writePins(t, alice, group, 200)
	l = alice.reloadGroup(t, group)
	awaitRelayLog(t, alice, relay, group, l.Head())

	// Mallory's branch off her add.
	var branch []*groupstate.Entry
	prev := forkAt
	var ref [32]byte
	for i := range 21 {
		c := groupstate.Change{Kind: groupstate.KindPin, Ref: ref}
		if i%2 == 1 {
			c.Kind = groupstate.KindUnpin
		} else {
			ref[0]++
			c.Ref = ref
		}
		if i == 20 {
			c = groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()}
		}
		e, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, prev, prev.Time, c)
		if err != nil {
			t.Fatal(err)
		}
		branch = append(branch, e)
		prev = e
	}
	p := payload{Kind: "group-log", Group: g.ID, From: branch[0].Seq, Log: r13Raws(t, branch)}
	if err := dave.db.Update(func(tx *storage.Txn) error { return dave.applyGroupLog(tx, mallory.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	joined, err := dave.JoinGroup(ctx, g.ID)
	if err != nil {
		return // refused: right
	}
	got := dave.reloadGroup(t, group)
	if got.Head().Hash() == l.Head().Hash() {
		return // the real log: right
	}
	whole := payload{Kind: "group-log", Group: g.ID, Log: r13Raws(t, l.Entries(0))}
	_ = dave.applyFetched(group, alice.keys.account.ID(), whole)
	after := dave.reloadGroup(t, group)
	t.Fatalf("Dave joined (role %q, title %q) Mallory's fork of G off entry %d (his head %d is hers: %v; Mallory a member in it: %v; the relay's head %d); given G's real log afterwards, he takes it: %v",
		joined.Role, joined.Title, forkAt.Seq, got.Head().Seq, got.Head().Hash() == branch[len(branch)-1].Hash(),
		got.State().Role(mallory.keys.account.ID()) != groupstate.RoleNone, l.Head().Seq, after.Head().Hash() == l.Head().Hash())
}
