// Package groupnet carries groups and channels over gossipsub: one topic
// per group, and validators that drop what must not spread before it does.
//
// Why validators and not just end-to-end checks: gossipsub forwards a
// message to the whole mesh as soon as a node accepts it. A non-member's
// junk, a forged or replayed envelope, or a flood from one member would
// cost every member bandwidth before any of them could decrypt it and see
// it is bad. So every node — member or relay — checks each envelope's clear
// part (package crypto/groupmsg) before forwarding it: the device's
// signature (over the group's ID), the time, the device's account's right
// to publish (from the group's state log, which the Members interface
// answers) and a per-sender rate. A node that forwards invalid envelopes
// loses peer score and is pruned from meshes.
//
// Queues are sized so that a burst is delivered, not dropped: gossipsub's
// defaults (32 messages per peer outbound, per subscription and in the
// validation queue) lose most of a 1,000-message burst.
package groupnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
)

// Members answers, for the validators, who may publish what in a group.
// The node implements it from the groups' state logs and the members'
// device lists.
type Members interface {
	// MayPublish returns the account of device if it is a device of a
	// member of group that may publish an envelope of kind now;
	// ErrUnknownDevice if it cannot tell (a device it has not learnt
	// yet: the envelope is dropped without blaming the peer that
	// forwarded it); any other error if not (the envelope is rejected and
	// the forwarding peer scored down).
	MayPublish(group [32]byte, device identity.DeviceID, kind groupmsg.Kind) (identity.AccountID, error)
}

// Changes is Members that also answers for state-log entries. A
// KindState envelope carries one crypto/groupstate entry whose device
// certificate names its author's account, so the validators check the
// entry itself (its signatures, and that its device signed the envelope:
// CheckEntry) and ask MayChange, instead of MayPublish: an account that
// is not a member yet may publish its own join. MayChange answers
// ErrNotAllowed for an entry that must not spread; whether the entry
// applies (its rights, an invite's proof) is for whoever takes it.
type Changes interface {
	MayChange(group [32]byte, e *groupstate.Entry) error
}

// CheckEntry checks a KindState envelope of group as the validators do
// and returns its entry and author. With m not a Changes, the device's
// right to publish KindState (MayPublish) is what counts.
func CheckEntry(m Members, group [32]byte, env *groupmsg.Envelope) (*groupstate.Entry, identity.AccountID, error) {
	e, err := groupstate.Parse(env.Payload)
	if err != nil {
		return nil, identity.AccountID{}, fmt.Errorf("%w: %w", ErrNotAllowed, err)
	}
	if e.Cert.Device != env.Device {
		return nil, identity.AccountID{}, fmt.Errorf("%w: an entry of another device", ErrNotAllowed)
	}
	c, ok := m.(Changes)
	if !ok {
		acct, err := m.MayPublish(group, env.Device, env.Kind)
		return e, acct, err
	}
	if err := c.MayChange(group, e); err != nil {
		return nil, identity.AccountID{}, err
	}
	return e, e.Author(), nil
}

// EntryMaySpread is the rule for state-log entries in gossip, against the
// state st the checking node holds: an entry spreads if its author may
// make its change in st (groupstate's rights, an invite's proof for a
// join: an account that is not a member yet may publish its own join),
// or if it is further ahead than st's next entry and its author, as st
// holds it, could make that kind of change at all (mayEverMake: st is
// behind, and whoever takes it fetches what lies between). Any other entry that is not st's next (a fork, an old one,
// one after an entry st does not hold) is dropped without blaming anyone
// (ErrUnknownDevice); st's next entry that st does not permit is
// rejected (ErrNotAllowed). A node's own
// entries, and entries its log holds, are its caller's to let through
// (st already includes them).
//
// Only entries near st's end spread at all: from ForkWindow before its
// next one (a fork may still replace those) to MaxEntriesAhead beyond;
// older or further ones are ignored (an outside review had junk entries
// at long-final positions spread to every member).
func EntryMaySpread(st *groupstate.State, e *groupstate.Entry) error {
	next := st.Seq + 1
	if e.Seq+groupstate.ForkWindow < next || e.Seq > next+MaxEntriesAhead {
		return ErrUnknownDevice
	}
	err := st.Permits(e)
	switch {
	case err == nil:
		return nil
	case e.Seq > next && mayEverMake(st, e):
		return nil
	case e.Seq != next, e.Prev != st.Head:
		// Not st's next: a fork, an old one, or one that follows an
		// entry st does not hold (the other side of a fork, where the
		// rights may differ) — not this checker's to judge, and an
		// honest peer may forward it.
		return ErrUnknownDevice
	}
	return fmt.Errorf("%w: %w", ErrNotAllowed, err)
}

