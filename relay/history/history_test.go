package history

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/storage"
)

// member is an account with one device.
type member struct {
	acct *identity.AccountKey
	dev  *identity.DeviceKey
	cert *identity.DeviceCert
	list *identity.DeviceList
}

func newMember(t *testing.T) *member {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "d", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	list, err := acct.SignDeviceList(nil, []identity.DeviceCert{*cert}, time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	return &member{acct, dev, cert, list}
}

func (m *member) listBytes(t *testing.T) []byte {
	t.Helper()
	b, err := m.list.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (m *member) seal(t *testing.T, group [32]byte, text string) []byte {
	t.Helper()
	b, err := groupmsg.Seal(m.dev, group, groupmsg.KindSenderKey, time.Now().UnixMilli(), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// groupLog signs a group created by owner with others added, and
// returns its ID and entries.
func groupLog(t *testing.T, owner *member, others ...*member) ([32]byte, [][]byte) {
	t.Helper()
	ref := [32]byte{}
	_, _ = rand.Read(ref[:])
	e, err := groupstate.Sign(owner.dev, owner.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "g", Perms: groupstate.DefaultPerms, Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	l, err := groupstate.NewLog(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		e, err = groupstate.Sign(owner.dev, owner.cert, l.Head(), time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindAdd, Account: o.acct.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	var raws [][]byte
	for _, e := range l.Entries(0) {
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	return l.Group(), raws
}

// openAll lets every device of the given members publish.
type openAll map[identity.DeviceID]identity.AccountID

func (o openAll) MayPublish(_ [32]byte, d identity.DeviceID, _ groupmsg.Kind) (identity.AccountID, error) {
	if a, ok := o[d]; ok {
		return a, nil
	}
	return identity.AccountID{}, groupnet.ErrUnknownDevice
}

type relayUnderTest struct {
	h   host.Host
	db  *storage.DB
	srv *Server
	dir string
}

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func startServer(t *testing.T, dir string, h host.Host, mod func(*Config)) *relayUnderTest {
	t.Helper()
	db, err := storage.Open(storage.Options{Dir: dir, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DB: db, Host: h}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	r := &relayUnderTest{h: h, db: db, srv: srv, dir: dir}
	var once sync.Once
	t.Cleanup(func() { once.Do(r.stop) })
	return r
}

func (r *relayUnderTest) stop() {
	r.srv.Close()
	r.db.Close()
}

// peerNet is a member's host running gossip, connected to the relay.
type peerNet struct {
	h   host.Host
	net *groupnet.Net
}

func startPeer(t *testing.T, relay host.Host, group [32]byte, members openAll) *peerNet {
	t.Helper()
	h := newHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	n, err := groupnet.New(ctx, groupnet.Config{Host: h, Members: members})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Join(group); err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, peer.AddrInfo{ID: relay.ID(), Addrs: relay.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return &peerNet{h, n}
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publish waits until the peer and the relay see each other in the
// topic, then publishes.
func (p *peerNet) publish(t *testing.T, r *relayUnderTest, group [32]byte, env []byte) {
	t.Helper()
	eventually(t, "the relay and the peer in each other's topic", func() bool {
		return slices.Contains(p.net.Peers(group), r.h.ID()) && slices.Contains(r.srv.Net().Peers(group), p.h.ID())
	})
	if err := p.net.Publish(context.Background(), group, env); err != nil {
		t.Fatal(err)
	}
}

func texts(t *testing.T, items []Item, group [32]byte) []string {
	t.Helper()
	var out []string
	for _, it := range items {
		e, err := groupmsg.Open(group, it.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(e.Payload))
	}
	return out
}

// TestStoreAndQuery: a relay registered for a group stores what members
// publish, once each and in order, and serves it by cursor in pages, by
// IDs, and by sequence numbers; a Heads request wakes when it stores
// more. Everything survives a restart of the relay.
func TestStoreAndQuery(t *testing.T) {
	alice, bob := newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob)
	rh := newHost(t)
	dir := t.TempDir()
	r := startServer(t, dir, rh, nil)
	c := NewClient(newHost(t))
	ctx := context.Background()
	if err := c.h.Connect(ctx, peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query(ctx, rh.ID(), gid, 0, 10, false); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("a query before registration: %v", err)
	}
	// Heads names a group the relay keeps nothing of, so that its member
	// registers it (again: the relay's registration lapsed, or its store
	// was lost).
	if h, err := c.Heads(ctx, rh.ID(), []Head{{Group: gid, Seq: 7}}, 0); err != nil || len(h) != 1 || h[0].Group != gid || !h[0].Unknown {
		t.Fatalf("heads of an unknown group: %+v (%v)", h, err)
	}
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t)}, alice.dev); err != nil {
		t.Fatal(err)
	}
	members := openAll{alice.dev.ID(): alice.acct.ID(), bob.dev.ID(): bob.acct.ID()}
	pa := startPeer(t, rh, gid, members)

	// A Heads request waits for the first message.
	heads := make(chan []Head, 1)
	go func() {
		h, err := c.Heads(ctx, rh.ID(), []Head{{Group: gid, Seq: 0}}, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		heads <- h
	}()
	var want []string
	for i := range 25 {
		text := fmt.Sprintf("message %02d", i)
		env := alice.seal(t, gid, text)
		pa.publish(t, r, gid, env)
		want = append(want, text)
		if i == 0 {
			select {
			case h := <-heads:
				if len(h) != 1 || h[0].Group != gid || h[0].Seq < 1 {
					t.Fatalf("heads %+v", h)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Heads did not wake")
			}
			// The same envelope again is stored once.
			if err := pa.net.Publish(ctx, gid, env); err == nil {
				t.Log("published a duplicate")
			}
		}
	}
	eventually(t, "25 stored", func() bool {
		p, err := c.Query(ctx, rh.ID(), gid, 0, 0, true)
		return err == nil && len(p.Items) == 25
	})
	check := func() {
		t.Helper()
		var got []string
		after := uint64(0)
		for pages := 0; ; pages++ {
			p, err := c.Query(ctx, rh.ID(), gid, after, 10, false)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, texts(t, p.Items, gid)...)
			if !p.More {
				if pages != 2 || p.First != 1 || p.Head != 25 {
					t.Fatalf("%d pages, first %d, head %d", pages+1, p.First, p.Head)
				}
				break
			}
			after = p.Items[len(p.Items)-1].Seq
		}
		// The relay's order is the order it received them in (gossip
		// may reorder); members order by the sender's time.
		if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
			t.Fatalf("got %q", got)
		}
		p, err := c.Get(ctx, rh.ID(), gid, []uint64{3, 7, 99})
		if err != nil {
			t.Fatal(err)
		}
		if g := texts(t, p.Items, gid); len(g) != 2 || g[0] != got[2] || g[1] != got[6] {
			t.Fatalf("Get: %q", g)
		}
	}
	check()

	// Restart: the history and the registration stay.
	r.stop()
	rh2 := newHost(t)
	r2 := startServer(t, dir, rh2, nil)
	if err := c.h.Connect(ctx, peer.AddrInfo{ID: rh2.ID(), Addrs: rh2.Addrs()}); err != nil {
		t.Fatal(err)
	}
	rh = rh2
	check()
	pb := startPeer(t, rh2, gid, members)
	pb.publish(t, r2, gid, bob.seal(t, gid, "after the restart"))
	eventually(t, "a message after the restart", func() bool {
		p, err := c.Query(ctx, rh2.ID(), gid, 25, 0, false)
		return err == nil && len(p.Items) == 1 && p.Items[0].Seq == 26
	})
}

// TestRelayChecksSenders: the relay stores only envelopes from devices of
// members of the registered log: not a non-member's, not a forged one,
// not another group's — even when they reach it from a peer that
// forwards everything.
func TestRelayChecksSenders(t *testing.T) {
	alice, bob, mallory := newMember(t), newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob)
	other, _ := groupLog(t, mallory)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := NewClient(newHost(t))
	ctx := context.Background()
	if err := c.h.Connect(ctx, peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// Mallory's list comes along: the relay must ignore it (not a member).
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t), mallory.listBytes(t)}, bob.dev); err != nil {
		t.Fatal(err)
	}
	attacker := startAttacker(t, r, gid)
	forged := alice.seal(t, gid, "forged")
	forged[len(forged)-1] ^= 1
	for _, env := range [][]byte{
		mallory.seal(t, gid, "non-member"),
		forged,
		alice.seal(t, other, "another group's"),
	} {
		if err := attacker.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	// A genuine one last, from an honest peer (the attacker is
	// graylisted by now): once it is stored, the others were handled.
	time.Sleep(200 * time.Millisecond)
	honest := startPeer(t, rh, gid, openAll{bob.dev.ID(): bob.acct.ID()})
	honest.publish(t, r, gid, bob.seal(t, gid, "genuine"))
	eventually(t, "the genuine message", func() bool {
		p, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
		return err == nil && len(p.Items) > 0
	})
	time.Sleep(500 * time.Millisecond)
	p, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(t, p.Items, gid); fmt.Sprint(got) != "[genuine]" {
		t.Fatalf("the relay holds %q", got)
	}
}

// TestRegisterRefusals: a log that does not verify, a log of another
// group, and a malformed request are refused.
func TestRegisterRefusals(t *testing.T) {
	alice, mallory := newMember(t), newMember(t)
	gid, entries := groupLog(t, alice)
	_, otherEntries := groupLog(t, alice)
	rh := newHost(t)
	startServer(t, t.TempDir(), rh, nil)
	c := NewClient(newHost(t))
	ctx := context.Background()
	if err := c.h.Connect(ctx, peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	tampered := [][]byte{bytes.Clone(entries[0])}
	tampered[0][len(tampered[0])-1] ^= 1
	badList := alice.listBytes(t)
	badList[len(badList)-1] ^= 1
	sign := func(m *registerMsg, by *member, relay string, at time.Time) {
		m.Time, m.Device = at.UnixMilli(), by.dev.ID()
		m.Sig = by.dev.Sign(RegisterLabel, registerSigned(relay, m.Group, m.Time))
	}
	relay := string(rh.ID())
	for _, tc := range []struct {
		name string
		mod  func(*registerMsg)
	}{
		{"tampered entry", func(m *registerMsg) { m.Entries = tampered }},
		{"another group's log", func(m *registerMsg) { m.Entries = otherEntries }},
		{"no log", func(m *registerMsg) { m.Entries = nil }},
		{"forged device list", func(m *registerMsg) { m.Lists = [][]byte{badList} }},
		{"no signature", func(m *registerMsg) { m.Sig = nil }},
		{"signed by a non-member", func(m *registerMsg) {
			m.Lists = append(m.Lists, mallory.listBytes(t))
			sign(m, mallory, relay, time.Now())
		}},
		{"signed for another relay", func(m *registerMsg) { sign(m, alice, relay+"x", time.Now()) }},
		{"signed an hour ago", func(m *registerMsg) { sign(m, alice, relay, time.Now().Add(-time.Hour)) }},
		{"bad signature", func(m *registerMsg) { m.Sig[0] ^= 1 }},
	} {
		m := &registerMsg{Group: gid, Entries: entries, Lists: [][]byte{alice.listBytes(t)}}
		sign(m, alice, relay, time.Now())
		tc.mod(m)
		_, ans, err := c.roundTrip(ctx, rh.ID(), typeRegister, m.appendBody(nil), typeStatus)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		st, err := decodeStatus(ans)
		if err != nil || st.Code != CodeInvalid {
			t.Errorf("%s: %+v (%v)", tc.name, st, err)
		}
	}
	if _, err := c.Query(ctx, rh.ID(), gid, 0, 0, true); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("a refused group is kept: %v", err)
	}
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t)}, alice.dev); err != nil {
		t.Fatalf("the genuine registration: %v", err)
	}
}

// TestQuota: over a group's quota the oldest envelopes go; a client sees
// it in First.
func TestQuota(t *testing.T) {
	alice := newMember(t)
	gid, entries := groupLog(t, alice)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, func(c *Config) { c.MaxGroupMessages = 10 })
	c := NewClient(newHost(t))
	ctx := context.Background()
	if err := c.h.Connect(ctx, peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t)}, alice.dev); err != nil {
		t.Fatal(err)
	}
	p := startPeer(t, rh, gid, openAll{alice.dev.ID(): alice.acct.ID()})
	for i := range 15 {
		p.publish(t, r, gid, alice.seal(t, gid, fmt.Sprint(i)))
	}
	eventually(t, "the head at 15", func() bool {
		pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, true)
		return err == nil && pg.Head == 15
	})
	pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Items) != 10 || pg.First != 6 || pg.Items[0].Seq != 6 || pg.Items[9].Seq != 15 {
		t.Fatalf("%d items, first %d: %q", len(pg.Items), pg.First, texts(t, pg.Items, gid))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// startAttacker is a peer that runs gossipsub with none of our checks,
// connected to the relay, in group's topic.
func startAttacker(t *testing.T, r *relayUnderTest, group [32]byte) *pubsub.Topic {
	t.Helper()
	h := newHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(), pubsub.WithFloodPublish(true),
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
	if err := h.Connect(ctx, peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the attacker and the relay in each other's topic", func() bool {
		return slices.Contains(topic.ListPeers(), r.h.ID()) && slices.Contains(r.srv.Net().Peers(group), h.ID())
	})
	return topic
}

