package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/senderkey"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// TestGroupCreate: a group is created with its owner, listed, found by ID
// or by a unique title, kept across a restart; a title two groups share
// names neither; a stored log edited behind the node's back is refused.
func TestGroupCreate(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	home, info := initHome(t, "alice")
	alice := startNode(t, home, relay.addr)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "  Book club ")
	if err != nil {
		t.Fatal(err)
	}
	if g.Title != "Book club" || g.Role != "owner" || len(g.ID) != 64 || len(g.Members) != 1 ||
		g.Members[0].AccountID != info.AccountID || g.Members[0].Role != "owner" || g.Members[0].Name != "alice" {
		t.Fatalf("created %+v", g)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 129)} {
		if _, err := alice.CreateGroup(ctx, bad); !errors.Is(err, chat.ErrInvalid) {
			t.Fatalf("title %q: %v", bad, err)
		}
	}
	if _, err := alice.CreateGroup(ctx, "Hikers"); err != nil {
		t.Fatal(err)
	}
	alice.stop()
	alice = startNode(t, home, relay.addr)
	gs, err := alice.Groups(ctx)
	if err != nil || len(gs) != 2 || gs[0].Title != "Book club" || gs[1].Title != "Hikers" {
		t.Fatalf("after restart: %+v (%v)", gs, err)
	}
	for _, name := range []string{g.ID, strings.ToUpper(g.ID), "Book club"} {
		if got, err := alice.Group(ctx, name); err != nil || got.ID != g.ID {
			t.Fatalf("group %q: %+v (%v)", name, got, err)
		}
	}
	if _, err := alice.CreateGroup(ctx, "Hikers"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Group(ctx, "Hikers"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("a shared title: %v", err)
	}
	if _, err := alice.Group(ctx, "nobody's"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("unknown: %v", err)
	}
	// The stored creation entry edited: the log no longer verifies.
	id, _ := hex.DecodeString(g.ID)
	if err := alice.db.Update(func(tx *storage.Txn) error {
		raw, err := tx.Get(alice.st.groupLog, append(id, 0, 0, 0, 0, 0, 0, 0, 0))
		if err != nil {
			return err
		}
		raw = append([]byte(nil), raw...)
		raw[len(raw)-70] ^= 1
		return tx.Set(alice.st.groupLog, append(id, 0, 0, 0, 0, 0, 0, 0, 0), raw)
	}); err != nil {
		t.Fatal(err)
	}
	// It is read as no group: an error by its ID, left out of the list
	// (the others stay usable: TestGroupDamagedLogIsolated).
	if _, err := alice.Group(ctx, g.ID); err == nil || errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("a tampered log was read: %v", err)
	}
	listed, err := alice.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range listed {
		if got.ID == g.ID {
			t.Fatal("a tampered log was listed")
		}
	}
}

// TestGroupAddSyncsLog: the owner adds a contact; the contact's node gets
// the whole log over the pairwise session and holds the same group, the
// owner shown by its alias; adding the same member again is refused.
func TestGroupAddSyncsLog(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Book club")
	if err != nil {
		t.Fatal(err)
	}
	g, err = alice.AddGroupMembers(ctx, "Book club", []string{"bob"})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != 2 || g.Members[1].AccountID != bobInfo.AccountID || g.Members[1].Role != "member" || g.Members[1].Name != "bob" {
		t.Fatalf("after add: %+v", g)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("adding a member again: %v", err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"nobody"}); !errors.Is(err, chat.ErrUnknownContact) {
		t.Fatalf("adding an unknown contact: %v", err)
	}
	var got chat.Group
	eventually(t, "the group at Bob", func() (bool, error) {
		got, err = bob.Group(ctx, g.ID)
		return err == nil, nil
	})
	if got.Title != "Book club" || got.Role != "member" || len(got.Members) != 2 ||
		got.Members[0].AccountID != aliceInfo.AccountID || got.Members[0].Role != "owner" || got.Members[0].Name != "alice" {
		t.Fatalf("at Bob: %+v", got)
	}
	// Bob leaves; Alice learns it from the log he sends; the owner cannot.
	if left, err := bob.LeaveGroup(ctx, g.ID); err != nil || left.Role != "none" {
		t.Fatalf("leave: %+v (%v)", left, err)
	}
	eventually(t, "Bob gone at Alice", func() (bool, error) {
		ag, err := alice.Group(ctx, g.ID)
		return err == nil && len(ag.Members) == 1, nil
	})
	if _, err := alice.LeaveGroup(ctx, g.ID); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("the owner leaves: %v", err)
	}
}