// mayEverMake reports whether e's author, as st holds it, could make
// e's kind of change at all: a member, and in a channel an admin (a
// subscriber only leaves).
func mayEverMake(st *groupstate.State, e *groupstate.Entry) bool {
	r := st.Role(e.Author())
	switch {
	case r == groupstate.RoleNone:
		return false
	case st.Channel() && r < groupstate.RoleAdmin:
		return e.Change.Kind == groupstate.KindLeave
	}
	return true
}

// MaxEntriesAhead is how far beyond a node's state an entry may be and
// still spread (a node that far behind takes the log from a relay).
const MaxEntriesAhead = 256

// ErrUnknownDevice is what Members answers for a device it does not know.
var ErrUnknownDevice = errors.New("groupnet: unknown device")

// ErrNotAllowed is what Members answers for a device whose account may
// not publish that kind in the group.
var ErrNotAllowed = errors.New("groupnet: not allowed to publish")

// Message is an envelope received in a group, validated, with the account
// of the device that signed it.
type Message struct {
	*groupmsg.Envelope
	Account identity.AccountID
	ID      string  // groupmsg.ID of the envelope
	Raw     []byte  // the envelope as received
	From    peer.ID // the peer that forwarded it
	// Entry is a KindState envelope's entry, parsed and checked
	// (CheckEntry).
	Entry *groupstate.Entry
}

// Config configures a Net.
type Config struct {
	Host    host.Host
	Members Members
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxAge and MaxAhead bound an envelope's time against Now: older or
	// further ahead is dropped (defaults 2 minutes and 1 minute). Within
	// the window the seen-message cache drops replays; outside it the
	// time does. History older than MaxAge comes from relays' stores, not
	// from gossip.
	MaxAge, MaxAhead time.Duration
	// Rate and Burst bound what one device publishes in one group
	// (defaults 200 envelopes/s, burst 2,000).
	Rate  rate.Limit
	Burst int
	// QueueSize is the per-peer outbound queue, the validation queue and
	// each subscription's buffer (default 4,096).
	QueueSize int
	Logger    *slog.Logger
}

// Net is a node's gossip for its groups.
type Net struct {
	cfg Config
	ps  *pubsub.PubSub
	log *slog.Logger

	mu     sync.Mutex
	topics map[[32]byte]*joined
	limits map[limitKey]*rate.Limiter
}

type limitKey struct {
	group  [32]byte
	device identity.DeviceID
}

type joined struct {
	topic *pubsub.Topic
	sub   *pubsub.Subscription
}

// ErrNotJoined reports a group the Net has not joined.
var ErrNotJoined = errors.New("groupnet: group not joined")

