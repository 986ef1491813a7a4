package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"github.com/peergram/peergram/crypto/groupmsg"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/metrics"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// relayWithHistory is a test relay with a hook on the history server's
// configuration and a bandwidth counter on the host.
func relayWithHistory(t *testing.T, dir string, hmod func(*history.Config)) (*testRelay, *metrics.BandwidthCounter) {
	t.Helper()
	bw := metrics.NewBandwidthCounter()
	return startRelayFull(t, dir, nil, nil, hmod, libp2p.BandwidthReporter(bw)), bw
}

func groupOfTwo(t *testing.T, relay *testRelay) (alice, bob *testNode, bobHome, gidHex string) {
	t.Helper()
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice = startNode(t, aliceHome, relay.addr)
	bob = startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Spin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		_, err := bob.Group(ctx, g.ID)
		return err == nil, nil
	})
	gid, _ := hex.DecodeString(g.ID)
	eventually(t, "the relay in the group's topic", func() (bool, error) {
		return slices.Contains(alice.groups.net.Peers([32]byte(gid)), relay.h.ID()), nil
	})
	return alice, bob, bobHome, g.ID
}

// TestHistoryIdleAfterExpiry: Bob is offline while Alice posts and the
// relay's copies expire (Retention) before he is back. The relay still
// numbers them, the query after Bob's cursor is empty, and Bob's node
// must pass the numbers (cursor to the relay's head) and go quiet, not
// ask again and again (found by an outside review).
func TestHistoryIdleAfterExpiry(t *testing.T) {
	t.Run("control: no expiry", func(t *testing.T) { idleAfterExpiry(t, 0) })
	t.Run("expired", func(t *testing.T) { idleAfterExpiry(t, time.Second) })
}