// TestGroupLogAttacks: logs a node must not take — a group the node is
// not a member of; a group a stranger added it to (an invitation at most,
// and only when a member sends it); a log whose entry was edited; a log
// under another group's ID — leave it without the group.
func TestGroupLogAttacks(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	mallory := newFakeDevice(t, relay, nil, "mallory") // becomes a contact
	mallory.publish(t, nil, mallory.cert)
	if _, err := bob.AddContact(ctx, mallory.acct.ID().String(), "mallory"); err != nil {
		t.Fatal(err)
	}
	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	logOf := func(f *fakeDevice, members ...identity.AccountID) (string, [][]byte) {
		create, err := groupstate.Sign(f.dev, f.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "g", Perms: groupstate.DefaultPerms})
		if err != nil {
			t.Fatal(err)
		}
		entries := []*groupstate.Entry{create}
		for _, a := range members {
			e, err := groupstate.Sign(f.dev, f.cert, entries[len(entries)-1], time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindAdd, Account: a})
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, e)
		}
		var raws [][]byte
		for _, e := range entries {
			b, _ := e.MarshalBinary()
			raws = append(raws, b)
		}
		id := create.Hash()
		return hex.EncodeToString(id[:]), raws
	}
	send := func(f *fakeDevice, group string, raws [][]byte) {
		if got := f.send(t, bob, payload{Kind: "group-log", Group: group, Log: raws}, newMessageID(t)); got != int(directOK) {
			t.Fatalf("answer %d", got)
		}
	}
	notMember, raws := logOf(mallory)
	send(mallory, notMember, raws)
	byStranger, sraws := logOf(stranger, bob.keys.account.ID())
	send(stranger, byStranger, sraws)
	edited, eraws := logOf(mallory, bob.keys.account.ID())
	eraws[1] = append([]byte(nil), eraws[1]...)
	eraws[1][len(eraws[1])-70] ^= 1
	send(mallory, edited, eraws)
	_, wraws := logOf(mallory, bob.keys.account.ID())
	send(mallory, strings.Repeat("00", 32), wraws)
	// The stranger's group, passed on by Mallory: not a member of it,
	// then a member that did not add Bob.
	send(mallory, byStranger, sraws)
	withMallory, mraws := logOf(stranger, bob.keys.account.ID(), mallory.acct.ID())
	send(mallory, withMallory, mraws)
	// Carol, a contact but no member, passes on a group Mallory added Bob
	// to: logs come from members only.
	carol := newFakeDevice(t, relay, nil, "carol")
	carol.publish(t, nil, carol.cert)
	if _, err := bob.AddContact(ctx, carol.acct.ID().String(), "carol"); err != nil {
		t.Fatal(err)
	}
	passedOn, praws := logOf(mallory, bob.keys.account.ID())
	send(carol, passedOn, praws)
	// A genuine one last: once it is there, the others were handled.
	genuine, graws := logOf(mallory, bob.keys.account.ID())
	send(mallory, genuine, graws)
	eventually(t, "the genuine group", func() (bool, error) {
		_, err := bob.Group(ctx, genuine)
		return err == nil, nil
	})
	gs, err := bob.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The groups a stranger added Bob to, sent by a member, are
	// invitations, not groups he is in.
	roles := map[string]string{}
	for _, g := range gs {
		roles[g.ID] = g.Role
	}
	want := map[string]string{genuine: "member", byStranger: "invited", withMallory: "invited"}
	if len(roles) != len(want) {
		t.Fatalf("Bob holds %+v", gs)
	}
	for id, r := range want {
		if roles[id] != r {
			t.Fatalf("Bob holds %+v", gs)
		}
	}
}