// New starts gossipsub on cfg.Host with Peergram's parameters (see
// docs/protocol.md "Groups over gossipsub").
func New(ctx context.Context, cfg Config) (*Net, error) {
	if cfg.Host == nil || cfg.Members == nil {
		return nil, errors.New("groupnet: Host and Members are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 2 * time.Minute
	}
	if cfg.MaxAhead <= 0 {
		cfg.MaxAhead = time.Minute
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 2000
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Net{cfg: cfg, log: cfg.Logger, topics: map[[32]byte]*joined{}, limits: map[limitKey]*rate.Limiter{}}
	ps, err := pubsub.NewGossipSub(ctx, cfg.Host,
		// Authenticity is the envelope's (a device signature bound to an
		// account); libp2p's own signature would add a second one and
		// name the publishing peer.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return groupmsg.ID(m.Data) }),
		pubsub.WithSeenMessagesTTL(cfg.MaxAge+cfg.MaxAhead+time.Minute),
		pubsub.WithMaxMessageSize(groupmsg.MaxSize+4096),
		pubsub.WithPeerOutboundQueueSize(cfg.QueueSize),
		pubsub.WithValidateQueueSize(cfg.QueueSize),
		pubsub.WithPeerScore(scoreParams(), scoreThresholds()),
		// A device's own messages go to every peer it knows in the
		// topic, not only to its mesh: a mesh is grafted at heartbeats,
		// and without this a message published before the next one
		// reached nobody (gossip offers messages to non-mesh peers only,
		// and the peers it missed were grafted meanwhile). v0.19's
		// default is off.
		pubsub.WithFloodPublish(true),
		pubsub.WithGossipSubParams(gossipParams()),
	)
	if err != nil {
		return nil, fmt.Errorf("groupnet: %w", err)
	}
	n.ps = ps
	return n, nil
}

// Join subscribes to group's topic (idempotent).
func (n *Net) Join(group [32]byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.topics[group] != nil {
		return nil
	}
	name := groupmsg.Topic(group)
	// Inline: the validator is CPU-bound (one signature check) and never
	// blocks; a goroutine per message only added scheduling latency.
	if err := n.ps.RegisterTopicValidator(name, n.validator(group), pubsub.WithValidatorInline(true)); err != nil {
		return fmt.Errorf("groupnet: validator: %w", err)
	}
	t, err := n.ps.Join(name)
	if err != nil {
		_ = n.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("groupnet: join: %w", err)
	}
	if err := t.SetScoreParams(topicScoreParams()); err != nil {
		_ = t.Close()
		_ = n.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("groupnet: score: %w", err)
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(n.cfg.QueueSize))
	if err != nil {
		_ = t.Close()
		_ = n.ps.UnregisterTopicValidator(name)
		return fmt.Errorf("groupnet: subscribe: %w", err)
	}
	n.topics[group] = &joined{topic: t, sub: sub}
	return nil
}

// Joined reports whether the node is subscribed to group's topic.
func (n *Net) Joined(group [32]byte) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.topics[group] != nil
}

// Leave unsubscribes from group's topic.
func (n *Net) Leave(group [32]byte) {
	n.mu.Lock()
	j := n.topics[group]
	delete(n.topics, group)
	n.mu.Unlock()
	if j == nil {
		return
	}
	j.sub.Cancel()
	_ = j.topic.Close()
	_ = n.ps.UnregisterTopicValidator(groupmsg.Topic(group))
}

// Publish publishes an envelope (groupmsg.Seal) on its group's topic. It
// goes through the same validator as everyone's.
func (n *Net) Publish(ctx context.Context, group [32]byte, envelope []byte) error {
	n.mu.Lock()
	j := n.topics[group]
	n.mu.Unlock()
	if j == nil {
		return ErrNotJoined
	}
	if err := j.topic.Publish(ctx, envelope); err != nil {
		return fmt.Errorf("groupnet: publish: %w", err)
	}
	return nil
}

// Next returns the next message received in group (validated).
func (n *Net) Next(ctx context.Context, group [32]byte) (*Message, error) {
	n.mu.Lock()
	j := n.topics[group]
	n.mu.Unlock()
	if j == nil {
		return nil, ErrNotJoined
	}
	m, err := j.sub.Next(ctx)
	if err != nil {
		return nil, err
	}
	msg, _ := m.ValidatorData.(*Message)
	if msg == nil { // cannot happen: the validator set it
		return nil, errors.New("groupnet: message without a validated envelope")
	}
	msg.From = m.ReceivedFrom
	return msg, nil
}

// Peers lists the peers known in group's topic.
func (n *Net) Peers(group [32]byte) []peer.ID {
	return n.ps.ListPeers(groupmsg.Topic(group))
}

// Close leaves every group. Gossipsub itself stops with the context given
// to New.
func (n *Net) Close() error {
	n.mu.Lock()
	groups := make([][32]byte, 0, len(n.topics))
	for g := range n.topics {
		groups = append(groups, g)
	}
	n.mu.Unlock()
	for _, g := range groups {
		n.Leave(g)
	}
	return nil
}

// validator checks an envelope of group before it is delivered or
// forwarded: Reject for what no honest node sends (malformed, forged,
// another group, a sender without the right), which costs the forwarding
// peer score; Ignore for what an honest node may relay (too old or too
// new, over the sender's rate, from a device this node does not know).
func (n *Net) validator(group [32]byte) pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		env, err := groupmsg.Open(group, m.Data) // also fails for another group's envelope
		if err != nil {
			n.log.Debug("group: envelope rejected", "from", from, "err", err)
			return pubsub.ValidationReject
		}
		now := n.cfg.Now()
		if t := time.UnixMilli(env.Time); t.Before(now.Add(-n.cfg.MaxAge)) || t.After(now.Add(n.cfg.MaxAhead)) {
			return pubsub.ValidationIgnore
		}
		var entry *groupstate.Entry
		var acct identity.AccountID
		if env.Kind == groupmsg.KindState {
			entry, acct, err = CheckEntry(n.cfg.Members, group, env)
			if err == nil && entry.Time > now.Add(n.cfg.MaxAhead).UnixMilli()+groupstate.MaxSkew {
				return pubsub.ValidationIgnore // dated ahead: members would keep it until it is due
			}
		} else {
			acct, err = n.cfg.Members.MayPublish(group, env.Device, env.Kind)
		}
		switch {
		case errors.Is(err, ErrUnknownDevice):
			return pubsub.ValidationIgnore
		case err != nil:
			n.log.Debug("group: envelope from a device without the right", "from", from, "device", env.Device, "kind", env.Kind, "err", err)
			return pubsub.ValidationReject
		}
		if !n.limiter(group, env.Device).Allow() {
			return pubsub.ValidationIgnore
		}
		m.ValidatorData = &Message{Envelope: env, Account: acct, ID: groupmsg.ID(m.Data), Raw: m.Data, Entry: entry}
		return pubsub.ValidationAccept
	}
}

