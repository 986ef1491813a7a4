package groupnet

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"golang.org/x/time/rate"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/identity"
)

// roster is a Members of fixed membership: member devices and their
// accounts.
type roster struct {
	mu      sync.Mutex
	members map[identity.DeviceID]identity.AccountID
}

func (r *roster) MayPublish(_ [32]byte, d identity.DeviceID, _ groupmsg.Kind) (identity.AccountID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.members[d]
	if !ok {
		return a, ErrNotAllowed
	}
	return a, nil
}

func (r *roster) add(c *identity.DeviceCert) {
	r.mu.Lock()
	r.members[c.Device] = c.Account
	r.mu.Unlock()
}

type device struct {
	key  *identity.DeviceKey
	cert *identity.DeviceCert
}

func newDevice(t testing.TB) device {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "d", 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return device{dev, cert}
}

func (d device) seal(t testing.TB, group [32]byte, at time.Time, text string) []byte {
	t.Helper()
	b, err := groupmsg.Seal(d.key, group, groupmsg.KindSenderKey, at.UnixMilli(), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type node struct {
	h   host.Host
	net *Net
	dev device
}

// mesh starts n hosts on a mocknet, each connected to degree random
// others, each running a Net that joined group; members of the roster
// are the first members hosts' accounts.
func mesh(t *testing.T, n, degree, members int, group [32]byte) ([]*node, *roster, mocknet.Mocknet) {
	t.Helper()
	return meshWith(t, n, degree, members, group, nil)
}

// meshWith is mesh with a hook to change each node's Config.
func meshWith(t *testing.T, n, degree, members int, group [32]byte, mod func(*Config)) ([]*node, *roster, mocknet.Mocknet) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	r := &roster{members: map[identity.DeviceID]identity.AccountID{}}
	nodes := make([]*node, n)
	for i := range nodes {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &node{h: h, dev: newDevice(t)}
		if i < members {
			r.add(nodes[i].dev.cert)
		}
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		// A ring keeps the graph connected; random links make it a mesh.
		if _, err := mn.ConnectPeers(nodes[i].h.ID(), nodes[(i+1)%n].h.ID()); err != nil {
			t.Fatal(err)
		}
		for range degree - 1 {
			j := mrand.IntN(n)
			if j == i {
				continue
			}
			if _, err := mn.ConnectPeers(nodes[i].h.ID(), nodes[j].h.ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, nd := range nodes {
		var err error
		cfg := Config{Host: nd.h, Members: r}
		if mod != nil {
			mod(&cfg)
		}
		if nd.net, err = New(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := nd.net.Join(group); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nd.net.Close() })
	}
	// Until every node sees a topic peer and a heartbeat built the mesh.
	deadline := time.Now().Add(30 * time.Second)
	for _, nd := range nodes {
		for len(nd.net.Peers(group)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("a node found no peer in the topic")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second)
	return nodes, r, mn
}

// collect reads texts from nd in group until want arrived or the time is
// up, and returns how many times each text arrived.
func collect(ctx context.Context, nd *node, group [32]byte, want int) map[string]int {
	got := map[string]int{}
	total := 0
	for total < want {
		msg, err := nd.net.Next(ctx, group)
		if err != nil {
			break
		}
		got[string(msg.Payload)]++
		total++
	}
	return got
}

// TestGroupOf100: 100 hosts, each linked to a few others, all in one
// group: every message of a member reaches all 99 others, once each; a
// host that is not a member publishes and reaches no one.
func TestGroupOf100(t *testing.T) {
	group := [32]byte{1}
	nodes, _, _ := mesh(t, 100, 6, 99, group) // the last host is not a member
	const msgs = 20
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	outsider := nodes[len(nodes)-1]
	// Its own node's validator refuses it already.
	if err := outsider.net.Publish(ctx, group, outsider.dev.seal(t, group, time.Now(), "from an outsider")); err == nil {
		t.Fatal("the outsider's node published its envelope")
	}
	results := make([]map[string]int, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes[1:] {
		wg.Go(func() { results[i+1] = collect(ctx, nd, group, msgs) })
	}
	for i := range msgs {
		if err := nodes[0].net.Publish(ctx, group, nodes[0].dev.seal(t, group, time.Now(), fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i, got := range results[1:] {
		for k := range msgs {
			if got[fmt.Sprint("m", k)] != 1 {
				t.Fatalf("host %d got m%d %d times (%d texts in all)", i+1, k, got[fmt.Sprint("m", k)], len(got))
			}
		}
		if got["from an outsider"] != 0 {
			t.Fatalf("host %d delivered the outsider's envelope", i+1)
		}
	}
}

// TestBurst: 1,000 envelopes published at once by one member reach every
// other member (gossipsub's default queues lose most of such a burst).
func TestBurst(t *testing.T) {
	group := [32]byte{2}
	nodes, _, _ := mesh(t, 20, 4, 20, group)
	const burst = 1000
	envs := make([][]byte, burst)
	for i := range envs {
		envs[i] = nodes[0].dev.seal(t, group, time.Now(), fmt.Sprint("b", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	results := make([]map[string]int, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes[1:] {
		wg.Go(func() { results[i+1] = collect(ctx, nd, group, burst) })
	}
	for _, e := range envs {
		if err := nodes[0].net.Publish(ctx, group, e); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i, got := range results[1:] {
		if len(got) != burst {
			t.Fatalf("host %d got %d of %d", i+1, len(got), burst)
		}
	}
}

// attackerOn starts a host on mn with plain gossipsub (none of our
// checks), connected to every node and subscribed to group's topic.
func attackerOn(t *testing.T, ctx context.Context, mn mocknet.Mocknet, nodes []*node, group [32]byte) *pubsub.Topic {
	t.Helper()
	ah, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if _, err := mn.ConnectPeers(ah.ID(), nd.h.ID()); err != nil {
			t.Fatal(err)
		}
	}
	aps, err := pubsub.NewGossipSub(ctx, ah, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return groupmsg.ID(m.Data) }))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := aps.Join(groupmsg.Topic(group))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	for len(topic.ListPeers()) < len(nodes) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a heartbeat: the nodes graft it
	return topic
}

// TestValidatorsDrop is the attack of a peer in the mesh that publishes,
// with gossipsub but none of our checks, what a member must never get:
// garbage, an envelope forged in a member's name, one from a non-member,
// one of another group, a member's genuine envelope replayed after its
// time, one from the future, and a member's envelope sent again. Each
// case has an attacker of its own (a peer that sent one invalid envelope
// is scored down, which would hide the next case). Members get none of
// it: the member's own next envelope arrives, and nothing else.
func TestValidatorsDrop(t *testing.T) {
	group := [32]byte{3}
	nodes, _, mn := mesh(t, 3, 2, 3, group)
	member := nodes[0]
	attacker := newDevice(t)
	seen := member.dev.seal(t, group, time.Now(), "already delivered")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := member.net.Publish(ctx, group, seen); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[1:] {
		if got := collect(ctx, nd, group, 1); got["already delivered"] != 1 {
			t.Fatalf("first delivery: %v", got)
		}
	}
	tests := []struct {
		name string
		env  func() []byte
	}{
		{"garbage", func() []byte { return []byte("garbage") }},
		{"forged in a member's name", func() []byte {
			b := attacker.seal(t, group, time.Now(), "forged")
			id := member.dev.key.ID()
			copy(b[10:42], id[:]) // the member's device, the attacker's signature
			return b
		}},
		{"from a non-member", func() []byte { return attacker.seal(t, group, time.Now(), "non-member") }},
		{"of another group", func() []byte { return member.dev.seal(t, [32]byte{99}, time.Now(), "another group") }},
		{"replayed after its time", func() []byte { return member.dev.seal(t, group, time.Now().Add(-10*time.Minute), "old") }},
		{"from the future", func() []byte { return member.dev.seal(t, group, time.Now().Add(10*time.Minute), "future") }},
		{"a member's envelope again", func() []byte { return seen }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := attackerOn(t, ctx, mn, nodes, group)
			if err := topic.Publish(ctx, tt.env()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			marker := fmt.Sprint("marker ", i)
			if err := member.net.Publish(ctx, group, member.dev.seal(t, group, time.Now(), marker)); err != nil {
				t.Fatal(err)
			}
			for _, nd := range nodes[1:] {
				got := collect(ctx, nd, group, 1)
				if got[marker] != 1 {
					t.Fatalf("a member got %v before the marker", got)
				}
			}
		})
	}
}

// TestRateLimit: a member over its rate floods no one: what exceeds the
// burst is dropped at the first hop.
func TestRateLimit(t *testing.T) {
	group := [32]byte{4}
	nodes, _, _ := meshWith(t, 3, 2, 3, group, func(c *Config) { c.Rate, c.Burst = 1, 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent := 0
	for i := range 200 {
		if err := nodes[0].net.Publish(ctx, group, nodes[0].dev.seal(t, group, time.Now(), fmt.Sprint("f", i))); err == nil {
			sent++
		}
	}
	short, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	got := collect(short, nodes[1], group, 200)
	if len(got) == 0 || len(got) > 25 || sent > 25 {
		t.Fatalf("published %d of 200, a member got %d (burst 20)", sent, len(got))
	}
}

// verdict is a Members answering the same for every device.
type verdict struct{ err error }

func (v verdict) MayPublish([32]byte, identity.DeviceID, groupmsg.Kind) (identity.AccountID, error) {
	return identity.AccountID{1}, v.err
}

// TestValidatorVerdicts: what the validator makes of each answer of
// Members and of each clear field, without a network.
func TestValidatorVerdicts(t *testing.T) {
	group := [32]byte{5}
	d := newDevice(t)
	now := time.Now()
	tests := []struct {
		name    string
		members Members
		env     []byte
		want    pubsub.ValidationResult
	}{
		{"member", verdict{nil}, d.seal(t, group, now, "x"), pubsub.ValidationAccept},
		{"not allowed", verdict{ErrNotAllowed}, d.seal(t, group, now, "x"), pubsub.ValidationReject},
		{"unknown device", verdict{ErrUnknownDevice}, d.seal(t, group, now, "x"), pubsub.ValidationIgnore},
		{"another group", verdict{nil}, d.seal(t, [32]byte{6}, now, "x"), pubsub.ValidationReject},
		{"stale", verdict{nil}, d.seal(t, group, now.Add(-3*time.Minute), "x"), pubsub.ValidationIgnore},
		{"future", verdict{nil}, d.seal(t, group, now.Add(2*time.Minute), "x"), pubsub.ValidationIgnore},
		{"garbage", verdict{nil}, []byte("garbage"), pubsub.ValidationReject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Net{cfg: Config{Members: tt.members, Now: time.Now, MaxAge: 2 * time.Minute, MaxAhead: time.Minute, Rate: 10, Burst: 10},
				log: slog.New(slog.DiscardHandler), limits: map[limitKey]*rate.Limiter{}}
			got := n.validator(group)(context.Background(), "", &pubsub.Message{Message: &pb.Message{Data: tt.env}})
			if got != tt.want {
				t.Fatalf("verdict %v, want %v", got, tt.want)
			}
		})
	}
}