// groupTexts returns the texts of a group at n, oldest first.
func groupTexts(t *testing.T, n *testNode, group string) []string {
	t.Helper()
	msgs, err := n.GroupMessages(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

// TestGroupMessages: two members post in a group over gossip; each holds
// both messages, sealed with the sender's chain, which came over the
// pairwise session (a message that arrives before its sender's chain is
// held, not lost); the relay saw neither text.
func TestGroupMessages(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Book club")
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
	eventually(t, "each in the other's topic", func() (bool, error) {
		return len(alice.groups.net.Peers([32]byte(gid))) > 0 && len(bob.groups.net.Peers([32]byte(gid))) > 0, nil
	})
	if _, err := alice.SendGroup(ctx, g.ID, "hello club "+testMarker); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroup(ctx, "Book club", "hi alice"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{alice, bob} {
		eventually(t, "both messages", func() (bool, error) {
			got := groupTexts(t, n, g.ID)
			return len(got) == 2, nil
		})
	}
	msgs, err := bob.GroupMessages(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Text == "hello club "+testMarker && (m.From != aliceInfo.AccountID || m.FromName != "alice" || m.Outgoing) {
			t.Fatalf("Alice's message at Bob: %+v", m)
		}
	}
	relay.close()
	assertNoMarker(t, relayDir)
}

// testMarker is a string that must never appear in a relay's files.
const testMarker = "PEERGRAM-GROUP-MARKER-51c7"

// assertNoMarker fails if any file under dir holds testMarker.
func assertNoMarker(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(testMarker)) {
			return fmt.Errorf("%s holds the marker", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGroupKeyAttacks: Sender Keys chains a node must not take — one a
// member hands out for another device (it would make the node unable to
// read that device: the first chain received stays), and one from an
// account that is neither a member nor a contact.
func TestGroupKeyAttacks(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	mallory := newFakeDevice(t, relay, nil, "mallory")
	mallory.publish(t, nil, mallory.cert)
	if _, err := bob.AddContact(ctx, mallory.acct.ID().String(), "mallory"); err != nil {
		t.Fatal(err)
	}
	stranger := newFakeDevice(t, relay, nil, "stranger")
	stranger.publish(t, nil, stranger.cert)
	// Mallory's group, Bob in it.
	create, err := groupstate.Sign(mallory.dev, mallory.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "g", Perms: groupstate.DefaultPerms})
	if err != nil {
		t.Fatal(err)
	}
	add, err := groupstate.Sign(mallory.dev, mallory.cert, create, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindAdd, Account: bob.keys.account.ID()})
	if err != nil {
		t.Fatal(err)
	}
	gid := create.Hash()
	c1, _ := create.MarshalBinary()
	c2, _ := add.MarshalBinary()
	mallory.send(t, bob, payload{Kind: "group-log", Group: hex.EncodeToString(gid[:]), Log: [][]byte{c1, c2}}, newMessageID(t))
	eventually(t, "the group at Bob", func() (bool, error) {
		_, err := bob.Group(ctx, hex.EncodeToString(gid[:]))
		return err == nil, nil
	})
	key := func(f *fakeDevice, dev identity.DeviceID) {
		s, err := senderkey.NewSender(rand.Reader, gid, dev, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := s.Distribution().MarshalBinary()
		f.send(t, bob, payload{Kind: "group-key", Group: hex.EncodeToString(gid[:]), Log: [][]byte{d}}, newMessageID(t))
	}
	has := func(dev identity.DeviceID) bool {
		var ok bool
		if err := bob.db.View(func(tx *storage.Txn) (err error) {
			ok, err = tx.Has(bob.st.groupKeys, receiverKey(gid, dev, 1))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	key(mallory, stranger.dev.ID())  // a chain for another device
	key(stranger, stranger.dev.ID()) // not a member, not a contact
	key(mallory, mallory.dev.ID())   // genuine, last
	eventually(t, "Mallory's own chain", func() (bool, error) { return has(mallory.dev.ID()), nil })
	if has(stranger.dev.ID()) {
		t.Fatal("Bob took a chain for the stranger's device")
	}
}

// TestGroupRemoval: Alice removes Carol. Every node learns it from the
// log; Alice's next message goes under a new chain that Carol never got.
// Carol, still listening to the topic as anyone in the mesh could, gets
// the envelope and cannot read it; the text is in no file of her home.
func TestGroupRemoval(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "bob", "carol"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	addEachOther(t, bob, carol, infos["bob"], infos["carol"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "club")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the group", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 3, nil
		})
	}
	for _, n := range nodes {
		eventually(t, "topic peers", func() (bool, error) { return len(n.groups.net.Peers([32]byte(gid))) >= 2, nil })
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := alice.SendGroup(ctx, g.ID, "before the removal"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroup(ctx, g.ID, "bob before the removal"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{alice, bob, carol} {
		eventually(t, "the first messages", func() (bool, error) { return len(groupTexts(t, n, g.ID)) == 2, nil })
	}
	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol out, at Carol and Bob", func() (bool, error) {
		cg, err1 := carol.Group(ctx, g.ID)
		bg, err2 := bob.Group(ctx, g.ID)
		return err1 == nil && err2 == nil && cg.Role == "none" && len(bg.Members) == 2, nil
	})
	listenAsOutsider(t, carol, [32]byte(gid))
	secret := "after the removal " + testMarker
	env := nextFrom(t, carol, [32]byte(gid), alice.keys.account.ID(), groupmsg.KindSenderKey, func() {
		if _, err := alice.SendGroup(ctx, g.ID, secret); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the message at Bob", func() (bool, error) {
		for _, text := range groupTexts(t, bob, g.ID) {
			if text == secret {
				return true, nil
			}
		}
		return false, nil
	})
	if err := carol.takeGroupMessage([32]byte(gid), env); err != nil {
		t.Fatal(err)
	}
	for _, text := range groupTexts(t, carol, g.ID) {
		if text == secret {
			t.Fatal("Carol read a message sent after her removal")
		}
	}
	// Her chain of Alice's device cannot open it either.
	h, err := senderkey.PeekHeader(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := carol.db.View(func(tx *storage.Txn) error {
		raw, err := tx.Get(carol.st.groupKeys, receiverKey([32]byte(gid), alice.keys.device.ID(), 1))
		if err != nil {
			return err
		}
		r, err := senderkey.ParseReceiver(raw)
		if err != nil {
			return err
		}
		if h.KeyID == 1 {
			return fmt.Errorf("Alice did not start a new chain")
		}
		if _, err := r.Open(env.Payload); err == nil {
			return fmt.Errorf("Carol's old chain opened the new message")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Bob, who learnt of the removal from the log, also starts a new chain.
	secret2 := "bob after the removal " + testMarker
	env2 := nextFrom(t, carol, [32]byte(gid), bob.keys.account.ID(), groupmsg.KindSenderKey, func() {
		if _, err := bob.SendGroup(ctx, g.ID, secret2); err != nil {
			t.Fatal(err)
		}
	})
	if err := carol.takeGroupMessage([32]byte(gid), env2); err != nil {
		t.Fatal(err)
	}
	for _, text := range groupTexts(t, carol, g.ID) {
		if text == secret2 {
			t.Fatal("Carol read Bob's message sent after her removal")
		}
	}
	carol.stop()
	assertNoMarker(t, homes["carol"])
}

// TestGroupHeldBounded: a member's device that sends messages under key
// IDs it never hands out cannot make the node hold more than a bounded
// number of them, nor a large one (review finding: 40 junk envelopes
// under 40 key IDs held 14 MB).
func TestGroupHeldBounded(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	home, _ := initHome(t, "bob")
	bob := startNode(t, home, relay.addr)
	g, err := bob.CreateGroup(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := hex.DecodeString(g.ID)
	var dev identity.DeviceID
	dev[0] = 7
	junk := func(keyID uint32, size int) *groupnet.Message {
		p := make([]byte, size)
		p[0] = 1
		binary.BigEndian.PutUint32(p[1:], keyID)
		var id [32]byte
		rand.Read(id[:])
		return &groupnet.Message{Envelope: &groupmsg.Envelope{Group: [32]byte(gid), Kind: groupmsg.KindSenderKey, Time: time.Now().UnixMilli(), Device: dev, Payload: p},
			Account: bob.keys.account.ID(), ID: string(id[:])}
	}
	if err := bob.takeGroupMessage([32]byte(gid), junk(1, maxHeldPayload+1)); err == nil {
		t.Fatal("a held message over the size bound was taken")
	}
	for i := range maxPendingDevice + 50 {
		_ = bob.takeGroupMessage([32]byte(gid), junk(uint32(i+1), 1000))
	}
	var held int
	if err := bob.db.View(func(tx *storage.Txn) (err error) {
		held, err = tx.Count(bob.st.groupPend, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if held != maxPendingDevice {
		t.Fatalf("%d messages held from one device (bound %d)", held, maxPendingDevice)
	}
}

// TestGroupEarlyChainsBounded: a contact cannot make the node store
// chains for any number of groups it does not hold (review finding).
func TestGroupEarlyChainsBounded(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	home, _ := initHome(t, "bob")
	bob := startNode(t, home, relay.addr)
	ctx := context.Background()
	mallory := newFakeDevice(t, relay, nil, "mallory")
	mallory.publish(t, nil, mallory.cert)
	if _, err := bob.AddContact(ctx, mallory.acct.ID().String(), "mallory"); err != nil {
		t.Fatal(err)
	}
	for range maxEarlyChains + 8 {
		var gid [32]byte
		rand.Read(gid[:])
		s, err := senderkey.NewSender(rand.Reader, gid, mallory.dev.ID(), 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := s.Distribution().MarshalBinary()
		if got := mallory.send(t, bob, payload{Kind: "group-key", Group: hex.EncodeToString(gid[:]), Log: [][]byte{d}}, newMessageID(t)); got != int(directOK) {
			t.Fatalf("answer %d", got)
		}
	}
	var stored int
	if err := bob.db.View(func(tx *storage.Txn) (err error) {
		stored, err = bob.earlyChains(tx, mallory.dev.ID())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if stored != maxEarlyChains {
		t.Fatalf("%d chains stored for groups Bob does not hold (bound %d)", stored, maxEarlyChains)
	}
}

// TestGroupOfflineMember: a member offline while 50 messages are posted
// gets all 50 from its home relay's history when it starts, once each
// and in order; the relay stored only ciphertext.
func TestGroupOfflineMember(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Night shift "+testMarker)
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
	// Bob's chain reaches Alice before he goes: one message of his.
	if _, err := bob.SendGroup(ctx, g.ID, "going offline"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's message at Alice", func() (bool, error) { return len(groupTexts(t, alice, g.ID)) == 1, nil })
	bob.stop()

	var want []string
	for i := range 50 {
		text := fmt.Sprintf("while you were away %02d %s", i, testMarker)
		if _, err := alice.SendGroup(ctx, g.ID, text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	// Past gossipsub's message cache (3 heartbeats), so nothing but the
	// relay's history can bring them.
	time.Sleep(4 * time.Second)
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "all 50 at Bob", func() (bool, error) {
		return len(groupTexts(t, bob, g.ID)) >= 51, nil
	})
	time.Sleep(time.Second) // nothing more comes
	got := groupTexts(t, bob, g.ID)
	if len(got) != 51 || got[0] != "going offline" || !slices.Equal(got[1:], want) {
		t.Fatalf("Bob holds %d messages: %q", len(got), got)
	}
	relay.close()
	assertNoMarker(t, relayDir)
}

// TestGroupGapRepaired: a member online whose gossip misses messages (it
// is out of the topic's mesh) gets them from its relay's history while
// it runs, once each and in order.
func TestGroupGapRepaired(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Gaps")
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
	if _, err := alice.SendGroup(ctx, g.ID, "first"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first message at Bob", func() (bool, error) { return len(groupTexts(t, bob, g.ID)) == 1, nil })
	gid, _ := hex.DecodeString(g.ID)
	bob.groups.net.Leave([32]byte(gid)) // gossip brings Bob nothing more
	want := []string{"first"}
	for i := range 5 {
		text := fmt.Sprintf("missed %d", i)
		if _, err := alice.SendGroup(ctx, g.ID, text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	eventually(t, "the missed messages at Bob", func() (bool, error) { return len(groupTexts(t, bob, g.ID)) >= 6, nil })
	time.Sleep(time.Second)
	if got := groupTexts(t, bob, g.ID); !slices.Equal(got, want) {
		t.Fatalf("Bob holds %q, want %q", got, want)
	}
}

// TestGroupRoles: the owner promotes and demotes a member, and the
// member's node sees it; a member cannot promote or demote anyone.
func TestGroupRoles(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Roles")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	roleAt := func(n *testNode, acct string) string {
		got, err := n.Group(ctx, g.ID)
		if err != nil {
			return ""
		}
		for _, m := range got.Members {
			if m.AccountID == acct {
				return m.Role
			}
		}
		return ""
	}
	eventually(t, "the group at Bob", func() (bool, error) { return roleAt(bob, bobInfo.AccountID) == "member", nil })
	if _, err := bob.SetGroupRole(ctx, g.ID, bobInfo.AccountID, "admin"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a member promotes: %v", err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "owner"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("role owner: %v", err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob an admin at Bob", func() (bool, error) { return roleAt(bob, bobInfo.AccountID) == "admin", nil })
	if _, err := bob.SetGroupRole(ctx, g.ID, aliceInfo.AccountID, "member"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("an admin demotes the owner: %v", err)
	}
	if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob a member again at Bob", func() (bool, error) { return roleAt(bob, bobInfo.AccountID) == "member", nil })
}

// TestGroupNonContacts: members who are not each other's contacts talk in
// a group (each node learns the other members' devices from the
// directory); an account added by someone who is not its contact gets an
// invitation, sees nothing of the group until it joins, and then reads
// what is posted.
func TestGroupNonContacts(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, carol, dave := nodes["alice"], nodes["bob"], nodes["carol"], nodes["dave"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	addEachOther(t, alice, carol, infos["alice"], infos["carol"])
	ctx := context.Background()
	eventually(t, "Dave's keys at Alice", func() (bool, error) {
		c, err := alice.AddContact(ctx, infos["dave"].AccountID, "dave")
		return err == nil && c.Devices == 1, nil
	})
	g, err := alice.CreateGroup(ctx, "Strangers")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol", "dave"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the group at a contact of Alice", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && got.Role == "member", nil
		})
	}
	// Bob and Carol are strangers to each other.
	if _, err := carol.SendGroup(ctx, g.ID, "hi from carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Carol's message at Bob", func() (bool, error) {
		return slices.Contains(groupTexts(t, bob, g.ID), "hi from carol"), nil
	})
	// Carol is not Bob's contact: he sees the name she gives herself,
	// marked as such; Alice by his alias for her.
	msgs, err := bob.GroupMessages(ctx, g.ID)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("Bob's messages: %+v (%v)", msgs, err)
	}
	if m := msgs[len(msgs)-1]; m.Text != "hi from carol" || m.FromName != "carol" || m.FromContact {
		t.Errorf("Carol's message at Bob: %+v", m)
	}
	info, err := bob.Group(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range info.Members {
		want, ok := map[string]chat.GroupMember{
			infos["alice"].AccountID: {Name: "alice", Contact: true},
			infos["bob"].AccountID:   {Name: "bob", Contact: true},
			infos["carol"].AccountID: {Name: "carol", Contact: false},
		}[m.AccountID]
		if ok && (m.Name != want.Name || m.Contact != want.Contact) {
			t.Errorf("member %s at Bob: %+v, want %+v", m.AccountID, m, want)
		}
	}
	if _, err := bob.SendGroup(ctx, g.ID, "hi from bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's message at Carol", func() (bool, error) {
		return slices.Contains(groupTexts(t, carol, g.ID), "hi from bob"), nil
	})

	// Dave: an invitation. What Alice posts meanwhile is his to read
	// once he joins (he was added before it), from the relay's history,
	// with the chain Alice handed him with it.
	if _, err := alice.SendGroup(ctx, g.ID, "before dave joins"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invitation at Dave", func() (bool, error) {
		gs, err := dave.Groups(ctx)
		return err == nil && len(gs) == 1 && gs[0].Role == "invited" && gs[0].Title == "Strangers", err
	})
	if _, err := dave.GroupMessages(ctx, g.ID); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("messages of an invitation: %v", err)
	}
	if _, err := dave.SendGroup(ctx, g.ID, "not yet"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("a post before joining: %v", err)
	}
	if _, err := dave.JoinGroup(ctx, "peergram://join/x"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("an invite link: %v", err)
	}
	joined, err := dave.JoinGroup(ctx, "Strangers")
	if err != nil || joined.Role != "member" || len(joined.Members) != 4 {
		t.Fatalf("join: %+v (%v)", joined, err)
	}
	if _, err := dave.JoinGroup(ctx, "Strangers"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("join twice: %v", err)
	}
	if _, err := alice.SendGroup(ctx, g.ID, "welcome dave"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Alice's messages at Dave", func() (bool, error) {
		got := groupTexts(t, dave, g.ID)
		if slices.Contains(got, "welcome dave") && slices.Contains(got, "before dave joins") {
			return true, nil
		}
		return false, fmt.Errorf("Dave has %q", got) // (said on a timeout: which one is missing)
	})
}

// TestGroupFeatures: replies, mentions (an event at the member named),
// polls (votes counted once per member, the latest; a close by anyone
// but the creator and out-of-range votes count for nothing, even when a
// member's node sends them past its own checks) and pins.
func TestGroupFeatures(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := alice.CreateGroup(ctx, "Features")
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
	events := alice.Subscribe(ctx)
	hello, err := alice.SendGroup(ctx, g.ID, "hello")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "hello at Bob", func() (bool, error) { return slices.Contains(groupTexts(t, bob, g.ID), "hello"), nil })

	// A reply that mentions Alice.
	if _, err := bob.PostGroup(ctx, g.ID, chat.GroupPost{Text: "x", ReplyTo: strings.Repeat("0", 64)}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a reply to nothing: %v", err)
	}
	reply, err := bob.PostGroup(ctx, g.ID, chat.GroupPost{Text: "hi @Alice, welcome", ReplyTo: hello.ID})
	if err != nil || len(reply.Mentions) != 1 || reply.Mentions[0] != aliceInfo.AccountID {
		t.Fatalf("reply %+v (%v)", reply, err)
	}
	var mention, own *chat.GroupMessage
	for mention == nil {
		select {
		case ev := <-events:
			if ev.Type == chat.EventGroupMention {
				mention = ev.Group
			}
			if ev.Type == chat.EventGroupMessage && ev.Group.ID == hello.ID {
				own = ev.Group
				// A group event carries no 1:1 message.
				if raw, err := json.Marshal(ev); err != nil || bytes.Contains(raw, []byte(`"message":`)) {
					t.Fatalf("a group event encodes as %s (%v)", raw, err)
				}
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no mention event at Alice")
		}
	}
	// Her own post reached her own event stream (another client of her
	// node shows it), before Bob's answer.
	if own == nil || !own.Outgoing || own.Text != "hello" {
		t.Fatalf("Alice's own post on her event stream: %+v", own)
	}
	if !mention.MentionsMe || mention.ReplyTo != hello.ID || mention.Text != "hi @Alice, welcome" {
		t.Fatalf("the mention at Alice: %+v", mention)
	}

	// A poll.
	pm, err := alice.CreatePoll(ctx, g.ID, chat.PollSpec{Question: "Lunch?", Options: []string{"pizza", "sushi"}})
	if err != nil || pm.Poll == nil || pm.Poll.ID != pm.ID || pm.Text != "Lunch?" {
		t.Fatalf("poll %+v (%v)", pm, err)
	}
	if _, err := alice.CreatePoll(ctx, g.ID, chat.PollSpec{Question: "One?", Options: []string{"only"}}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a poll of one option: %v", err)
	}
	eventually(t, "the poll at Bob", func() (bool, error) {
		_, err := bob.GroupPoll(ctx, g.ID, pm.ID)
		return err == nil, nil
	})
	if _, err := bob.VotePoll(ctx, g.ID, pm.ID, []int{0, 1}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("two options in a single-choice poll: %v", err)
	}
	bobEvents := bob.Subscribe(ctx)
	if _, err := bob.VotePoll(ctx, g.ID, pm.ID, []int{1}); err != nil {
		t.Fatal(err)
	}
	// His own vote's new results reach his own event stream.
	for voted := false; !voted; {
		select {
		case ev := <-bobEvents:
			voted = ev.Type == chat.EventGroupPoll && ev.Group.ID == pm.ID && ev.Group.Poll != nil &&
				len(ev.Group.Poll.Options) == 2 && ev.Group.Poll.Options[1].Votes == 1
		case <-time.After(10 * time.Second):
			t.Fatal("no poll event at Bob for his own vote")
		}
	}
	if _, err := alice.VotePoll(ctx, g.ID, pm.ID, []int{0}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.VotePoll(ctx, g.ID, pm.ID, []int{0}); err != nil { // changes his mind
		t.Fatal(err)
	}
	// Past Bob's own checks: a close of Alice's poll and a vote out of
	// range; neither counts anywhere.
	if _, err := bob.postGroup(ctx, g.ID, &groupBody{Close: pm.ID}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.postGroup(ctx, g.ID, &groupBody{Vote: &voteBody{Poll: pm.ID, Options: []int{7}}}, nil); err != nil {
		t.Fatal(err)
	}
	// Bodies no honest node sends are dropped by the receiving nodes:
	// two kinds at once, a vote without a poll ID, too many mentions,
	// not JSON.
	for _, raw := range []string{
		`{"text":"poll and text","poll":{"q":"q","o":["a","b"]}}`,
		`{"vote":{"p":"","o":[0]}}`,
		`{"text":"x","at":[` + strings.Repeat(`"`+aliceInfo.AccountID+`",`, 50) + `"` + aliceInfo.AccountID + `"]}`,
		`not json`,
	} {
		if _, err := bob.sealGroup(ctx, g.ID, &groupBody{}, []byte(raw), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.ClosePoll(ctx, g.ID, pm.ID); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("Bob closes Alice's poll: %v", err)
	}
	last, err := bob.SendGroup(ctx, g.ID, "after the votes")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's last message at Alice", func() (bool, error) {
		return slices.Contains(groupTexts(t, alice, g.ID), "after the votes"), nil
	})
	for _, n := range []*testNode{alice, bob} {
		p, err := n.GroupPoll(ctx, g.ID, pm.ID)
		if err != nil || p.Closed || p.Voters != 1 || p.Options[0].Votes != 1 || p.Options[1].Votes != 0 {
			// Bob's out-of-range vote replaced his valid one and counts
			// for nothing: one voter (Alice), pizza 1.
			t.Fatalf("poll at a node: %+v (%v)", p, err)
		}
	}
	closed, err := alice.ClosePoll(ctx, g.ID, pm.ID)
	if err != nil || !closed.Closed {
		t.Fatalf("close: %+v (%v)", closed, err)
	}
	eventually(t, "the poll closed at Bob", func() (bool, error) {
		p, err := bob.GroupPoll(ctx, g.ID, pm.ID)
		return err == nil && p.Closed, nil
	})
	if _, err := bob.VotePoll(ctx, g.ID, pm.ID, []int{1}); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a vote after the close: %v", err)
	}
	msgs, err := alice.GroupMessages(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m.Text)
	}
	if !slices.Equal(texts, []string{"hello", "hi @Alice, welcome", "Lunch?", "after the votes"}) {
		// (Bob's malformed bodies were stored at Bob, who sent them past
		// his checks, but not at Alice.)
		t.Fatalf("Alice lists %q (votes and closes are not messages)", texts)
	}

	// Pins; Alice's event stream says her group changed (a client
	// refreshes it from there).
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	aliceEvents := alice.Subscribe(sctx)
	if _, err := bob.PinGroupMessage(ctx, g.ID, last.ID, true); err != nil {
		t.Fatal(err)
	}
	groupEvent := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-aliceEvents:
			got = ev.Type == chat.EventGroup && ev.GroupID == g.ID
		case <-groupEvent:
			t.Fatal("no group event at Alice for Bob's pin")
		}
	}
	eventually(t, "the pin at Alice", func() (bool, error) {
		got, err := alice.Group(ctx, g.ID)
		return err == nil && slices.Equal(got.Pinned, []string{last.ID}), nil
	})
	if _, err := bob.PinGroupMessage(ctx, g.ID, last.ID, true); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("pin twice: %v", err)
	}
	if _, err := alice.PinGroupMessage(ctx, g.ID, last.ID, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unpin at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && len(got.Pinned) == 0, nil
	})
}

// TestGroupBan: a banned member is out (its node sees it and cannot
// post); a ban is lifted by an unban or by an admin adding the account
// again; a member without the right cannot ban.
func TestGroupBan(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Bans")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the group at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "member", nil
	})
	if _, err := bob.BanGroupMember(ctx, g.ID, "alice", true); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a member bans the owner: %v", err)
	}
	banned, err := alice.BanGroupMember(ctx, g.ID, "bob", true)
	if err != nil || len(banned.Members) != 1 || !slices.Equal(banned.Banned, []string{bobInfo.AccountID}) {
		t.Fatalf("ban: %+v (%v)", banned, err)
	}
	eventually(t, "Bob out at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "none", nil
	})
	if _, err := bob.SendGroup(ctx, g.ID, "still here?"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a banned member posts: %v", err)
	}
	if _, err := alice.BanGroupMember(ctx, g.ID, "bob", true); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("ban twice: %v", err)
	}
	unbanned, err := alice.BanGroupMember(ctx, g.ID, "bob", false)
	if err != nil || len(unbanned.Banned) != 0 {
		t.Fatalf("unban: %+v (%v)", unbanned, err)
	}
	if _, err := alice.BanGroupMember(ctx, g.ID, "bob", false); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("unban twice: %v", err)
	}
	// An admin's add lifts a ban too (groupstate's rule, as Telegram).
	if _, err := alice.BanGroupMember(ctx, g.ID, "bob", true); err != nil {
		t.Fatal(err)
	}
	if got, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil || len(got.Members) != 2 || len(got.Banned) != 0 {
		t.Fatalf("the owner adds a banned account: %+v (%v)", got, err)
	}
	eventually(t, "Bob back at Bob", func() (bool, error) {
		got, err := bob.Group(ctx, g.ID)
		return err == nil && got.Role == "member", nil
	})
}

// TestGroupInviteLink: Dave, who knows no one, joins by an invite link
// (the log from the relay, a signed join sent to every member); members
// and Dave then read each other, Dave sees the title (the owner's node
// sends him the info keys); a revoked link lets no one in.
func TestGroupInviteLink(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	homes := map[string]string{}
	infos := map[string]Info{}
	nodes := map[string]*testNode{}
	for _, name := range []string{"alice", "bob", "dave", "erin"} {
		homes[name], infos[name] = initHome(t, name)
		nodes[name] = startNode(t, homes[name], relay.addr)
	}
	alice, bob, dave, erin := nodes["alice"], nodes["bob"], nodes["dave"], nodes["erin"]
	addEachOther(t, alice, bob, infos["alice"], infos["bob"])
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "Open door")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	inv, err := alice.CreateInvite(ctx, g.ID, 0)
	if err != nil || !strings.HasPrefix(inv.Link, "peergram://join/"+g.ID+"/") || !strings.Contains(inv.Link, "relay=") {
		t.Fatalf("invite %+v (%v)", inv, err)
	}
	if _, err := dave.JoinGroup(ctx, "peergram://join/"+g.ID+"/short"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a malformed link: %v", err)
	}
	// The link works as soon as it is made: the relay holds the log
	// that names it.
	gid, _ := hex.DecodeString(g.ID)
	lastAtRelay := func() groupstate.Kind {
		entries, _, err := history.NewClient(erin.host).Log(ctx, relay.h.ID(), [32]byte(gid))
		if err != nil || len(entries) == 0 {
			return 0
		}
		last, err := groupstate.Parse(entries[len(entries)-1])
		if err != nil {
			return 0
		}
		return last.Change.Kind
	}
	if k := lastAtRelay(); k != groupstate.KindInviteCreate {
		t.Fatalf("the relay's log ends with kind %d once the link is made", k)
	}
	joined, err := dave.JoinGroup(ctx, inv.Link)
	if err != nil {
		t.Fatalf("a join by a link just made: %v", err)
	}
	if joined.Role != "member" || len(joined.Members) != 3 {
		t.Fatalf("joined %+v", joined)
	}
	if _, err := dave.JoinGroup(ctx, inv.Link); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("join twice: %v", err)
	}
	for _, n := range []*testNode{alice, bob} {
		eventually(t, "Dave a member at a member", func() (bool, error) {
			got, err := n.Group(ctx, g.ID)
			return err == nil && len(got.Members) == 3, nil
		})
	}
	eventually(t, "the title at Dave", func() (bool, error) {
		got, err := dave.Group(ctx, g.ID)
		return err == nil && got.Title == "Open door", nil
	})
	if _, err := dave.SendGroup(ctx, g.ID, "hello from dave"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{alice, bob} {
		eventually(t, "Dave's message at a member", func() (bool, error) {
			return slices.Contains(groupTexts(t, n, g.ID), "hello from dave"), nil
		})
	}
	if _, err := alice.SendGroup(ctx, g.ID, "welcome dave"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Alice's message at Dave", func() (bool, error) {
		return slices.Contains(groupTexts(t, dave, g.ID), "welcome dave"), nil
	})

	// Revoked: Erin's join is refused.
	if _, err := alice.RevokeInvite(ctx, g.ID, inv.Link); err != nil {
		t.Fatal(err)
	}
	if k := lastAtRelay(); k != groupstate.KindInviteRevoke {
		t.Fatalf("the relay's log ends with kind %d once the link is revoked", k)
	}
	if _, err := erin.JoinGroup(ctx, inv.Link); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a join by a revoked link: %v", err)
	}
	if gs, err := erin.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("Erin holds %+v (%v)", gs, err)
	}
}

// TestChannelSubscribe: a channel's owner posts, a subscriber who joined
// by link reads but cannot post (its own node refuses, and its
// validators would drop such an envelope anywhere), the subscriber count
// follows, and a post forwarded into a 1:1 chat names the channel.
func TestChannelSubscribe(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	carolHome, carolInfo := initHome(t, "carol")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	carol := startNode(t, carolHome, relay.addr)
	addEachOther(t, bob, carol, bobInfo, carolInfo)
	ctx := context.Background()
	ch, err := alice.CreateChannel(ctx, "News")
	if err != nil || !ch.Channel || ch.Subscribers != 1 {
		t.Fatalf("channel %+v (%v)", ch, err)
	}
	inv, err := alice.CreateInvite(ctx, ch.ID, time.Hour)
	if err != nil || inv.Expires == nil {
		t.Fatalf("invite %+v (%v)", inv, err)
	}
	if _, err := bob.JoinGroup(ctx, inv.Link); err != nil {
		t.Fatalf("Bob subscribes by a link just made: %v", err)
	}
	eventually(t, "two subscribers at Alice", func() (bool, error) {
		got, err := alice.Group(ctx, ch.ID)
		return err == nil && got.Subscribers == 2, nil
	})
	if _, err := bob.SendGroup(ctx, ch.ID, "may I?"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a subscriber posts: %v", err)
	}
	gid, _ := hex.DecodeString(ch.ID)
	for _, kind := range []groupmsg.Kind{groupmsg.KindSenderKey, groupmsg.KindEpoch, groupmsg.KindGrants} {
		env, err := groupmsg.Seal(bob.keys.device, [32]byte(gid), kind, time.Now().UnixMilli(), []byte("forged post"))
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.groups.net.Publish(ctx, [32]byte(gid), env); err == nil {
			t.Fatalf("a subscriber's envelope of kind %d passed its own node's validators", kind)
		}
	}
	post, err := alice.SendGroup(ctx, ch.ID, "breaking: it works")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the post at Bob", func() (bool, error) {
		return slices.Equal(groupTexts(t, bob, ch.ID), []string{"breaking: it works"}), nil
	})
	if _, err := bob.ForwardGroupMessage(ctx, ch.ID, post.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the forwarded post at Carol", func() (bool, error) {
		msgs, err := carol.Messages(ctx, "bob", false)
		return err == nil && len(msgs) == 1 && msgs[0].Text == "breaking: it works" && msgs[0].Forwarded != nil &&
			msgs[0].Forwarded.From == "News" && msgs[0].Forwarded.Author == "" && msgs[0].Forwarded.SentAt.Equal(post.SentAt), nil
	})
	if _, err := bob.ForwardGroupMessage(ctx, ch.ID, strings.Repeat("ab", 32), "carol"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("forwarding no message: %v", err)
	}
}

