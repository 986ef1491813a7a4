package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/calls/sfuproto"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/sfu"
	"github.com/peergram/peergram/storage"
)

// Group calls: a member starts one on its home relay's SFU and posts a
// "start" (call ID, the relay's peer ID and addresses) in the group; the
// members' nodes note it and raise an event, and any member may join.
// Each participant's engine draws an SFrame key, which its node posts to
// the group as a "key" — sealed like any group message (Sender Keys or
// the epoch key), so only members read it, and a member removed from
// the group, whose sessions and group keys were rotated away, gets no
// key drawn after its removal. A node posts its key again when someone
// new appears in the call (a late joiner must read it) and whenever its
// engine draws a new one (someone left). The SFU checks membership
// itself against its copy of the group's log.

// callBody is a group message about a group call.
type callBody struct {
	ID     string   `json:"id"`
	Action string   `json:"a"` // "start", "key" or "end"
	Relay  string   `json:"relay,omitempty"`
	Addrs  []string `json:"addrs,omitempty"`
	KID    uint64   `json:"kid,omitempty"`
	Key    []byte   `json:"key,omitempty"`
}

// Call actions.
const (
	callStart = "start"
	callKey   = "key"
	callEnd   = "end"
)

// callFresh bounds the age of a call message acted on: a start or a key
// that history repair brings long after is of a call long over.
const callFresh = 10 * time.Minute

func (c *callBody) check() error {
	switch {
	case !sfuproto.ValidCall(c.ID):
		return errors.New("a call's ID is 16 bytes of hex")
	case c.Action != callStart && c.Action != callKey && c.Action != callEnd:
		return fmt.Errorf("a call action %q", c.Action)
	case len(c.Relay) > 128 || len(c.Addrs) > 8:
		return errors.New("a call's relay is out of bounds")
	case c.Action == callKey && (len(c.Key) != 16 || c.KID&1 != 0):
		return errors.New("a call key is 16 bytes under an even key ID")
	case c.Action != callKey && (len(c.Key) != 0 || c.KID != 0):
		return errors.New("a key in a call message that is not a key")
	}
	for _, a := range c.Addrs {
		if len(a) > 256 {
			return errors.New("a call's relay address is too long")
		}
	}
	if c.Action == callStart {
		if _, err := peer.Decode(c.Relay); err != nil {
			return fmt.Errorf("a call's relay: %w", err)
		}
	}
	return nil
}

// activeCall is a group call this node knows is running in a group.
type activeCall struct {
	ID      string
	Group   string
	Relay   peer.AddrInfo
	Started time.Time
	From    identity.AccountID
}

// groupCalls is the node's group-call state.
type groupCalls struct {
	mu     sync.Mutex
	active map[string]*activeCall // by group ID (hex)
	joined map[string]string      // group ID → call ID this device is in
	// announced: devices seen in each call, and the key ID last posted.
	seen   map[string]map[string]bool
	posted map[string]uint64
	// members: the group's members when this device joined a call, or
	// at the last change since: a removal makes it draw a new key.
	members map[string]map[identity.AccountID]bool
}

func newGroupCalls() *groupCalls {
	return &groupCalls{active: map[string]*activeCall{}, joined: map[string]string{}, seen: map[string]map[string]bool{}, posted: map[string]uint64{},
		members: map[string]map[identity.AccountID]bool{}}
}

// groupID resolves a group by ID or title.
func (n *Node) groupID(group string) (groupstate.GroupID, error) {
	var gid groupstate.GroupID
	err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		gid = l.Group()
		return nil
	})
	return gid, err
}

