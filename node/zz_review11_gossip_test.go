package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
)

// Outside review 11: state entries of large groups over gossip.

// rv11SideEntry signs, with dev, a chain of its own group up to entry
// seq-1 and returns it: the predecessor of a junk entry at seq that no
// log of the group under attack holds.
func rv11SideEntry(t *testing.T, dev *identity.DeviceKey, cert *identity.DeviceCert, seq uint64) *groupstate.Entry {
	t.Helper()
	now := time.Now().UnixMilli()
	e, err := groupstate.Sign(dev, cert, nil, now, groupstate.Change{Kind: groupstate.KindCreate, Text: "side", Perms: groupstate.DefaultPerms})
	if err != nil {
		t.Fatal(err)
	}
	for e.Seq+1 < seq {
		var ref [32]byte
		_, _ = rand.Read(ref[:])
		if e, err = groupstate.Sign(dev, cert, e, now, groupstate.Change{Kind: groupstate.KindPin, Ref: ref}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func rv11Fetching(n *testNode, group groupstate.GroupID) bool {
	n.fetchMu.Lock()
	defer n.fetchMu.Unlock()
	return n.fetching[group] != nil
}

// TestReview11SubscriberJunkAheadStartsFetch: in a large channel a
// subscriber may change nothing but leave (before this change it could
// publish no state envelope at all: MayPublish let admins alone). Now a
// subscriber's entry "ahead" of the validator's state passes
// EntryMaySpread whatever its change — here a pin, which no subscriber
// may ever make, after a predecessor no log holds — and every member
// that takes it starts fetching the channel's whole log from its relays
// (five attempts over 2 min 42 s, each the whole log from entry 0).
// One 1 KB envelope, repeated, keeps every member of the channel
// downloading its log. Expected: the subscriber's junk starts no fetch.
func TestReview11SubscriberJunkAheadStartsFetch(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateChannel(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	eventually(t, "Bob subscribed", holdsEntry(bob, group, head))
	eventually(t, "Alice and Bob in the channel's topic", func() (bool, error) {
		return len(alice.groups.net.Peers(group)) > 0 && len(bob.groups.net.Peers(group)) > 0, nil
	})
	// Let registrations and the like settle, so that no fetch runs.
	time.Sleep(time.Second)
	if rv11Fetching(alice, group) {
		t.Fatal("Alice fetches before the attack")
	}
	prev := rv11SideEntry(t, bob.keys.device, bob.keys.cert, head.Seq+5)
	var ref [32]byte
	_, _ = rand.Read(ref[:])
	junk, err := groupstate.Sign(bob.keys.device, bob.keys.cert, prev, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	jraw, _ := junk.MarshalBinary()
	env, err := groupmsg.Seal(bob.keys.device, group, groupmsg.KindState, time.Now().UnixMilli(), jraw)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.groups.net.Publish(ctx, group, env); err != nil {
		t.Fatal(err)
	}
	started := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !started; time.Sleep(20 * time.Millisecond) {
		started = rv11Fetching(alice, group)
	}
	if started {
		t.Errorf("a subscriber's junk pin at entry %d (the channel at %d) made the owner fetch the channel's log from her relays", junk.Seq, head.Seq)
	}
}

// rv11Counter counts the log lines whose message contains sub.
type rv11Counter struct {
	sub string
	n   *atomic.Int64
}

func (c rv11Counter) Enabled(context.Context, slog.Level) bool { return true }
func (c rv11Counter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, c.sub) {
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool {
			msg += " " + a.String()
			return true
		})
		if strings.Contains(msg, "does not verify") {
			c.n.Add(1)
		}
	}
	return nil
}
func (c rv11Counter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c rv11Counter) WithGroup(string) slog.Handler      { return c }

// TestReview11StrangerJunkJoinsReachMembers: a stranger who has a
// group's invite link (a public channel's, say) signs joins, each with a
// valid proof, at an old place in the log after a predecessor no log
// holds, and publishes them with plain gossipsub. EntryMaySpread lets
// each through (the state "permits" a join by the link), so a member's
// validator accepts it — no one is scored down — and the member's
// takeStateEntry loads the group's log and replays it up to that place
// before the entry fails to chain. The threat model counts a junk join
// as two signature checks at each validator. Expected: none of the junk
// joins reaches applyGroupLog.
func TestReview11StrangerJunkJoinsReachMembers(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	var dropped atomic.Int64
	alice := startNodeWith(t, aliceHome, func(c *Config) {
		largeGroups(c)
		c.Logger = slog.New(rv11Counter{sub: "group log dropped", n: &dropped})
	}, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	inv, err := alice.CreateInvite(ctx, g.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); err != nil {
			t.Fatal(err)
		}
	}
	head := alice.reloadGroup(t, group).Head()
	_ = bob // (a member besides Alice: the group is over the pairwise limit)
	link, err := parseInviteLink(inv.Link)
	if err != nil {
		t.Fatal(err)
	}
	key := link.key
	ref := link.ref()

	topic := rv11Stranger(t, alice, group)
	const joins = 5
	for i := range joins {
		acct, err := identity.NewAccountKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := identity.NewDeviceKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := acct.CertifyDevice(dev, "x", time.Now().Unix())
		if err != nil {
			t.Fatal(err)
		}
		prev := rv11SideEntry(t, dev, cert, head.Seq-1)
		e, err := groupstate.Sign(dev, cert, prev, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindJoin, Ref: ref, Text: groupstate.InviteProof(key, group, acct.ID())})
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.reloadGroup(t, group).State().Permits(e); err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		er, _ := e.MarshalBinary()
		env, err := groupmsg.Seal(dev, group, groupmsg.KindState, time.Now().UnixMilli(), er)
		if err != nil {
			t.Fatal(err)
		}
		if err := topic.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	t.Logf("Alice replayed and dropped %d of %d junk joins", dropped.Load(), joins)
	if n := dropped.Load(); n > 0 {
		t.Errorf("%d of the stranger's %d junk joins reached Alice's applyGroupLog (the log loaded and replayed for each)", n, joins)
	}
}

// rv11Stranger is a peer running plain gossipsub (none of our checks) in
// group's topic, connected to n.
func rv11Stranger(t *testing.T, n *testNode, group groupstate.GroupID) *pubsub.Topic {
	t.Helper()
	ctx := context.Background()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	pctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(pctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(), pubsub.WithFloodPublish(true),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return groupmsg.ID(m.Data) }))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(groupmsg.Topic(group))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stranger in the node's topic", func() (bool, error) {
		return slices.Contains(topic.ListPeers(), n.host.ID()), nil
	})
	return topic
}