// TestChannelPublicName: Alice makes her channel public as @dailynews;
// Bob, a stranger, joins with the name and reads her posts; the name is
// Alice's (Bob cannot take it for his own channel); an unknown name is
// an unknown group.
func TestChannelPublicName(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	ch, err := alice.CreateChannel(ctx, "Daily news")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.PublishChannelName(ctx, ch.ID, "Bad Name!"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a malformed name: %v", err)
	}
	if _, err := alice.SendGroup(ctx, ch.ID, "before you came"); err != nil {
		t.Fatal(err)
	}
	pub, err := alice.PublishChannelName(ctx, ch.ID, "@dailynews")
	if err != nil || pub.PublicName != "dailynews" {
		t.Fatalf("publish: %+v (%v)", pub, err)
	}
	if _, err := bob.JoinGroup(ctx, "@nobody_here"); !errors.Is(err, chat.ErrUnknownGroup) {
		t.Fatalf("an unknown name: %v", err)
	}
	joined, err := bob.JoinGroup(ctx, "@dailynews")
	if err != nil || !joined.Channel || joined.Role != "member" || joined.PublicName != "dailynews" {
		t.Fatalf("join by name: %+v (%v)", joined, err)
	}
	if g, err := bob.Group(ctx, ch.ID); err != nil || g.PublicName != "dailynews" {
		t.Fatalf("the name at a subscriber: %+v (%v)", g, err)
	}
	if _, err := alice.SendGroup(ctx, ch.ID, "morning edition"); err != nil {
		t.Fatal(err)
	}
	// A channel's history is its subscribers': the post from before Bob
	// came too.
	for deadline := time.Now().Add(20 * time.Second); !slices.Equal(groupTexts(t, bob, ch.ID), []string{"before you came", "morning edition"}); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			ag, _ := alice.Group(ctx, ch.ID)
			bg, _ := bob.Group(ctx, ch.ID)
			var pend, seen, keys int
			_ = bob.db.View(func(tx *storage.Txn) error {
				pend, _ = tx.Count(bob.st.groupPend, nil)
				seen, _ = tx.Count(bob.st.groupSeen, nil)
				keys, _ = tx.Count(bob.st.groupKeys, nil)
				return nil
			})
			gid, _ := hex.DecodeString(ch.ID)
			pg, herr := history.NewClient(bob.host).Query(ctx, relay.h.ID(), [32]byte(gid), 0, 0, true)
			items := -1
			if pg != nil {
				items = len(pg.Items)
			}
			t.Fatalf("no post at Bob; Alice sees %d members, Bob %d (title %q); Bob: %d held, %d seen, %d keys; relay items %d (%v); bob topic peers %v",
				len(ag.Members), len(bg.Members), bg.Title, pend, seen, keys, items, herr, bob.groups.net.Peers([32]byte(gid)))
		}
	}
	mine, err := bob.CreateChannel(ctx, "Copycat")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.PublishChannelName(ctx, mine.ID, "dailynews"); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("taking a taken name: %v", err)
	}
}