// StartGroupCall starts a group call on this node's home relay and
// joins it.
func (n *Node) StartGroupCall(ctx context.Context, group string, m calls.Media) (calls.GroupCall, error) {
	if n.calls == nil {
		return calls.GroupCall{}, fmt.Errorf("%w: calls are not running", chat.ErrUnavailable)
	}
	gid, err := n.groupID(group)
	if err != nil {
		return calls.GroupCall{}, err
	}
	gh := hex.EncodeToString(gid[:])
	n.gcalls.mu.Lock()
	in := n.gcalls.joined[gh]
	n.gcalls.mu.Unlock()
	if in != "" {
		return calls.GroupCall{}, fmt.Errorf("%w: already in this group's call", chat.ErrInvalid)
	}
	if len(n.relays) == 0 {
		return calls.GroupCall{}, fmt.Errorf("%w: no home relay to run the call", chat.ErrUnavailable)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return calls.GroupCall{}, err
	}
	id := hex.EncodeToString(b[:])
	relay := n.relays[0]
	ac := &activeCall{ID: id, Group: gh, Relay: relay, Started: n.cfg.Now(), From: n.keys.account.ID()}
	body := &callBody{ID: id, Action: callStart, Relay: relay.ID.String()}
	for _, a := range relay.Addrs {
		if len(body.Addrs) < 8 {
			body.Addrs = append(body.Addrs, a.String())
		}
	}
	g, err := n.joinGroupCall(ctx, gid, ac, m)
	if err != nil {
		return calls.GroupCall{}, err
	}
	n.gcalls.mu.Lock()
	n.gcalls.active[gh] = ac
	n.gcalls.mu.Unlock()
	if _, err := n.postGroup(ctx, gh, &groupBody{Call: body}, nil); err != nil {
		_, _ = n.calls.LeaveGroup(ctx, id)
		return calls.GroupCall{}, err
	}
	n.postCallKey(ctx, gh, id)
	return g, nil
}

// JoinGroupCall joins the call running in group.
func (n *Node) JoinGroupCall(ctx context.Context, group string, m calls.Media) (calls.GroupCall, error) {
	if n.calls == nil {
		return calls.GroupCall{}, fmt.Errorf("%w: calls are not running", chat.ErrUnavailable)
	}
	gid, err := n.groupID(group)
	if err != nil {
		return calls.GroupCall{}, err
	}
	gh := hex.EncodeToString(gid[:])
	n.gcalls.mu.Lock()
	ac := n.gcalls.active[gh]
	in := n.gcalls.joined[gh]
	n.gcalls.mu.Unlock()
	if ac == nil {
		return calls.GroupCall{}, fmt.Errorf("%w: no call is running in this group", chat.ErrUnknownCall)
	}
	if in != "" {
		return calls.GroupCall{}, fmt.Errorf("%w: already in this group's call", chat.ErrInvalid)
	}
	g, err := n.joinGroupCall(ctx, gid, ac, m)
	if err != nil {
		return calls.GroupCall{}, err
	}
	n.postCallKey(ctx, gh, ac.ID)
	return g, nil
}

func (n *Node) joinGroupCall(ctx context.Context, gid groupstate.GroupID, ac *activeCall, m calls.Media) (calls.GroupCall, error) {
	gh := hex.EncodeToString(gid[:])
	if st := n.groupState(gid); st == nil || st.Role(n.keys.account.ID()) == groupstate.RoleNone {
		return calls.GroupCall{}, fmt.Errorf("%w: not a member of this group", chat.ErrInvalid)
	}
	if len(ac.Relay.Addrs) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.host.Connect(cctx, ac.Relay)
		cancel()
		if err != nil {
			return calls.GroupCall{}, fmt.Errorf("%w: the call's relay: %w", chat.ErrUnavailable, err)
		}
	}
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := sfu.Dial(dctx, n.host, ac.Relay.ID, gid, ac.ID, n.keys.device, cert)
	if err != nil {
		return calls.GroupCall{}, fmt.Errorf("%w: %w", chat.ErrUnavailable, err)
	}
	n.gcalls.mu.Lock()
	n.gcalls.joined[gh] = ac.ID
	n.gcalls.seen[ac.ID] = map[string]bool{}
	if st := n.groupState(gid); st != nil {
		n.gcalls.members[ac.ID] = memberSet(st)
	}
	n.gcalls.mu.Unlock()
	g, err := n.calls.JoinGroup(dctx, ac.ID, gh, conn, m)
	if err != nil {
		n.gcalls.mu.Lock()
		delete(n.gcalls.joined, gh)
		n.gcalls.mu.Unlock()
		if errors.Is(err, calls.ErrRefused) {
			return calls.GroupCall{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
		}
		return calls.GroupCall{}, err
	}
	return g, nil
}

func memberSet(st *groupstate.State) map[identity.AccountID]bool {
	m := make(map[identity.AccountID]bool, len(st.Members))
	for a, r := range st.Members {
		if r != groupstate.RoleNone {
			m[a] = true
		}
	}
	return m
}