// rv11Account is a fresh account with one device.
func rv11Account(t *testing.T) (*identity.AccountKey, *identity.DeviceKey, *identity.DeviceCert) {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "x", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	return acct, dev, cert
}

// TestReview11StrangerJoinsDatedAheadHeldInMemory: a stranger with a
// group's link publishes joins — valid ones: the next entry, a valid
// proof — each by a fresh account and dated 30 minutes ahead (within
// maxDeferAhead). Validators do not look at entry times, so every member
// takes each; applyGroupLog puts the node's whole log together in front
// of the entry and deferLog keeps that whole log in memory, one per
// (group, sender): a 1 KB envelope costs each member a copy of the
// group's whole log (a large group's: megabytes) for up to an hour, up
// to maxDeferred (256) of them, which also crowds out every other
// group's deferred logs. Expected: what a member keeps for the
// stranger's joins is about the size of the joins.
func TestReview11StrangerJoinsDatedAheadHeldInMemory(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	inv, err := alice.CreateInvite(ctx, g.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "admin"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SetGroupRole(ctx, g.ID, "bob", "member"); err != nil {
			t.Fatal(err)
		}
	}
	l := alice.reloadGroup(t, group)
	logBytes := 0
	for _, e := range l.Entries(0) {
		b, _ := e.MarshalBinary()
		logBytes += len(b)
	}
	link, err := parseInviteLink(inv.Link)
	if err != nil {
		t.Fatal(err)
	}
	topic := rv11Stranger(t, alice, group)
	const joins = 8
	joinBytes := 0
	for range joins {
		acct, dev, cert := rv11Account(t)
		e, err := groupstate.Sign(dev, cert, l.Head(), time.Now().Add(30*time.Minute).UnixMilli(), groupstate.Change{Kind: groupstate.KindJoin, Ref: link.ref(), Text: groupstate.InviteProof(link.key, group, acct.ID())})
		if err != nil {
			t.Fatal(err)
		}
		er, _ := e.MarshalBinary()
		env, err := groupmsg.Seal(dev, group, groupmsg.KindState, time.Now().UnixMilli(), er)
		if err != nil {
			t.Fatal(err)
		}
		joinBytes += len(env)
		if err := topic.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	alice.deferMu.Lock()
	kept, logs := 0, 0
	for k, p := range alice.deferred {
		if k.group != group {
			continue
		}
		logs++
		for _, b := range p.Log {
			kept += len(b)
		}
	}
	alice.deferMu.Unlock()
	t.Logf("the stranger sent %d joins (%d bytes); Alice keeps %d logs of the group (%d bytes; the log is %d entries, %d bytes)", joins, joinBytes, logs, kept, len(l.Entries(0)), logBytes)
	if kept > 2*joinBytes {
		t.Errorf("Alice keeps %d bytes in memory for a stranger's %d joins of %d bytes: %d copies of the group's log", kept, joins, joinBytes, logs)
	}
}

// TestReview11SubscriberChangesNothing (held if it passes): a channel's
// subscriber signs the channel's next entries — a title, a pin, the
// removal of the owner, its own promotion — and publishes each over
// gossip; the owner's node applies none of them.
func TestReview11SubscriberChangesNothing(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, largeGroups, relay.addr)
	bob := startNodeWith(t, bobHome, largeGroups, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateChannel(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	eventually(t, "Bob subscribed", holdsEntry(bob, group, head))
	eventually(t, "Alice and Bob in the channel's topic", func() (bool, error) {
		return len(alice.groups.net.Peers(group)) > 0 && len(bob.groups.net.Peers(group)) > 0, nil
	})
	var ref [32]byte
	_, _ = rand.Read(ref[:])
	for i, c := range []groupstate.Change{
		{Kind: groupstate.KindTitle, Text: "owned"},
		{Kind: groupstate.KindPin, Ref: ref},
		{Kind: groupstate.KindRemove, Account: alice.keys.account.ID()},
		{Kind: groupstate.KindPromote, Account: bob.keys.account.ID()},
	} {
		e, err := groupstate.Sign(bob.keys.device, bob.keys.cert, head, time.Now().UnixMilli(), c)
		if err != nil {
			t.Fatal(err)
		}
		er, _ := e.MarshalBinary()
		env, err := groupmsg.Seal(bob.keys.device, group, groupmsg.KindState, time.Now().UnixMilli()-int64(i), er)
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.groups.net.Publish(ctx, group, env); err != nil {
			t.Logf("publish %s: %v", c.Kind, err)
		}
	}
	time.Sleep(2 * time.Second)
	if got := alice.reloadGroup(t, group).Head(); got.Hash() != head.Hash() {
		t.Fatalf("Alice's channel took Bob's %s", got.Change.Kind)
	}
}