// appendLog signs changes by m on top of raws and returns the longer log.
func appendLog(t *testing.T, raws [][]byte, m *member, cs ...groupstate.Change) [][]byte {
	t.Helper()
	var entries []*groupstate.Entry
	for _, r := range raws {
		e, err := groupstate.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	l, err := groupstate.Replay(entries)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(raws)
	for _, c := range cs {
		e, err := groupstate.Sign(m.dev, m.cert, l.Head(), max(time.Now().UnixMilli(), l.Head().Time), c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		out = append(out, b)
	}
	return out
}

func pins(n int) []groupstate.Change {
	var cs []groupstate.Change
	for range n {
		var ref [32]byte
		_, _ = rand.Read(ref[:])
		cs = append(cs, groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
	}
	return cs
}

func clientOf(t *testing.T, r *relayUnderTest) *Client {
	t.Helper()
	c := NewClient(newHost(t))
	if err := c.h.Connect(context.Background(), peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestForkedRegistration: Mallory, removed by the owner, registers a
// longer fork of the log from before her removal (pins, a member's
// right). The relay merges it by the fork rule, so the owner's removal
// stands: Mallory's envelopes are not stored, and a member the owner adds
// next is.
func TestForkedRegistration(t *testing.T) {
	alice, bob, mallory, carol := newMember(t), newMember(t), newMember(t), newMember(t)
	gid, prefix := groupLog(t, alice, bob, mallory)
	real := appendLog(t, prefix, alice, groupstate.Change{Kind: groupstate.KindRemove, Account: mallory.acct.ID()})
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t), mallory.listBytes(t), carol.listBytes(t)}
	if err := c.Register(ctx, rh.ID(), gid, real, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	// Valid on its own, the fork is merged by the fork rule; it loses,
	// and Mallory, no longer a member, cannot renew the registration.
	fork := appendLog(t, prefix, mallory, pins(3)...)
	var se *StatusError
	if err := clientOf(t, r).Register(ctx, rh.ID(), gid, fork, [][]byte{mallory.listBytes(t)}, mallory.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
		t.Fatalf("the fork's registration by the removed member: %v, want refused as invalid", err)
	}
	r.srv.mu.Lock()
	role := r.srv.groups[gid].log.State().Role(mallory.acct.ID())
	r.srv.mu.Unlock()
	if role != groupstate.RoleNone {
		t.Fatalf("after the fork's registration the relay holds Mallory as %s", role)
	}
	real2 := appendLog(t, real, alice, groupstate.Change{Kind: groupstate.KindAdd, Account: carol.acct.ID()})
	if err := c.Register(ctx, rh.ID(), gid, real2, lists, alice.dev); err != nil {
		t.Fatal(err)
	}
	everyone := openAll{alice.dev.ID(): alice.acct.ID(), mallory.dev.ID(): mallory.acct.ID(), carol.dev.ID(): carol.acct.ID()}
	p := startPeer(t, rh, gid, everyone)
	p.publish(t, r, gid, mallory.seal(t, gid, "from the removed member"))
	time.Sleep(100 * time.Millisecond)
	honest := startPeer(t, rh, gid, openAll{alice.dev.ID(): alice.acct.ID(), carol.dev.ID(): carol.acct.ID()})
	honest.publish(t, r, gid, carol.seal(t, gid, "from the new member"))
	honest.publish(t, r, gid, alice.seal(t, gid, "from the owner"))
	eventually(t, "the owner's message", func() bool {
		pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
		return err == nil && slices.Contains(texts(t, pg.Items, gid), "from the owner")
	})
	time.Sleep(300 * time.Millisecond)
	pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(t, pg.Items, gid); fmt.Sprint(sorted(got)) != fmt.Sprint([]string{"from the new member", "from the owner"}) {
		t.Fatalf("the relay holds %q", got)
	}
}

// TestListsKeptAcrossRestart: device lists merged from several
// registrations (each member knows some) survive a restart of the relay,
// and lists of accounts that are not members are not kept at all.
func TestListsKeptAcrossRestart(t *testing.T) {
	alice, bob, carol := newMember(t), newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob, carol)
	rh := newHost(t)
	dir := t.TempDir()
	r := startServer(t, dir, rh, nil)
	c := clientOf(t, r)
	ctx := context.Background()
	strangers := [][]byte{alice.listBytes(t), bob.listBytes(t), carol.listBytes(t)}
	for range 20 {
		strangers = append(strangers, newMember(t).listBytes(t))
	}
	if err := c.Register(ctx, rh.ID(), gid, entries, strangers, alice.dev); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t)}, bob.dev); err != nil {
		t.Fatal(err)
	}
	devices := func(r *relayUnderTest) int {
		r.srv.mu.Lock()
		defer r.srv.mu.Unlock()
		g := r.srv.groups[gid]
		return len(g.devices) + len(g.lists)
	}
	if n := devices(r); n != 6 {
		t.Fatalf("%d devices and lists held before the restart (3 members: 6)", n)
	}
	r.stop()
	rh2 := newHost(t)
	r2 := startServer(t, dir, rh2, nil)
	if n := devices(r2); n != 6 {
		t.Fatalf("%d devices and lists held after the restart", n)
	}
	p := startPeer(t, rh2, gid, openAll{carol.dev.ID(): carol.acct.ID()})
	p.publish(t, r2, gid, carol.seal(t, gid, "carol after the restart"))
	eventually(t, "Carol's message stored", func() bool {
		pg, err := clientOf(t, r2).Query(ctx, rh2.ID(), gid, 0, 0, true)
		return err == nil && len(pg.Items) == 1
	})
}