// groupCallMembership: the group of a call this device is in changed;
// if an account left it (removed, banned, left), this device draws a new
// key and hands it out — it goes to the members that remain, so the one
// gone holds no key of what is sent from now on (review finding: keys
// changed only when the call's roster shrank, and a member removed from
// the group, in the call or not, kept reading it).
func (n *Node) groupCallMembership(st *groupstate.State) {
	gh := hex.EncodeToString(st.Group[:])
	now := memberSet(st)
	n.gcalls.mu.Lock()
	call := n.gcalls.joined[gh]
	before := n.gcalls.members[call]
	lost := false
	for a := range before {
		if !now[a] {
			lost = true
		}
	}
	if call != "" {
		n.gcalls.members[call] = now
	}
	n.gcalls.mu.Unlock()
	if call != "" && lost && n.calls != nil {
		if err := n.calls.RekeyGroup(call); err != nil {
			n.log.Info("calls: new key after a removal", "call", call, "err", err)
		}
	}
}

// postCallKey posts this device's current key of call to the group.
func (n *Node) postCallKey(ctx context.Context, gh, call string) {
	kid, base, err := n.calls.GroupKey(call)
	if err != nil {
		return
	}
	n.gcalls.mu.Lock()
	n.gcalls.posted[call] = kid
	n.gcalls.mu.Unlock()
	if _, err := n.postGroup(ctx, gh, &groupBody{Call: &callBody{ID: call, Action: callKey, KID: kid, Key: base}}, nil); err != nil {
		n.log.Warn("calls: posting a group call key", "call", call, "err", err)
	}
}

// LeaveGroupCall leaves the call this device is in in group.
func (n *Node) LeaveGroupCall(ctx context.Context, group string) (calls.GroupCall, error) {
	gh, call, err := n.joinedCall(group)
	if err != nil {
		return calls.GroupCall{}, err
	}
	g, err := n.calls.LeaveGroup(ctx, call)
	if err != nil {
		return calls.GroupCall{}, err
	}
	// The last one out ends the call for everyone.
	if len(g.Participants) <= 1 {
		n.gcalls.mu.Lock()
		delete(n.gcalls.active, gh)
		n.gcalls.mu.Unlock()
		if _, err := n.postGroup(ctx, gh, &groupBody{Call: &callBody{ID: call, Action: callEnd}}, nil); err != nil {
			n.log.Info("calls: posting a call's end", "err", err)
		}
	}
	return g, nil
}

// MuteGroupCall mutes (or unmutes) this device in group's call.
func (n *Node) MuteGroupCall(ctx context.Context, group string, muted bool) (calls.GroupCall, error) {
	_, call, err := n.joinedCall(group)
	if err != nil {
		return calls.GroupCall{}, err
	}
	return n.calls.MuteGroup(ctx, call, muted)
}

// GroupCall returns group's call: the one this device is in, or the one
// running (state "active"), or chat.ErrUnknownCall.
func (n *Node) GroupCall(_ context.Context, group string) (calls.GroupCall, error) {
	if n.calls == nil {
		return calls.GroupCall{}, fmt.Errorf("%w: calls are not running", chat.ErrUnavailable)
	}
	gid, err := n.groupID(group)
	if err != nil {
		return calls.GroupCall{}, err
	}
	gh := hex.EncodeToString(gid[:])
	n.gcalls.mu.Lock()
	call := n.gcalls.joined[gh]
	ac := n.gcalls.active[gh]
	n.gcalls.mu.Unlock()
	if call != "" {
		return n.calls.GetGroup(call)
	}
	if ac != nil {
		return calls.GroupCall{ID: ac.ID, Group: gh, State: calls.GroupActive, JoinedAt: ac.Started,
			Participants: []sfuproto.Participant{}, Tracks: []calls.GroupTrack{}}, nil
	}
	return calls.GroupCall{}, fmt.Errorf("%w: no call in this group", chat.ErrUnknownCall)
}

// GroupCallOffer returns the bridge's offer of the group call this
// device takes part in from the web client (joined with Media.Client).
func (n *Node) GroupCallOffer(_ context.Context, group string) (calls.BridgeOffer, error) {
	_, call, err := n.joinedCall(group)
	if err != nil {
		return calls.BridgeOffer{}, err
	}
	o, err := n.calls.BridgeOffer(call)
	return o, callErr(err)
}

// GroupCallSignal takes the web client's signal on its group call's
// bridge: an answer, a candidate, or that it is connected.
func (n *Node) GroupCallSignal(_ context.Context, group string, s calls.BridgeSignal) error {
	_, call, err := n.joinedCall(group)
	if err != nil {
		return err
	}
	return callErr(n.calls.BridgeSignal(call, s))
}

