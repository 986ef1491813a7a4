package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// r21Jobs returns n's outbox jobs with their payloads decoded.
func r21Jobs(t *testing.T, n *testNode) map[identity.AccountID][]payload {
	t.Helper()
	out := map[identity.AccountID][]payload{}
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.outbox, nil, func(_, v []byte) error {
			j, err := decodeJob(v)
			if err != nil {
				return err
			}
			var p payload
			if err := json.Unmarshal(j.Payload, &p); err != nil {
				return err
			}
			out[j.To] = append(out[j.To], p)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReview21DeclineHandsTokenToStrangers: Mallory, a stranger, invites
// Dave to a group she made, whose log also lists Victor (an account she
// picked: Dave has never heard of it). Dave declines. His node sends the
// group's log with his leave to every account the log lists — accounts
// the stranger chose — and each copy carries Dave's mailbox delivery
// token ("dt"), the token that is meant for his contacts only (a deposit
// with it may fill his whole mailbox; without it strangers share 10 %,
// docs/protocol.md "Delivery tokens"). Declining a stranger's invitation
// must not hand that stranger (or anyone it names) the token that lets it
// push Dave's contacts out of his mailbox.
func TestReview21DeclineHandsTokenToStrangers(t *testing.T) {
	daveHome, _ := initHome(t, "dave")
	dave := startNode(t, daveHome) // no relay: what it sends stays in its outbox
	ctx := context.Background()
	mallory, victor := r12NewUser(t, "mallory"), r12NewUser(t, "victor")
	self := dave.keys.account.ID()

	var nonce [32]byte
	_, _ = rand.Read(nonce[:])
	e, err := groupstate.Sign(mallory.dev, mallory.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "free crypto", Perms: groupstate.DefaultPerms, Ref: nonce})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := e.MarshalBinary()
	entries, raws := []*groupstate.Entry{e}, [][]byte{first}
	for _, a := range []identity.AccountID{victor.id(), self} {
		var b []byte
		e, b = r12Sign(t, mallory.dev, mallory.cert, e, groupstate.Change{Kind: groupstate.KindAdd, Account: a})
		entries, raws = append(entries, e), append(raws, b)
	}
	l, err := groupstate.Replay(entries)
	if err != nil {
		t.Fatal(err)
	}
	gid := l.Group()
	r18Deliver(t, dave, mallory.id(), payload{Kind: "group-log", Group: hex.EncodeToString(gid[:]), Log: raws})
	if !r18HasInvitation(t, dave, gid) {
		t.Fatal("premise: Mallory's group is not an invitation at Dave")
	}
	if err := dave.DeclineGroup(ctx, hex.EncodeToString(gid[:])); err != nil {
		t.Fatal(err)
	}
	jobs := r21Jobs(t, dave)
	tok := dave.tokenHex()
	var leaked []string
	for to, ps := range jobs {
		for _, p := range ps {
			if p.Kind == "group-log" && p.DT == tok {
				who := "someone"
				switch to {
				case mallory.id():
					who = "Mallory (the stranger whose invitation he declined)"
				case victor.id():
					who = "Victor (an account Mallory listed, unknown to Dave)"
				}
				leaked = append(leaked, who)
			}
		}
	}
	slices.Sort(leaked)
	if len(leaked) > 0 {
		t.Fatalf("Dave declined a stranger's invitation and his node sent his mailbox delivery token to %d non-contacts: %v", len(leaked), leaked)
	}
}

// TestReview21DeclineSendsLeftGroupsInfoKeys: Alice's group G had Mallory
// and Dave. Alice removed Mallory (the info key turned, so titles set
// after are for the others only) and retitled G; later Dave left G. His
// node still holds G's info keys. Mallory signs a branch of G off her
// own add (a member may pin and add), ending in an add of Dave past his
// leave, and sends it to Dave: a stranger's add back into a group he
// left is an invitation. Dave declines it: his node signs a leave after
// Mallory's branch and sends the log to its members — Mallory — with
// the info keys it holds for G (sendGroupLog attaches them). Mallory
// then holds the key of the titles set after her removal.
func TestReview21DeclineSendsLeftGroupsInfoKeys(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	daveHome, daveInfo := initHome(t, "dave")
	malloryHome, malloryInfo := initHome(t, "mallory")
	alice := startNode(t, aliceHome, relay.addr)
	dave := startNode(t, daveHome, relay.addr)
	mallory := startNode(t, malloryHome, relay.addr)
	addEachOther(t, alice, dave, aliceInfo, daveInfo)
	addEachOther(t, alice, mallory, aliceInfo, malloryInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Board")
	if err != nil {
		t.Fatal(err)
	}
	gid := r14Gid(t, g.ID)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"mallory"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "G at Mallory", func() (bool, error) { _, err := mallory.Group(ctx, g.ID); return err == nil, nil })
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"dave"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "G at Dave", func() (bool, error) { _, err := dave.Group(ctx, g.ID); return err == nil, nil })
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "mallory"); err != nil {
		t.Fatal(err)
	}
	const secret = "Board: merger with Initech, 14 March"
	if _, err := alice.SetGroupInfo(ctx, g.ID, chat.GroupInfoChange{Title: ptr(secret)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new title at Dave", func() (bool, error) {
		got, err := dave.Group(ctx, g.ID)
		return err == nil && got.Title == secret, nil
	})
	if _, err := dave.LeaveGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Mallory's removal at her node", func() (bool, error) {
		l := mallory.reloadGroup(t, gid)
		return l.State().Role(mallory.keys.account.ID()) == groupstate.RoleNone, nil
	})
	has := func(keys []infoKey, k infoKey) bool {
		return slices.ContainsFunc(keys, func(h infoKey) bool { return h.ID == k.ID && string(h.Key) == string(k.Key) })
	}
	malloryKeys := r14InfoKeys(t, mallory, gid)
	var unknown []infoKey
	for _, k := range r14InfoKeys(t, dave, gid) {
		if !has(malloryKeys, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		t.Fatal("premise: Dave holds no info key Mallory lacks")
	}

	// Mallory's branch off her own add (seq 1): pins, then an add of
	// Dave past his leave.
	daveHead := dave.reloadGroup(t, gid).Head().Seq
	ml := mallory.reloadGroup(t, gid)
	prev := ml.At(1)
	if prev == nil || prev.Change.Kind != groupstate.KindAdd || prev.Change.Account != mallory.keys.account.ID() {
		t.Fatalf("premise: entry 1 is not Mallory's add: %+v", prev)
	}
	var raws [][]byte
	for _, e := range ml.Entries(0)[:2] {
		b, _ := e.MarshalBinary()
		raws = append(raws, b)
	}
	var ref [32]byte
	for i := 0; prev.Seq+1 <= daveHead; i++ {
		c := groupstate.Change{Kind: groupstate.KindUnpin, Ref: ref}
		if i%2 == 0 {
			ref[0]++
			c = groupstate.Change{Kind: groupstate.KindPin, Ref: ref}
		}
		var b []byte
		prev, b = r12Sign(t, mallory.keys.device, mallory.keys.cert, prev, c)
		raws = append(raws, b)
	}
	_, b := r12Sign(t, mallory.keys.device, mallory.keys.cert, prev, groupstate.Change{Kind: groupstate.KindAdd, Account: dave.keys.account.ID()})
	raws = append(raws, b)

	// Dave offline from here (his outbox keeps what the decline sends).
	dave = r14Isolated(t, dave, nil)
	r18Deliver(t, dave, mallory.keys.account.ID(), payload{Kind: "group-log", Group: g.ID, Log: raws})
	if !r18HasInvitation(t, dave, gid) {
		t.Fatal("premise: Mallory's branch is not an invitation at Dave")
	}
	if err := dave.DeclineGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	var sent []infoKey
	for _, p := range r21Jobs(t, dave)[mallory.keys.account.ID()] {
		if p.Kind == "group-log" {
			sent = append(sent, p.Info...)
		}
	}
	var leaked []infoKey
	for _, k := range unknown {
		if has(sent, k) {
			leaked = append(leaked, k)
		}
	}
	if len(leaked) > 0 {
		opened, _ := openInfo(leaked, alice.reloadGroup(t, gid).State().Title)
		t.Fatalf("Dave declined Mallory's invitation and his node sent her %d of G's info keys turned after her removal; with them G's sealed title opens to %q",
			len(leaked), opened)
	}
}