// TestNewGroupsPerAccount: one account registers at most
// MaxGroupsPerPeer new groups a day, whatever peer it comes from.
func TestNewGroupsPerAccount(t *testing.T) {
	alice := newMember(t)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, func(c *Config) { c.MaxGroupsPerPeer = 3 })
	ctx := context.Background()
	for i := range 4 {
		gid, entries := groupLog(t, alice)
		err := clientOf(t, r).Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t)}, alice.dev)
		var se *StatusError
		switch {
		case i < 3 && err != nil:
			t.Fatalf("group %d: %v", i, err)
		case i == 3 && (!errors.As(err, &se) || se.Code != CodeFull):
			t.Fatalf("a fourth new group the same day: %v", err)
		}
	}
}

// TestStoreDirect: a member hands the relay its own envelope, even one
// older than gossip's window; the relay keeps it once; a non-member's, a
// forged one and another group's are refused.
func TestStoreDirect(t *testing.T) {
	alice, mallory := newMember(t), newMember(t)
	gid, entries := groupLog(t, alice)
	other, _ := groupLog(t, mallory)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := clientOf(t, r)
	ctx := context.Background()
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), mallory.listBytes(t)}, alice.dev); err != nil {
		t.Fatal(err)
	}
	old, err := groupmsg.Seal(alice.dev, gid, groupmsg.KindSenderKey, time.Now().Add(-time.Hour).UnixMilli(), []byte("posted offline"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Store(ctx, rh.ID(), gid, old, alice.dev); err != nil {
			t.Fatal(err)
		}
	}
	// Someone else handing Alice's envelope over (a replay) is refused.
	var se *StatusError
	if err := c.Store(ctx, rh.ID(), gid, alice.seal(t, gid, "replayed by Mallory"), mallory.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
		t.Errorf("a Store by another device: %v", err)
	}
	ancient, _ := groupmsg.Seal(alice.dev, gid, groupmsg.KindSenderKey, time.Now().Add(-40*24*time.Hour).UnixMilli(), []byte("ancient"))
	future, _ := groupmsg.Seal(alice.dev, gid, groupmsg.KindSenderKey, time.Now().Add(time.Hour).UnixMilli(), []byte("future"))
	state, _ := groupmsg.Seal(alice.dev, gid, groupmsg.KindState, time.Now().UnixMilli(), []byte("state"))
	for name, env := range map[string][]byte{"older than the retention": ancient, "from the future": future, "not a message": state} {
		if err := c.Store(ctx, rh.ID(), gid, env, alice.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
			t.Errorf("an envelope %s: %v", name, err)
		}
	}
	forged := alice.seal(t, gid, "forged")
	forged[len(forged)-1] ^= 1
	for _, tc := range []struct {
		name string
		env  []byte
		code Code
	}{
		{"a non-member's", mallory.seal(t, gid, "not a member"), CodeUnknown},
		{"a forged one", forged, CodeInvalid},
		{"another group's", alice.seal(t, other, "elsewhere"), CodeInvalid},
	} {
		signer := alice.dev
		if tc.name == "a non-member's" {
			signer = mallory.dev
		}
		if err := c.Store(ctx, rh.ID(), gid, tc.env, signer); !errors.As(err, &se) || se.Code != tc.code {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	eventually(t, "the post stored", func() bool {
		pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
		return err == nil && len(pg.Items) == 1
	})
	time.Sleep(200 * time.Millisecond)
	pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	if err != nil || len(pg.Items) != 1 || texts(t, pg.Items, gid)[0] != "posted offline" {
		t.Fatalf("the relay holds %+v (%v)", pg, err)
	}
}

// TestPublicNames: an admin binds a name to a registered group with a
// link whose invite the log lists; anyone looks it up; a member that is
// no admin, a link the log does not list and another group's claim on a
// taken name are refused.
func TestPublicNames(t *testing.T) {
	alice, bob := newMember(t), newMember(t)
	gid, base := groupLog(t, alice, bob)
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	var ref [32]byte
	copy(ref[:], ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	entries := appendLog(t, base, alice, groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref})
	link := "peergram://join/" + hex.EncodeToString(gid[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)
	other, otherBase := groupLog(t, bob)
	otherEntries := appendLog(t, otherBase, bob, groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref})
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := clientOf(t, r)
	ctx := context.Background()
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t)}, alice.dev); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, rh.ID(), other, otherEntries, [][]byte{bob.listBytes(t)}, bob.dev); err != nil {
		t.Fatal(err)
	}
	code := func(err error) Code {
		var se *StatusError
		if errors.As(err, &se) {
			return se.Code
		}
		if err != nil {
			t.Fatal(err)
		}
		return CodeOK
	}
	if got := code(c.PublishName(ctx, rh.ID(), "dailynews", gid, link, bob.dev)); got != CodeInvalid {
		t.Errorf("a member that is no admin: %v", got)
	}
	unlisted := "peergram://join/" + hex.EncodeToString(gid[:]) + "/" + base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	if got := code(c.PublishName(ctx, rh.ID(), "dailynews", gid, unlisted, alice.dev)); got != CodeInvalid {
		t.Errorf("a link the log does not list: %v", got)
	}
	if got := code(c.PublishName(ctx, rh.ID(), "dailynews", gid, link, alice.dev)); got != CodeOK {
		t.Fatalf("the admin's name: %v", got)
	}
	if got := code(c.PublishName(ctx, rh.ID(), "dailynews", gid, link, alice.dev)); got != CodeOK {
		t.Fatalf("renewing it: %v", got)
	}
	otherLink := "peergram://join/" + hex.EncodeToString(other[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)
	if got := code(c.PublishName(ctx, rh.ID(), "dailynews", other, otherLink, bob.dev)); got != CodeFull {
		t.Errorf("another group's claim on a taken name: %v", got)
	}
	if got := code(c.PublishName(ctx, rh.ID(), "bobs_news", other, otherLink, bob.dev)); got != CodeOK {
		t.Errorf("another name for the other group: %v", got)
	}
	rec, err := clientOf(t, r).LookupName(ctx, rh.ID(), "dailynews")
	if err != nil || rec.Group != gid || rec.Link != link || rec.Device != alice.dev.ID() {
		t.Fatalf("lookup: %+v (%v)", rec, err)
	}
	// One name per group: a second replaces the first.
	if got := code(c.PublishName(ctx, rh.ID(), "daily_two", gid, link, alice.dev)); got != CodeOK {
		t.Fatalf("a second name: %v", got)
	}
	if _, err := c.LookupName(ctx, rh.ID(), "dailynews"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("the replaced name still answers: %v", err)
	}
	// A name dies with its link.
	revoked := appendLog(t, entries, alice, groupstate.Change{Kind: groupstate.KindInviteRevoke, Ref: ref})
	if err := c.Register(ctx, rh.ID(), gid, revoked, [][]byte{alice.listBytes(t)}, alice.dev); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupName(ctx, rh.ID(), "daily_two"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("a name whose link was revoked still answers: %v", err)
	}
	if _, err := c.LookupName(ctx, rh.ID(), "nobody_here"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("an unknown name: %v", err)
	}
}

