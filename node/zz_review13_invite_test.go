package node

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

func r13Raws(t *testing.T, es []*groupstate.Entry) [][]byte {
	t.Helper()
	var out [][]byte
	for _, e := range es {
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestReview13EndInvitationSquatsGroup: storeEndInvitation checks only
// that the end's entries verify, chain among themselves and add this
// account — nothing ties them to the group ID the payload names. So
// Mallory, a stranger, sends Dave an end built from her OWN group's
// entries but naming Alice's group G (whose ID she knows: it is in every
// invite link, message, relay query). Dave keeps it as "Mallory invited
// you to G"; when Alice's real (whole, verifiable) invitation to G comes,
// storeInvitation keeps "the first invitation" and drops Alice's. Dave
// can then never accept G (acceptLongInvitation fails: Mallory's end
// does not chain onto G's log) until the junk expires in 30 days.
// Before these commits a stranger could only make invitations to groups
// whose ID is her own creation entry's hash. Right: an unverified end
// must not displace (or block) a verifiable invitation — e.g. a whole-log
// invitation that replays replaces an end invitation, or invitations are
// keyed by (group, inviter), or an end invitation is checked against the
// node's own relays before it is shown.
func TestReview13EndInvitationSquatsGroup(t *testing.T) {
	aliceHome, _ := initHome(t, "alice")
	malloryHome, _ := initHome(t, "mallory")
	daveHome, _ := initHome(t, "dave")
	alice := startNode(t, aliceHome)
	mallory := startNode(t, malloryHome)
	dave := startNode(t, daveHome)
	ctx := context.Background()

	// Alice's real group G, and her add of Dave (not her contact here:
	// signed straight onto her log).
	g, err := alice.CreateGroup(ctx, "real")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	al := alice.reloadGroup(t, group)
	add, err := groupstate.Sign(alice.keys.device, alice.keys.cert, al.Head(), al.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := al.Add(add); err != nil {
		t.Fatal(err)
	}
	real := payload{Kind: "group-log", Group: g.ID, Log: r13Raws(t, al.Entries(0))}

	// Mallory's junk end: her own group's entries, naming G.
	mg, err := mallory.CreateGroup(ctx, "junk")
	if err != nil {
		t.Fatal(err)
	}
	mraw, _ := hex.DecodeString(mg.ID)
	writePins(t, mallory, groupstate.GroupID(mraw), 20)
	ml := mallory.reloadGroup(t, groupstate.GroupID(mraw))
	madd, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, ml.Head(), ml.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ml.Add(madd); err != nil {
		t.Fatal(err)
	}
	junk := payload{Kind: "group-log", Group: g.ID, From: ml.Head().Seq - 5, Log: r13Raws(t, ml.Entries(ml.Head().Seq-5))}

	for _, step := range []struct {
		from string
		p    payload
	}{{"mallory", junk}, {"alice", real}} {
		sender := mallory.keys.account.ID()
		if step.from == "alice" {
			sender = alice.keys.account.ID()
		}
		if err := dave.db.Update(func(tx *storage.Txn) error { return dave.applyGroupLog(tx, sender, step.p) }); err != nil {
			t.Fatalf("%s: %v", step.from, err)
		}
	}
	var inv *invitation
	if err := dave.db.View(func(tx *storage.Txn) (err error) {
		inv, _, err = dave.loadInvitation(tx, group[:])
		return err
	}); err != nil {
		t.Fatalf("Dave's invitation to G: %v", err)
	}
	if inv.By != alice.keys.account.ID() || inv.From != 0 {
		t.Fatalf("Dave's invitation to Alice's group G is Mallory's junk end (by Mallory: %v, from %d): Alice's verifiable invitation was dropped as \"not the first\"",
			inv.By == mallory.keys.account.ID(), inv.From)
	}
}