func (n *Net) limiter(group [32]byte, dev identity.DeviceID) *rate.Limiter {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := limitKey{group, dev}
	l := n.limits[k]
	if l == nil {
		if len(n.limits) > 100_000 { // forget idle senders rather than grow
			for key, old := range n.limits {
				if old.Tokens() >= float64(n.cfg.Burst) {
					delete(n.limits, key)
				}
			}
		}
		l = rate.NewLimiter(n.cfg.Rate, n.cfg.Burst)
		n.limits[k] = l
	}
	return l
}

// IDontWantThreshold is the smallest envelope for which a member sends
// IDONTWANT (gossipsub v1.2) to its mesh on receipt. IDONTWANT saves a
// duplicate only if it reaches a peer before that peer forwards the
// message, which needs the message's transmission time to be long
// against one link's delay; it costs one control RPC (a write) per mesh
// peer per message whatever the size. Under 4 KiB a message takes less
// than a typical one-way delay to send even on a 1 Mbit/s uplink, and
// the measurements agree (docs/performance.md, G1 and G4): at 1.2 KB,
// IDONTWANT saved no bytes and made delivery 3–5 times slower on a
// loaded machine; at 4 KiB it saved 3 % of the bytes, at 16 KiB 13 %.
// gossipsub's default is 1 KiB.
const IDontWantThreshold = 4096

func gossipParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.IDontWantMessageThreshold = IDontWantThreshold
	return p
}

// Peer scoring (gossipsub v1.1). What it punishes here: forwarding
// envelopes the validator rejects (invalid deliveries, weight −100 each,
// squared; one bad envelope takes a peer below the gossip threshold),
// and, mildly, IP colocation (many peers from one address). What it
// rewards: first deliveries and time in the mesh. Mesh-delivery penalties
// are off: a quiet group must not make honest peers look bad.
func scoreParams() *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:                      map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap:               100,
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -1,
		IPColocationFactorThreshold: 50, // loopback tests and NATs put many peers on one IP
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
}

func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                     1,
		TimeInMeshWeight:                0.01,
		TimeInMeshQuantum:               time.Second,
		TimeInMeshCap:                   100,
		FirstMessageDeliveriesWeight:    1,
		FirstMessageDeliveriesDecay:     0.5,
		FirstMessageDeliveriesCap:       50,
		MeshMessageDeliveriesDecay:      0.5,
		MeshMessageDeliveriesCap:        1,
		MeshMessageDeliveriesThreshold:  1,
		MeshMessageDeliveriesWindow:     10 * time.Millisecond,
		MeshMessageDeliveriesActivation: time.Minute,
		MeshFailurePenaltyDecay:         0.5,
		InvalidMessageDeliveriesWeight:  -100,
		InvalidMessageDeliveriesDecay:   0.9,
	}
}

func scoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -10,
		PublishThreshold:            -50,
		GraylistThreshold:           -80,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 5,
	}
}