// TestPublicNameRenewedWithGroup: the group holding a name renews it —
// any member's registration of the group extends the name with the
// registration — unless the name's link was revoked or its signer is no
// longer an admin; a name not renewed lapses with its term and is then
// another group's to take.
func TestPublicNameRenewedWithGroup(t *testing.T) {
	const ttl = 3 * time.Second
	alice, bob := newMember(t), newMember(t)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, func(c *Config) { c.RegistrationTTL = ttl })
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t)}
	type named struct {
		name    string
		gid     [32]byte
		entries [][]byte
		ref     [32]byte
		link    string
	}
	// Alice owns each group, Bob is a member; each has an invite link.
	newNamed := func(name string, changes ...groupstate.Change) *named {
		gid, base := groupLog(t, alice, bob)
		seed := make([]byte, ed25519.SeedSize)
		_, _ = rand.Read(seed)
		n := &named{name: name, gid: gid, link: "peergram://join/" + hex.EncodeToString(gid[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)}
		copy(n.ref[:], ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
		n.entries = appendLog(t, base, alice, append(changes, groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: n.ref})...)
		if err := c.Register(ctx, rh.ID(), gid, n.entries, lists, alice.dev); err != nil {
			t.Fatal(err)
		}
		return n
	}
	renewed := newNamed("renewed_name")
	lapsing := newNamed("lapsing_name")
	revoked := newNamed("revoked_name")
	demoted := newNamed("demoted_name", groupstate.Change{Kind: groupstate.KindPromote, Account: bob.acct.ID()})
	for _, n := range []*named{renewed, lapsing, revoked} {
		if err := c.PublishName(ctx, rh.ID(), n.name, n.gid, n.link, alice.dev); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PublishName(ctx, rh.ID(), demoted.name, demoted.gid, demoted.link, bob.dev); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(ttl / 2)
	// Registered again by Bob, a member (as every member's node does every
	// 12 hours): the first as it is, the others after a change.
	again := map[*named][][]byte{
		renewed: renewed.entries,
		revoked: appendLog(t, revoked.entries, alice, groupstate.Change{Kind: groupstate.KindInviteRevoke, Ref: revoked.ref}),
		demoted: appendLog(t, demoted.entries, alice, groupstate.Change{Kind: groupstate.KindDemote, Account: bob.acct.ID()}),
	}
	for n, entries := range again {
		if err := c.Register(ctx, rh.ID(), n.gid, entries, lists, bob.dev); err != nil {
			t.Fatal(err)
		}
	}
	taker := newNamed("taker_name")
	time.Sleep(time.Until(start.Add(ttl + 500*time.Millisecond)))
	if rec, err := c.LookupName(ctx, rh.ID(), renewed.name); err != nil || rec.Group != renewed.gid {
		t.Fatalf("the name of a group registered again lapsed: %+v (%v)", rec, err)
	}
	var se *StatusError
	if err := c.PublishName(ctx, rh.ID(), renewed.name, taker.gid, taker.link, alice.dev); !errors.As(err, &se) || se.Code != CodeFull {
		t.Fatalf("another group took a renewed name: %v", err)
	}
	for _, n := range []*named{lapsing, revoked, demoted} {
		if err := c.PublishName(ctx, rh.ID(), n.name, taker.gid, taker.link, alice.dev); err != nil {
			t.Errorf("%s was renewed: another group cannot take it after its term: %v", n.name, err)
		}
	}
}

// TestOnlyMessagesKept: envelopes that are not messages, epoch keys'
// copies or state entries the relay's log takes (junk a channel's
// subscriber signs as an entry) are not kept, by gossip or by Store, so
// no one fills a group's quota with them (an outside review found a
// subscriber could wipe a channel's history that way); nor a
// subscriber's epoch message or copies — only an admin's.
func TestOnlyMessagesKept(t *testing.T) {
	admin, sub := newMember(t), newMember(t)
	e, err := groupstate.Sign(admin.dev, admin.cert, nil, time.Now().UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "c", Perms: groupstate.FlagChannel, Ref: [32]byte{9}})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := e.MarshalBinary()
	entries := appendLog(t, [][]byte{raw}, admin, groupstate.Change{Kind: groupstate.KindAdd, Account: sub.acct.ID()})
	gid := groupstate.GroupID(e.Hash())
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := clientOf(t, r)
	ctx := context.Background()
	if err := c.Register(ctx, rh.ID(), gid, entries, [][]byte{admin.listBytes(t), sub.listBytes(t)}, admin.dev); err != nil {
		t.Fatal(err)
	}
	kinds := []groupmsg.Kind{groupmsg.KindState, groupmsg.KindEpoch, groupmsg.KindGrants}
	junk := func(m *member, i int) []byte {
		env, err := groupmsg.Seal(m.dev, gid, kinds[i%len(kinds)], time.Now().UnixMilli(), []byte(fmt.Sprint("junk ", i)))
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	var se *StatusError
	for i := range kinds {
		if err := c.Store(ctx, rh.ID(), gid, junk(sub, i), sub.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
			t.Fatalf("a subscriber's envelope of kind %d by Store: %v", kinds[i], err)
		}
	}
	if err := c.Store(ctx, rh.ID(), gid, junk(admin, 0), admin.dev); !errors.As(err, &se) || se.Code != CodeInvalid {
		t.Fatalf("an admin's state envelope by Store: %v", err)
	}
	attacker := startAttacker(t, r, gid)
	for i := range 6 {
		if err := attacker.Publish(ctx, junk(sub, i)); err != nil {
			t.Fatal(err)
		}
	}
	honest := startPeer(t, rh, gid, openAll{admin.dev.ID(): admin.acct.ID()})
	for _, k := range []groupmsg.Kind{groupmsg.KindGrants, groupmsg.KindEpoch} {
		env, err := groupmsg.Seal(admin.dev, gid, k, time.Now().UnixMilli(), []byte(fmt.Sprint("admin ", k)))
		if err != nil {
			t.Fatal(err)
		}
		honest.publish(t, r, gid, env)
	}
	eventually(t, "the admin's post", func() bool {
		pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, true)
		return err == nil && len(pg.Items) > 1
	})
	time.Sleep(300 * time.Millisecond)
	pg, err := c.Query(ctx, rh.ID(), gid, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	got := texts(t, pg.Items, gid)
	slices.Sort(got)
	if want := []string{fmt.Sprint("admin ", groupmsg.KindEpoch), fmt.Sprint("admin ", groupmsg.KindGrants)}; !slices.Equal(got, want) {
		t.Fatalf("the relay holds %+v (%v)", pg, err)
	}
}

// TestNameRecordBoundToRelay: a name record copied from one relay into
// another (a relay that lies about names) fails the client's check: the
// admin's signature names the relay it was made for.
func TestNameRecordBoundToRelay(t *testing.T) {
	alice := newMember(t)
	gid, base := groupLog(t, alice)
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	var ref [32]byte
	copy(ref[:], ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	entries := appendLog(t, base, alice, groupstate.Change{Kind: groupstate.KindInviteCreate, Ref: ref})
	link := "peergram://join/" + hex.EncodeToString(gid[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)
	ctx := context.Background()
	var relays []*relayUnderTest
	for range 2 {
		r := startServer(t, t.TempDir(), newHost(t), nil)
		if err := clientOf(t, r).Register(ctx, r.h.ID(), gid, entries, [][]byte{alice.listBytes(t)}, alice.dev); err != nil {
			t.Fatal(err)
		}
		relays = append(relays, r)
	}
	a, b := relays[0], relays[1]
	if err := clientOf(t, a).PublishName(ctx, a.h.ID(), "honest_name", gid, link, alice.dev); err != nil {
		t.Fatal(err)
	}
	// Relay B copies A's record, as its own answer for the name.
	var rec []byte
	if err := a.db.View(func(tx *storage.Txn) (err error) { rec, err = tx.Get(a.srv.names, []byte("honest_name")); return err }); err != nil {
		t.Fatal(err)
	}
	if err := b.db.Update(func(tx *storage.Txn) error { return tx.Set(b.srv.names, []byte("honest_name"), rec) }); err != nil {
		t.Fatal(err)
	}
	if _, err := clientOf(t, a).LookupName(ctx, a.h.ID(), "honest_name"); err != nil {
		t.Fatalf("at the relay it was made for: %v", err)
	}
	if _, err := clientOf(t, b).LookupName(ctx, b.h.ID(), "honest_name"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a record replayed by another relay: %v", err)
	}
}

// TestRegisterDatedAhead: a registration whose log ends in an entry dated
// an hour ahead of the relay's clock is kept without it (members do not
// take it, and a joiner would follow it); one dated a minute ahead is
// kept; a log that starts ahead is refused.
func TestRegisterDatedAhead(t *testing.T) {
	alice, bob := newMember(t), newMember(t)
	gid, prefix := groupLog(t, alice, bob)
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := clientOf(t, r)
	ctx := context.Background()
	lists := [][]byte{alice.listBytes(t), bob.listBytes(t)}
	dated := func(raws [][]byte, d time.Duration) [][]byte {
		t.Helper()
		var entries []*groupstate.Entry
		for _, raw := range raws {
			e, err := groupstate.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, e)
		}
		l, err := groupstate.Replay(entries)
		if err != nil {
			t.Fatal(err)
		}
		var ref [32]byte
		_, _ = rand.Read(ref[:])
		e, err := groupstate.Sign(bob.dev, bob.cert, l.Head(), time.Now().Add(d).UnixMilli(), groupstate.Change{Kind: groupstate.KindPin, Ref: ref})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := e.MarshalBinary()
		return append(slices.Clone(raws), raw)
	}
	held := func() int {
		t.Helper()
		got, _, err := c.Log(ctx, rh.ID(), gid)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if err := c.Register(ctx, rh.ID(), gid, dated(prefix, time.Hour), lists, bob.dev); err != nil {
		t.Fatal(err)
	}
	if n := held(); n != len(prefix) {
		t.Fatalf("the relay holds %d entries after a registration ending an hour ahead; want %d", n, len(prefix))
	}
	if err := c.Register(ctx, rh.ID(), gid, dated(prefix, time.Minute), lists, bob.dev); err != nil {
		t.Fatal(err)
	}
	if n := held(); n != len(prefix)+1 {
		t.Fatalf("the relay holds %d entries after a registration ending a minute ahead; want %d", n, len(prefix)+1)
	}
	e, err := groupstate.Sign(alice.dev, alice.cert, nil, time.Now().Add(time.Hour).UnixMilli(), groupstate.Change{Kind: groupstate.KindCreate, Text: "h", Perms: groupstate.DefaultPerms})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := e.MarshalBinary()
	ahead := e.Hash()
	if err := c.Register(ctx, rh.ID(), ahead, [][]byte{raw}, lists, alice.dev); err == nil {
		t.Fatal("a log created an hour ahead was registered")
	}
}