func idleAfterExpiry(t *testing.T, retention time.Duration) {
	relay, bw := relayWithHistory(t, t.TempDir(), func(c *history.Config) { c.Retention = retention })
	alice, bob, bobHome, gid := groupOfTwo(t, relay)
	ctx := context.Background()
	bob.stop()
	for i := range 3 {
		if _, err := alice.SendGroup(ctx, gid, fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * time.Second) // the relay's copies expire
	startNode(t, bobHome, relay.addr)
	time.Sleep(2 * time.Second)
	in0 := bw.GetBandwidthForProtocol(history.ProtocolID).TotalIn
	time.Sleep(5 * time.Second)
	in1 := bw.GetBandwidthForProtocol(history.ProtocolID).TotalIn
	rate := float64(in1-in0) / 5
	t.Logf("history protocol bytes in at the relay while idle: %.0f B/s (a Heads request is ~60 B; an idle node sends one per 25 s)", rate)
	if rate > 50 {
		t.Errorf("the node's history loop spins: ~%.0f B/s of Heads+Query to the relay with nothing to fetch", rate)
	}
}

// TestHistoryRefusedGroupStopsNothing: a group the relay refuses (here
// MaxGroups = 1) must not stop the repair of the groups it keeps.
func TestHistoryRefusedGroupStopsNothing(t *testing.T) {
	relay, _ := relayWithHistory(t, t.TempDir(), func(c *history.Config) { c.MaxGroups = 1 })
	alice, bob, _, gid := groupOfTwo(t, relay)
	ctx := context.Background()
	if _, err := alice.SendGroup(ctx, gid, "first"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first at Bob", func() (bool, error) { return len(groupTexts(t, bob, gid)) == 1, nil })
	// A second group: the relay is full.
	g2, err := alice.CreateGroup(ctx, "Second")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g2.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second group at Bob", func() (bool, error) {
		_, err := bob.Group(ctx, g2.ID)
		return err == nil, nil
	})
	time.Sleep(2 * time.Second) // Bob's loop is past its last Heads
	raw, _ := hex.DecodeString(gid)
	bob.groups.net.Leave([32]byte(raw)) // gossip brings Bob nothing more
	for i := range 3 {
		if _, err := alice.SendGroup(ctx, gid, fmt.Sprint("missed ", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && len(groupTexts(t, bob, gid)) < 4 {
		time.Sleep(100 * time.Millisecond)
	}
	got := groupTexts(t, bob, gid)
	t.Logf("Bob holds %q of the registered group", got)
	if len(got) < 4 {
		t.Errorf("one refused group stops history repair for every group (Bob holds %d of 4 after 15 s)", len(got))
	}
}

// TestGroupInfoKeys: Mallory, removed by Alice, sends Bob the log as it
// was before her removal (she is a member in it) with an info key of her
// own: Bob must not take it (membership is checked in his log, not hers).
// When Bob leaves, Alice, the owner, makes a new info key for the members
// that remain.
func TestGroupInfoKeys(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	mallory := newFakeDevice(t, relay, nil, "mallory")
	mallory.publish(t, nil, mallory.cert)
	for _, n := range []*testNode{alice, bob} {
		if _, err := n.AddContact(ctx, mallory.acct.ID().String(), "mallory"); err != nil {
			t.Fatal(err)
		}
	}
	g, err := alice.CreateGroup(ctx, "Secret title")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "mallory"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		gg, err := bob.Group(ctx, g.ID)
		return err == nil && len(gg.Members) == 3, nil
	})
	raw, _ := hex.DecodeString(g.ID)
	gid := groupstate.GroupID(raw)
	var prefix [][]byte
	_ = alice.db.View(func(tx *storage.Txn) error {
		l, err := alice.findGroup(tx, g.ID)
		if err != nil {
			return err
		}
		for _, e := range l.Entries(0) {
			b, _ := e.MarshalBinary()
			prefix = append(prefix, b)
		}
		return nil
	})
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "mallory"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removal at Bob", func() (bool, error) {
		gg, err := bob.Group(ctx, g.ID)
		return err == nil && len(gg.Members) == 2, nil
	})
	keysOf := func(n *testNode) (ks []infoKey) {
		_ = n.db.View(func(tx *storage.Txn) error { ks, _ = n.infoKeys(tx, gid); return nil })
		return ks
	}
	t.Logf("Bob's info keys after the removal: %d", len(keysOf(bob)))
	evil, _ := newInfoKey()
	if got := mallory.send(t, bob, payload{Kind: "group-log", Group: g.ID, Log: prefix, Info: []infoKey{evil}}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("answer %d", got)
	}
	time.Sleep(time.Second)
	ks := keysOf(bob)
	t.Logf("Bob's info keys after Mallory's payload: %d, last is Mallory's: %v", len(ks), ks[len(ks)-1].ID == evil.ID)
	if slices.ContainsFunc(ks, func(k infoKey) bool { return k.ID == evil.ID }) {
		t.Errorf("a removed member's info key was taken by a remaining member (and it is the one that seals: %v)", ks[len(ks)-1].ID == evil.ID)
	}
	before := len(keysOf(alice))
	if _, err := bob.LeaveGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the leave at Alice", func() (bool, error) {
		gg, err := alice.Group(ctx, g.ID)
		return err == nil && len(gg.Members) == 1, nil
	})
	time.Sleep(500 * time.Millisecond)
	t.Logf("Alice's info keys: %d before Bob left, %d after", before, len(keysOf(alice)))
	if len(keysOf(alice)) == before {
		t.Errorf("after a member leaves, no remaining member gets a new info key (the leaver's node made one and kept it)")
	}
}