func (n *Node) joinedCall(group string) (gh, call string, err error) {
	if n.calls == nil {
		return "", "", fmt.Errorf("%w: calls are not running", chat.ErrUnavailable)
	}
	gid, err := n.groupID(group)
	if err != nil {
		return "", "", err
	}
	gh = hex.EncodeToString(gid[:])
	n.gcalls.mu.Lock()
	call = n.gcalls.joined[gh]
	n.gcalls.mu.Unlock()
	if call == "" {
		return "", "", fmt.Errorf("%w: not in this group's call", chat.ErrUnknownCall)
	}
	return gh, call, nil
}

// takeCallBody acts on a group call message from a member (the group's
// encryption authenticated it): a start is noted, a key handed to the
// engine, an end forgets the call.
func (n *Node) takeCallBody(gid groupstate.GroupID, from identity.AccountID, dev identity.DeviceID, sent time.Time, c *callBody) {
	if n.calls == nil || n.cfg.Now().Sub(sent) > callFresh {
		return
	}
	gh := hex.EncodeToString(gid[:])
	switch c.Action {
	case callStart:
		pid, err := peer.Decode(c.Relay)
		if err != nil {
			return
		}
		ai := peer.AddrInfo{ID: pid}
		for _, a := range c.Addrs {
			if m, err := ma.NewMultiaddr(a); err == nil {
				ai.Addrs = append(ai.Addrs, m)
			}
		}
		n.gcalls.mu.Lock()
		if old := n.gcalls.active[gh]; old == nil || old.Started.Before(sent) {
			n.gcalls.active[gh] = &activeCall{ID: c.ID, Group: gh, Relay: ai, Started: sent, From: from}
		}
		n.gcalls.mu.Unlock()
		n.events.publish(chat.Event{Type: chat.EventGroupCall, GroupCall: &calls.GroupCall{ID: c.ID, Group: gh, State: calls.GroupActive,
			JoinedAt: sent, Participants: []sfuproto.Participant{}, Tracks: []calls.GroupTrack{}}})
	case callKey:
		if err := n.calls.AddGroupKey(c.ID, dev.String(), c.KID, c.Key); err != nil && !errors.Is(err, calls.ErrNoCall) {
			n.log.Info("calls: a group call key refused", "from", from.String(), "err", err)
		}
	case callEnd:
		n.gcalls.mu.Lock()
		if ac := n.gcalls.active[gh]; ac != nil && ac.ID == c.ID && n.gcalls.joined[gh] != c.ID {
			delete(n.gcalls.active, gh)
		}
		n.gcalls.mu.Unlock()
	}
}

// groupCallEvent is the engine's report of a group call: published, and
// acted on — a new participant gets this device's key, a new key of
// this device (someone left) goes to the group.
func (n *Node) groupCallEvent(g calls.GroupCall) {
	n.events.publish(chat.Event{Type: chat.EventGroupCall, GroupCall: &g})
	n.gcalls.mu.Lock()
	if g.State != calls.GroupJoined {
		if n.gcalls.joined[g.Group] == g.ID {
			delete(n.gcalls.joined, g.Group)
		}
		delete(n.gcalls.seen, g.ID)
		delete(n.gcalls.posted, g.ID)
		delete(n.gcalls.members, g.ID)
		n.gcalls.mu.Unlock()
		return
	}
	seen := n.gcalls.seen[g.ID]
	if seen == nil {
		n.gcalls.mu.Unlock()
		return
	}
	self := n.keys.device.ID().String()
	repost := false
	for _, p := range g.Participants {
		if p.Device != self && !seen[p.Device] {
			seen[p.Device] = true
			repost = true
		}
	}
	posted, ok := n.gcalls.posted[g.ID]
	if ok && posted != g.KeyID {
		repost = true
	}
	n.gcalls.mu.Unlock()
	if repost && ok {
		ctx := n.runCtx
		go n.postCallKey(ctx, g.Group, g.ID)
	}
}

// GroupCalls lists this device's group calls, newest first.
func (n *Node) GroupCalls(_ context.Context) ([]calls.GroupCall, error) {
	if n.calls == nil {
		return nil, fmt.Errorf("%w: calls are not running", chat.ErrUnavailable)
	}
	return slices.Clone(n.calls.GroupCalls()), nil
}