// TestGroupDamagedLogIsolated: one group's stored log that no longer
// verifies (a damaged store) makes that group fail with a clear error
// and leaves every other group working: an operation on a group named by
// its ID reads that group's log alone.
func TestGroupDamagedLogIsolated(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	home, _ := initHome(t, "alice")
	alice := startNode(t, home, relay.addr)
	ctx := context.Background()
	one, err := alice.CreateGroup(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	two, err := alice.CreateGroup(ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(two.ID)
	if err := alice.db.Update(func(tx *storage.Txn) error {
		return tx.Set(alice.st.groupLog, groupEntryKey(groupstate.GroupID(raw), 0), []byte("not an entry"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, one.ID, "still here"); err != nil {
		t.Fatalf("a post in a sound group beside a damaged one: %v", err)
	}
	if g, err := alice.Group(ctx, one.ID); err != nil || g.Title != "one" {
		t.Fatalf("the sound group: %+v (%v)", g, err)
	}
	if _, err := alice.Group(ctx, two.ID); err == nil || !strings.Contains(err.Error(), "entry 0") {
		t.Fatalf("the damaged group: %v", err)
	}
	gs, err := alice.Groups(ctx)
	if err != nil || len(gs) != 1 || gs[0].ID != one.ID {
		t.Fatalf("groups beside a damaged one: %+v (%v)", gs, err)
	}
}