// TestGroupPostedUnheard: Alice posts while no one hears her gossip (Bob
// is offline and the relay left the topic). The post is not lost: her
// node sees that no relay history holds it and hands it to her relay
// itself, and Bob gets it from there when he is back.
func TestGroupPostedUnheard(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.GroupStoreAfter = time.Second }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Void")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		_, err := bob.Group(ctx, g.ID)
		return err == nil, nil
	})
	if _, err := alice.SendGroup(ctx, g.ID, "heard"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "heard at Bob", func() (bool, error) { return len(groupTexts(t, bob, g.ID)) == 1, nil })
	bob.stop()
	gid, _ := hex.DecodeString(g.ID)
	relay.hist.Net().Leave([32]byte(gid)) // the relay hears no gossip of the group
	if _, err := alice.SendGroup(ctx, g.ID, "posted into the void"); err != nil {
		t.Fatal(err)
	}
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "the unheard post at Bob", func() (bool, error) {
		return slices.Equal(groupTexts(t, bob, g.ID), []string{"heard", "posted into the void"}), nil
	})
	eventually(t, "nothing left to hand over at Alice", func() (bool, error) {
		n := 0
		err := alice.db.View(func(tx *storage.Txn) (err error) {
			n, err = tx.Count(alice.st.groupUnconf, nil)
			return err
		})
		return n == 0, err
	})
}

// TestUnconfirmedNoHeadOfLine: a waiting post the relay refuses for good
// (here a group it does not keep) is dropped and holds up no other post
// (an outside review found it blocked every later post).
func TestUnconfirmedNoHeadOfLine(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.GroupStoreAfter = time.Second }, relay.addr)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Solo")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	gid := [32]byte(raw)
	c := history.NewClient(alice.host)
	held := func() int {
		pg, err := c.Query(ctx, relay.h.ID(), gid, 0, 0, true)
		if err != nil {
			return -1
		}
		return len(pg.Items)
	}
	eventually(t, "the group registered", func() (bool, error) { return held() == 0, nil })
	relay.hist.Net().Leave(gid) // the relay hears no gossip: posts reach it by Store only
	if _, err := alice.SendGroup(ctx, g.ID, "first"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "control: the first post handed over by Store", func() (bool, error) { return held() == 1, nil })

	// A stuck post: a group the relay does not know (key sorts first).
	var other [32]byte
	env, err := groupmsg.Seal(alice.keys.device, other, groupmsg.KindSenderKey, time.Now().UnixMilli(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.db.Update(func(tx *storage.Txn) error {
		v := binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(-time.Minute).UnixMilli()))
		return tx.Set(alice.st.groupUnconf, groupSeenKey(other, []byte(groupmsg.ID(env))), append(v, env...))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, g.ID, "second"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if held() == 2 {
			t.Log("the second post reached the relay")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n := 0
	_ = alice.db.View(func(tx *storage.Txn) (err error) { n, err = tx.Count(alice.st.groupUnconf, nil); return err })
	t.Errorf("with one post the relay answers CodeUnknown for first in groups.unconf, the next post never reaches the relay (relay holds %d; %d posts still unconfirmed)", held(), n)
}

// TestSignedByAdmin: a public name's record counts only if its device is
// on the list of an admin of the group the log shows.
func TestSignedByAdmin(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	owner := newFakeDevice(t, relay, nil, "owner")
	member := newFakeDevice(t, relay, nil, "member")
	create, err := groupstate.Sign(owner.dev, owner.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "c", Perms: groupstate.FlagChannel})
	if err != nil {
		t.Fatal(err)
	}
	l, err := groupstate.NewLog(create)
	if err != nil {
		t.Fatal(err)
	}
	add, err := groupstate.Sign(owner.dev, owner.cert, l.Head(), time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindAdd, Account: member.acct.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(add); err != nil {
		t.Fatal(err)
	}
	var lists [][]byte
	for _, f := range []*fakeDevice{owner, member} {
		dl, err := f.acct.SignDeviceList(nil, []identity.DeviceCert{*f.cert}, time.Now().Unix())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := dl.MarshalBinary()
		lists = append(lists, b)
	}
	if !signedByAdmin(l.State(), lists, owner.dev.ID()) {
		t.Error("the owner's device is not taken")
	}
	if signedByAdmin(l.State(), lists, member.dev.ID()) {
		t.Error("a subscriber's device is taken")
	}
	if signedByAdmin(l.State(), lists[1:], owner.dev.ID()) {
		t.Error("a device whose list is missing is taken")
	}
}
