package node

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// TestReview13EndInvitationDialsNoNamedRelay (held): a stranger's long
// log's end that adds Dave, naming the stranger's relay, is kept as an
// invitation without its relays: Dave dials no relay it names, neither
// on receipt nor when he accepts (acceptLongInvitation asks only his own
// relays — none here, so the accept fails as unavailable).
func TestReview13EndInvitationDialsNoNamedRelay(t *testing.T) {
	malloryHome, _ := initHome(t, "mallory")
	daveHome, _ := initHome(t, "dave")
	mallory := startNode(t, malloryHome)
	dave := startNode(t, daveHome)
	ctx := context.Background()
	evil, dialed := r13MalformedRelay(t)
	g, err := mallory.CreateGroup(ctx, "lure")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	writePins(t, mallory, group, 30)
	l := mallory.reloadGroup(t, group)
	add, err := groupstate.Sign(mallory.keys.device, mallory.keys.cert, l.Head(), l.Head().Time, groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(add); err != nil {
		t.Fatal(err)
	}
	p := payload{Kind: "group-log", Group: g.ID, From: l.Head().Seq - 16, Relays: []string{evil}, Log: r13Raws(t, l.Entries(l.Head().Seq-16))}
	if err := dave.db.Update(func(tx *storage.Txn) error { return dave.applyGroupLog(tx, mallory.keys.account.ID(), p) }); err != nil {
		t.Fatal(err)
	}
	var inv *invitation
	if err := dave.db.View(func(tx *storage.Txn) (err error) {
		inv, _, err = dave.loadInvitation(tx, invKey(group, mallory))
		return err
	}); err != nil || inv.From == 0 {
		t.Fatalf("the end was not kept as an invitation: %v", err)
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := dave.JoinGroup(jctx, g.ID); err == nil {
		t.Fatal("joined with no relay to fetch the log from")
	}
	time.Sleep(200 * time.Millisecond)
	if n := dialed.Load(); n != 0 {
		t.Fatalf("Dave dialled the stranger's relay %d times", n)
	}
}
