package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/senderkey"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/storage"
)

// Group messages: Sender Keys over gossipsub (relay/groupnet). Each member
// device has its own chain per group (groups.sk), handed to the other
// members over the pairwise sessions (payload "group-key"); a message is
// sealed once under the sender's chain, wrapped in an envelope signed by
// the device (crypto/groupmsg) and published on the group's topic; every
// node's validators check the envelope against the group's log and the
// members' device lists before it spreads. Channels and groups beyond
// Config.GroupSenderKeyLimit use epoch keys instead (groupepoch.go).

// groupEngine is the node's gossip state.
type groupEngine struct {
	net *groupnet.Net

	mu      sync.Mutex
	states  map[groupstate.GroupID]*groupstate.State // current state per group (cache of the stored logs)
	devices map[identity.DeviceID]identity.AccountID // devices of contacts and of this account
	devAt   time.Time
	loops   map[groupstate.GroupID]context.CancelFunc
	// watched holds the large groups this account was just removed from
	// by another member's entry, until when the history loop keeps
	// taking their state entries from the relays (removalWatch).
	watched map[groupstate.GroupID]time.Time
	// lastSent is the time of this device's last group message (Unix
	// ms; under the store's write transaction).
	lastSent atomic.Int64
	// epochMu serializes the admin passes over epoch keys.
	epochMu sync.Mutex
}

// startGroups starts gossip and joins every stored group.
func (n *Node) startGroups(ctx context.Context) error {
	g := &groupEngine{
		states:  map[groupstate.GroupID]*groupstate.State{},
		loops:   map[groupstate.GroupID]context.CancelFunc{},
		watched: map[groupstate.GroupID]time.Time{},
	}
	net, err := groupnet.New(ctx, groupnet.Config{Host: n.host, Members: (*groupMembers)(n), Logger: n.log, Now: n.cfg.Now})
	if err != nil {
		return err
	}
	g.net = net
	n.groups = g
	logs, err := n.loadGroups()
	if err != nil {
		return err
	}
	for _, l := range logs {
		n.groupChanged(ctx, l.State())
	}
	return nil
}

// groupChanged caches a group's new state and joins its topic if this
// account is a member (leaving it otherwise).
func (n *Node) groupChanged(ctx context.Context, st *groupstate.State) {
	g := n.groups
	if g == nil {
		return
	}
	member := st.Role(n.keys.account.ID()) != groupstate.RoleNone
	g.mu.Lock()
	g.states[st.Group] = st.Clone()
	_, running := g.loops[st.Group]
	if member {
		delete(g.watched, st.Group)
	}
	g.mu.Unlock()
	n.groupCallMembership(st)
	if member {
		n.notePhoto(st)
	}
	n.events.publish(chat.Event{Type: chat.EventGroup, GroupID: hex.EncodeToString(st.Group[:])})
	switch {
	case member && !running:
		if err := g.net.Join(st.Group); err != nil {
			n.log.Error("group: join topic", "err", err)
			return
		}
		lctx, cancel := context.WithCancel(ctx)
		g.mu.Lock()
		g.loops[st.Group] = cancel
		g.mu.Unlock()
		go n.receiveGroup(lctx, st.Group)
		go n.connectMembers(lctx, st.Clone())
		n.wakeHistory()
	case member:
		go n.connectMembers(ctx, st.Clone()) // members may have joined
		n.wakeHistory()
	case !member && running:
		g.mu.Lock()
		cancel := g.loops[st.Group]
		delete(g.loops, st.Group)
		g.mu.Unlock()
		cancel()
		g.net.Leave(st.Group)
		if n.gossipsLog(st) {
			g.mu.Lock()
			g.watched[st.Group] = n.cfg.Now().Add(removalWatch)
			g.mu.Unlock()
			n.wakeHistory()
		}
	}
}

// removalWatch is how long a node taken out of a large group keeps
// taking the group's state entries from its relays. Such a group's
// changes travel over gossip, and the topic is left at once; a
// concurrent change that wins the fork undoes the exit — an owner
// demoting the admin who removed this member (the member is one again),
// or any owner's change signed before this member's own leave (its node
// then leaves again on the winning branch) — and the node, off the
// topic, would otherwise never learn it. A change published later than
// this (its author offline meanwhile) does not reach it.
const removalWatch = 10 * time.Minute

// watchedStates returns the states of the groups watched after a
// removal (groupChanged), dropping those whose watch has ended.
func (n *Node) watchedStates() []*groupstate.State {
	g := n.groups
	now := n.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*groupstate.State
	for id, until := range g.watched {
		st := g.states[id]
		if st == nil || now.After(until) {
			delete(g.watched, id)
			continue
		}
		out = append(out, st)
	}
	return out
}

// connectMembers dials the devices of a group's members that the node
// knows (the directory records of its contacts' devices), so gossip has
// peers: a relayed connection is limited and carries no gossip, so a
// relayed one is followed by a direct dial to the addresses the peer
// announced over it (on a LAN, or where hole punching opens a way).
func (n *Node) connectMembers(ctx context.Context, st *groupstate.State) {
	n.learnMembers(ctx, st)
	if n.epochTier(st) && st.Role(n.keys.account.ID()) >= groupstate.RoleAdmin {
		n.grantEpochs(ctx, st.Group) // members' lists are known now
		n.postInfoKey(ctx, st.Group)
	}
	self := n.keys.account.ID()
	type dev struct {
		id     peer.ID
		relays []string
	}
	var devs []dev
	_ = n.db.View(func(tx *storage.Txn) error {
		for a := range st.Members {
			if a == self {
				continue
			}
			c, err := n.st.getContact(tx, a)
			if err != nil {
				continue
			}
			list, err := c.deviceList()
			if err != nil || list == nil {
				continue
			}
			for _, d := range list.Devices {
				if rec := c.record(d.Device); rec != nil && rec.PeerID != "" {
					devs = append(devs, dev{rec.PeerID, rec.Relays})
				}
			}
		}
		return nil
	})
	for _, d := range devs {
		if n.directlyConnected(d.id) {
			continue
		}
		n.addCircuitAddrs(d.id, d.relays)
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		if err := n.host.Connect(network.WithAllowLimitedConn(cctx, "peergram-groups"), peer.AddrInfo{ID: d.id}); err == nil && !n.directlyConnected(d.id) {
			_, err = n.host.Network().DialPeer(network.WithForceDirectDial(cctx, "peergram-groups"), d.id)
			if err != nil {
				n.log.Debug("group: no direct connection to a member", "peer", d.id, "err", err)
			}
		}
		cancel()
	}
}

func (n *Node) directlyConnected(p peer.ID) bool {
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if !c.Stat().Limited {
			return true
		}
	}
	return false
}

// refreshGroup reloads a group after a change committed to its log.
func (n *Node) refreshGroup(ctx context.Context, id groupstate.GroupID) {
	var l *groupstate.Log
	err := n.db.View(func(tx *storage.Txn) (err error) {
		l, err = n.findGroup(tx, hex.EncodeToString(id[:]))
		return err
	})
	if err != nil {
		n.log.Error("group: reload", "err", err)
		return
	}
	n.groupChanged(ctx, l.State())
}

// groupMembers is the node as groupnet.Members.
type groupMembers Node

func (m *groupMembers) MayPublish(group [32]byte, device identity.DeviceID, kind groupmsg.Kind) (identity.AccountID, error) {
	n := (*Node)(m)
	g := n.groups
	g.mu.Lock()
	st := g.states[groupstate.GroupID(group)]
	acct, known := g.devices[device]
	stale := time.Since(g.devAt) > time.Second
	g.mu.Unlock()
	if st == nil {
		return identity.AccountID{}, groupnet.ErrNotAllowed // not a group of ours: not joined
	}
	if !known && stale {
		n.refreshDevices()
		g.mu.Lock()
		acct, known = g.devices[device]
		g.mu.Unlock()
	}
	if !known {
		// A member that is not a contact: its devices are not known here
		// yet (fetching them from the directory comes later).
		return identity.AccountID{}, groupnet.ErrUnknownDevice
	}
	ok := false
	switch kind {
	case groupmsg.KindSenderKey, groupmsg.KindEpoch:
		ok = st.MayPost(acct)
	case groupmsg.KindGrants:
		ok = st.Role(acct) >= groupstate.RoleAdmin
	case groupmsg.KindState:
		// (A channel's subscribers change nothing of its log.)
		ok = st.Role(acct) != groupstate.RoleNone && (!st.Channel() || st.Role(acct) >= groupstate.RoleAdmin)
	}
	if !ok {
		return acct, groupnet.ErrNotAllowed
	}
	return acct, nil
}

// MayChange is the validators' check of a state-log entry in gossip
// (groupnet.Changes): groupnet.EntryMaySpread against the group's state
// as this node holds it.
func (m *groupMembers) MayChange(group [32]byte, e *groupstate.Entry) error {
	n := (*Node)(m)
	if e.Cert.Device == n.keys.device.ID() {
		return nil // this device's own, published after it took it
	}
	g := n.groups
	g.mu.Lock()
	st := g.states[groupstate.GroupID(group)]
	g.mu.Unlock()
	if st == nil {
		return groupnet.ErrNotAllowed // not a group of ours: not joined
	}
	return groupnet.EntryMaySpread(st, e)
}

// refreshDevices rebuilds the device → account map from the contacts'
// signed device lists and the node's own.
func (n *Node) refreshDevices() {
	devs := map[identity.DeviceID]identity.AccountID{}
	n.mu.Lock()
	own := n.keys.list
	n.mu.Unlock()
	self := n.keys.account.ID()
	devs[n.keys.device.ID()] = self
	if own != nil {
		for _, c := range own.Devices {
			devs[c.Device] = self
		}
	}
	_ = n.db.View(func(tx *storage.Txn) error {
		all, err := n.st.allContacts(tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			if len(c.List) == 0 {
				continue
			}
			l, err := identity.ParseDeviceList(c.List)
			if err != nil || l.Verify(c.Account) != nil {
				continue
			}
			for _, d := range l.Devices {
				devs[d.Device] = c.Account
			}
		}
		return nil
	})
	g := n.groups
	g.mu.Lock()
	g.devices, g.devAt = devs, time.Now()
	g.mu.Unlock()
}

// Keys of groups.sk: group(32) || 'S' → this device's chain (Sender);
// group(32) || 'R' || device(32) || keyID(4) → a member device's chain
// (Receiver). Keys of groups.msg: group(32) || sent(8, unix ms) ||
// envelope hash(8) → groupMessage (JSON).
func senderKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'S') }

func receiverKey(g groupstate.GroupID, d identity.DeviceID, keyID uint32) []byte {
	k := append(append(append([]byte(nil), g[:]...), 'R'), d[:]...)
	return binary.BigEndian.AppendUint32(k, keyID)
}

// groupMessage is a stored group message.
type groupMessage struct {
	ID       string             `json:"id"` // hex of the envelope's hash
	From     identity.AccountID `json:"from"`
	Device   identity.DeviceID  `json:"device"`
	Text     string             `json:"text"`
	SentAt   int64              `json:"sent_at"` // sender's clock, unix ms
	Received int64              `json:"received_at"`
	ReplyTo  string             `json:"reply,omitempty"`
	Mentions []string           `json:"at,omitempty"`
	Poll     *pollBody          `json:"poll,omitempty"`
	Vote     *voteBody          `json:"vote,omitempty"`
	Close    string             `json:"close,omitempty"`
	Result   *pollResult        `json:"result,omitempty"` // a close's final count
	Fwd      *forwardRef        `json:"fwd,omitempty"`    // a forward's origin
	File     *chat.FileInfo     `json:"file,omitempty"`
	Deletes  string             `json:"delfile,omitempty"` // a file message deleted by its sender
	CallID   string             `json:"call,omitempty"`    // a group call started
	notKept  bool               // a call's key or end, an info key: acted on, not shown, not kept

	// events are those of storing it beyond its own (a file deleted),
	// published with them once the transaction commits; not stored.
	events []chat.Event
}

// groupBody is a group message's plaintext: a text (with an optional
// reply and mentions), a poll, a vote or a poll's close.
type groupBody struct {
	Text     string    `json:"text,omitempty"`
	ReplyTo  string    `json:"reply,omitempty"` // hex ID of the message answered
	Mentions []string  `json:"at,omitempty"`    // account IDs named with @
	Poll     *pollBody `json:"poll,omitempty"`  // Text is empty
	Vote     *voteBody `json:"vote,omitempty"`  // Text is empty
	Close    string    `json:"close,omitempty"` // hex ID of the poll closed
	// Result: the close's final count, which every member shows for the
	// closed poll (groupfeatures.go).
	Result *pollResult `json:"result,omitempty"`
	// Fwd: a text that is a forward (channels.go).
	Fwd  *forwardRef `json:"fwd,omitempty"`
	File *fileRef    `json:"file,omitempty"` // Text is its caption (may be empty)
	// DeleteFile: the sender deletes its file message of that ID for
	// everyone.
	DeleteFile string `json:"delfile,omitempty"`
	// Call is about a group call (groupcalls.go).
	Call *callBody `json:"call,omitempty"`
	// Info is a group info key, sent under the epoch key in a large
	// group instead of to every member pairwise (groupinfo.go).
	Info *infoKey `json:"info,omitempty"`
}

// ensureSender returns this device's chain in group, starting one (and
// handing it to every other member) if there is none.
func (n *Node) ensureSender(tx *storage.Txn, st *groupstate.State) (*senderkey.Sender, []identity.AccountID, error) {
	raw, err := tx.Get(n.st.groupKeys, senderKey(st.Group))
	if err == nil {
		s, err := senderkey.ParseSender(raw)
		return s, nil, err
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, nil, err
	}
	keyID := uint32(1)
	if raw, err := tx.Get(n.st.groupKeys, nextKeyIDKey(st.Group)); err == nil && len(raw) == 4 {
		keyID = binary.BigEndian.Uint32(raw)
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, nil, err
	}
	s, err := senderkey.NewSender(n.rand, st.Group, n.keys.device.ID(), keyID)
	if err != nil {
		return nil, nil, err
	}
	var to []identity.AccountID
	for a := range st.Members {
		to = append(to, a) // our own other devices too
	}
	return s, to, n.sendDistribution(tx, s, to)
}

// sendDistribution enqueues s's current state for every device of the
// accounts to (over the pairwise sessions).
func (n *Node) sendDistribution(tx *storage.Txn, s *senderkey.Sender, to []identity.AccountID) error {
	d, err := s.Distribution().MarshalBinary()
	if err != nil {
		return err
	}
	dist := s.Distribution()
	body, err := encodePayload(payload{Kind: "group-key", Group: hex.EncodeToString(dist.Group[:]), Log: [][]byte{d}, DT: n.tokenHex()})
	if err != nil {
		return err
	}
	self := n.keys.account.ID()
	nowMs := n.cfg.Now().UnixMilli()
	for _, a := range to {
		if a == self && len(n.ownOtherDevices()) == 0 {
			continue
		}
		var id chat.MessageID
		if _, err := n.rand.Read(id[:]); err != nil {
			return err
		}
		if err := n.enqueue(tx, &job{ID: id, To: a, Payload: body, SentAt: nowMs}); err != nil {
			return err
		}
	}
	return nil
}

// ownOtherDevices lists the account's devices other than this one.
func (n *Node) ownOtherDevices() []identity.DeviceID {
	n.mu.Lock()
	l := n.keys.list
	n.mu.Unlock()
	var out []identity.DeviceID
	if l != nil {
		for _, c := range l.Devices {
			if c.Device != n.keys.device.ID() {
				out = append(out, c.Device)
			}
		}
	}
	return out
}

// applyGroupKey stores a member device's chain, from a "group-key"
// payload its device sent over the pairwise session. Only chains of the
// device that sent it are taken (a member cannot hand out another's), and
// only from members of a group the node holds, or from contacts (the key
// may arrive before the group's log).
func (n *Node) applyGroupKey(tx *storage.Txn, m *messageFrom, p payload) ([]chat.Event, error) {
	if len(p.Log) != 1 {
		return nil, nil
	}
	d, err := senderkey.ParseDistribution(p.Log[0])
	if err != nil || hex.EncodeToString(d.Group[:]) != p.Group || d.Device != m.device {
		n.log.Info("group key dropped", "from", m.account.String(), "err", err)
		return nil, nil
	}
	st := n.groupState(groupstate.GroupID(d.Group))
	switch {
	case st != nil && st.Role(m.account) != groupstate.RoleNone:
	case st == nil && (m.contact || n.invitedBy(tx, groupstate.GroupID(d.Group), m.account)):
	default:
		n.log.Info("group key dropped: not from a member", "from", m.account.String())
		return nil, nil
	}
	r, err := senderkey.NewReceiver(d)
	if err != nil {
		return nil, nil
	}
	k := receiverKey(groupstate.GroupID(d.Group), d.Device, d.KeyID)
	if ok, err := tx.Has(n.st.groupKeys, k); err != nil || ok {
		return nil, err // the chain as first received stays (no rewinding it)
	}
	raw, err := r.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if st == nil {
		// A chain for a group whose log has not come: kept a week only,
		// and a contact may leave at most maxEarlyChains of them.
		early, err := n.earlyChains(tx, m.device)
		if err != nil || early >= maxEarlyChains {
			return nil, err
		}
		if err := tx.SetTTL(n.st.groupKeys, k, raw, 7*24*time.Hour); err != nil {
			return nil, err
		}
	} else if err := tx.Set(n.st.groupKeys, k, raw); err != nil {
		return nil, err
	}
	// Messages that came before the chain, in chain order.
	gid := groupstate.GroupID(d.Group)
	marker := heldMarkerKey(gid, d.Device, d.KeyID)
	if _, err := tx.Has(n.st.groupKeys, marker); err != nil {
		return nil, err
	}
	prefix := pendingPrefix(gid, d.Device, d.KeyID)
	var held []pendingMessage
	var keys [][]byte
	if err := tx.Iterate(n.st.groupPend, prefix, func(key, v []byte) error {
		var p pendingMessage
		if json.Unmarshal(v, &p) == nil {
			held = append(held, p)
		}
		keys = append(keys, append([]byte(nil), key...))
		return nil
	}); err != nil {
		return nil, err
	}
	var events []chat.Event
	for i := range held {
		gm, err := n.openGroupMessage(tx, gid, d.Device, k, &held[i])
		if err != nil {
			return nil, err
		}
		if gm.ID != "" && gm.shown() {
			v := n.groupMessageView(gid, gm, nil)
			events = append(events, chat.Event{Type: chat.EventGroupMessage, Group: &v})
			if v.MentionsMe {
				events = append(events, chat.Event{Type: chat.EventGroupMention, Group: &v})
			}
		}
	}
	for _, key := range keys {
		if err := tx.Delete(n.st.groupPend, key); err != nil {
			return nil, err
		}
	}
	if len(keys) > 0 {
		if err := tx.Delete(n.st.groupKeys, marker); err != nil {
			return nil, err
		}
	}
	if len(held) > 0 {
		n.received.Add(int64(len(held)))
	}
	return events, nil
}

// maxEarlyChains bounds the chains one device may leave for groups the
// node does not hold.
const maxEarlyChains = 16

// earlyChains counts the chains of dev stored for groups the node does
// not hold.
func (n *Node) earlyChains(tx *storage.Txn, dev identity.DeviceID) (int, error) {
	count := 0
	err := tx.Iterate(n.st.groupKeys, nil, func(k, _ []byte) error {
		if len(k) == 32+1+32+4 && k[32] == 'R' && string(k[33:65]) == string(dev[:]) && n.groupState(groupstate.GroupID(k[:32])) == nil {
			count++
		}
		return nil
	})
	return count, err
}

// messageFrom is who sent a pairwise payload.
type messageFrom struct {
	account identity.AccountID
	device  identity.DeviceID
	contact bool
}

func (n *Node) groupState(id groupstate.GroupID) *groupstate.State {
	g := n.groups
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.states[id]
}

// SendGroup posts text to a group: sealed under this device's chain, the
// chain's new state and the message committed, then published.
func (n *Node) SendGroup(ctx context.Context, group, text string) (chat.GroupMessage, error) {
	return n.PostGroup(ctx, group, chat.GroupPost{Text: text})
}

// postGroup seals body under this device's chain, commits the chain's new
// state and the message, then publishes it.
func (n *Node) postGroup(ctx context.Context, group string, body *groupBody, check func(*storage.Txn, *groupstate.State) error) (chat.GroupMessage, error) {
	if err := body.check(); err != nil {
		return chat.GroupMessage{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	return n.sealGroup(ctx, group, body, nil, check)
}

// sealGroup is postGroup without the body's check; raw, if not nil, is
// sealed instead of body's encoding (tests send what no honest node
// would, to see the members' nodes refuse it).
func (n *Node) sealGroup(ctx context.Context, group string, body *groupBody, raw []byte, check func(*storage.Txn, *groupstate.State) error) (chat.GroupMessage, error) {
	if n.groups == nil {
		return chat.GroupMessage{}, fmt.Errorf("%w: groups are not running", chat.ErrUnavailable)
	}
	var env []byte
	var gm groupMessage
	var gid groupstate.GroupID
	var notify []identity.AccountID
	var grants [][]byte // a new epoch key's copies, published first
	err := n.db.Update(func(tx *storage.Txn) error {
		notify, grants = nil, nil
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		st := l.State()
		gid = st.Group
		if !st.MayPost(n.keys.account.ID()) {
			if st.Channel() {
				return fmt.Errorf("%w: only the channel's admins post", chat.ErrInvalid)
			}
			return fmt.Errorf("%w: you may not post in this group", chat.ErrInvalid)
		}
		if check != nil {
			if err := check(tx, st); err != nil {
				return err
			}
		}
		plain, err := json.Marshal(body)
		if err != nil {
			return err
		}
		if raw != nil {
			plain = raw
		}
		var ct []byte
		kind := groupmsg.KindSenderKey
		if n.epochTier(st) {
			kind = groupmsg.KindEpoch
			if ct, grants, err = n.sealEpochMessage(tx, l, plain); err != nil {
				return err
			}
		} else {
			s, to, err := n.ensureSender(tx, st)
			if err != nil {
				return err
			}
			notify = to
			if ct, err = s.Seal(plain); err != nil {
				return err
			}
			raw, err := s.MarshalBinary()
			if err != nil {
				return err
			}
			if err := tx.Set(n.st.groupKeys, senderKey(gid), raw); err != nil {
				return err
			}
		}
		// Until a home relay's history shows it, the post is kept to hand
		// over (grouphistory.go storeUnconfirmed).
		var now int64
		if env, now, err = n.sealEnvelope(tx, gid, kind, ct); err != nil {
			return err
		}
		gm = groupMessage{ID: envelopeID(env), From: n.keys.account.ID(), Device: n.keys.device.ID(), SentAt: now, Received: now}
		gm.setBody(body)
		if gm.notKept {
			hash, _ := hex.DecodeString(gm.ID)
			return n.markSeen(tx, gid, hash)
		}
		if body.File != nil {
			if err := n.fileGroupTx(tx, gid, &gm, body.File); err != nil {
				return err
			}
		}
		return n.putGroupMessage(tx, gid, &gm)
	})
	if err != nil {
		return chat.GroupMessage{}, err
	}
	// This node's other clients (another browser tab, an event stream)
	// see the post as the members do.
	if !gm.notKept {
		for _, ev := range n.groupMessageEvents(gid, gm) {
			n.events.publish(ev)
		}
	}
	for _, a := range notify {
		n.notify(a)
	}
	// Once the post had its time to reach a relay by gossip, the history
	// loop checks and hands it over itself if it did not.
	after := n.cfg.GroupStoreAfter
	if after <= 0 {
		after = 10 * time.Second
	}
	time.AfterFunc(after+time.Second, n.wakeHistory)
	n.publishEnvelopes(ctx, gid, grants)
	err = n.groups.net.Publish(ctx, gid, env)
	if errors.Is(err, groupnet.ErrNotJoined) {
		// The group's log was just stored (a join, an add) and its topic
		// is joined after that commit: join now and publish.
		n.refreshGroup(n.runCtx, gid)
		err = n.groups.net.Publish(ctx, gid, env)
	}
	if err != nil {
		return chat.GroupMessage{}, fmt.Errorf("%w: %w", chat.ErrUnavailable, err)
	}
	return n.groupMessageView(gid, gm, nil), nil
}

// maxGroupText bounds a group message's text.
const maxGroupText = 64 << 10

func envelopeID(env []byte) string {
	id := groupmsg.ID(env)
	return hex.EncodeToString([]byte(id))
}

func (n *Node) putGroupMessage(tx *storage.Txn, gid groupstate.GroupID, gm *groupMessage) error {
	raw, err := json.Marshal(gm)
	if err != nil {
		return err
	}
	hash, _ := hex.DecodeString(gm.ID)
	if len(hash) != 32 {
		return fmt.Errorf("a group message ID of %d bytes", len(hash))
	}
	if err := n.markSeen(tx, gid, hash); err != nil {
		return err
	}
	k := binary.BigEndian.AppendUint64(append([]byte(nil), gid[:]...), uint64(gm.SentAt))
	return tx.Set(n.st.groupMsgs, append(k, hash[:8]...), raw)
}

// receiveGroup takes a group's validated envelopes until ctx ends.
func (n *Node) receiveGroup(ctx context.Context, gid groupstate.GroupID) {
	for {
		msg, err := n.groups.net.Next(ctx, gid)
		if err != nil {
			return
		}
		if msg.Device == n.keys.device.ID() {
			continue // our own, stored when sent
		}
		if err := n.takeEnvelope(gid, msg); err != nil {
			n.log.Info("group envelope not taken", "group", hex.EncodeToString(gid[:8]), "kind", msg.Kind, "err", err)
		}
	}
}

// takeEnvelope takes a validated envelope of another device: a message
// (either tier), an epoch key's copies, or an entry of a large group's
// log (grouplogfetch.go).
func (n *Node) takeEnvelope(gid groupstate.GroupID, msg *groupnet.Message) error {
	switch msg.Kind {
	case groupmsg.KindSenderKey:
		return n.takeGroupMessage(gid, msg)
	case groupmsg.KindEpoch:
		return n.takeEpochMessage(gid, msg)
	case groupmsg.KindGrants:
		return n.takeGrants(gid, msg)
	case groupmsg.KindState:
		return n.takeStateEntry(gid, msg)
	}
	return nil
}

func (n *Node) takeGroupMessage(gid groupstate.GroupID, msg *groupnet.Message) error {
	h, err := senderkey.PeekHeader(msg.Payload)
	if err != nil {
		return err
	}
	var gm groupMessage
	err = n.db.Update(func(tx *storage.Txn) error {
		gm = groupMessage{}
		if seen, err := tx.Has(n.st.groupSeen, groupSeenKey(gid, []byte(msg.ID))); err != nil || seen {
			return err // held already (gossip and a relay's history both bring it)
		}
		k := receiverKey(gid, msg.Device, h.KeyID)
		ok, err := tx.Has(n.st.groupKeys, k)
		if err != nil {
			return err
		}
		p := pendingMessage{ID: hex.EncodeToString([]byte(msg.ID)), From: msg.Account, Time: msg.Time, Payload: msg.Payload}
		if !ok {
			// The sender's chain comes over the pairwise session and may
			// arrive after its first messages: keep them until it does.
			return n.holdGroupMessage(tx, gid, msg.Device, h, &p)
		}
		gm, err = n.openGroupMessage(tx, gid, msg.Device, k, &p)
		return err
	})
	if err != nil {
		return err
	}
	n.announce(gid, gm)
	return nil
}

// pendingMessage is a group message held until its sender's chain
// arrives (groups.pend: group(32) || device(32) || keyID(4) || iteration(4)).
type pendingMessage struct {
	ID      string             `json:"id"`
	From    identity.AccountID `json:"from"`
	Time    int64              `json:"time"`
	Payload []byte             `json:"payload"`
}

// Held messages are bounded per sending device and per group, and in
// size (a real message's text is at most maxGroupText): a member cannot
// fill the disk by naming key IDs it never hands out.
const (
	maxPendingDevice = 200
	maxPendingGroup  = 2000
	maxHeldPayload   = maxGroupText + 1024
)

// heldMarkerKey (groups.sk: group || 'P' || device || keyID) is written
// with every message held for a chain and read by the chain's arrival.
// Without it the two could commit side by side — the hold after the
// arrival's snapshot, the arrival not seeing the held message, the hold
// not seeing the chain — and the message would stay held for good (a
// phantom the store's conflict check cannot see; TestGroupOfflineMember
// lost messages that way under load). With it, whichever commits second
// conflicts and runs again.
func heldMarkerKey(gid groupstate.GroupID, dev identity.DeviceID, keyID uint32) []byte {
	k := append(append(append([]byte(nil), gid[:]...), 'P'), dev[:]...)
	return binary.BigEndian.AppendUint32(k, keyID)
}

func pendingPrefix(gid groupstate.GroupID, dev identity.DeviceID, keyID uint32) []byte {
	k := append(append([]byte(nil), gid[:]...), dev[:]...)
	return binary.BigEndian.AppendUint32(k, keyID)
}

func (n *Node) holdGroupMessage(tx *storage.Txn, gid groupstate.GroupID, dev identity.DeviceID, h senderkey.Header, p *pendingMessage) error {
	if len(p.Payload) > maxHeldPayload {
		return fmt.Errorf("a held message of %d bytes (at most %d)", len(p.Payload), maxHeldPayload)
	}
	// Bounds per sending device (whatever key IDs it names) and per group.
	for _, b := range []struct {
		prefix []byte
		max    int
	}{{append(append([]byte(nil), gid[:]...), dev[:]...), maxPendingDevice}, {gid[:], maxPendingGroup}} {
		held, err := tx.Count(n.st.groupPend, b.prefix)
		if err != nil {
			return err
		}
		if held >= b.max {
			return fmt.Errorf("%d messages held already", held)
		}
	}
	prefix := pendingPrefix(gid, dev, h.KeyID)
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	// The marker makes a hold and the chain's arrival conflict in the
	// store (see heldMarkerKey).
	if err := tx.SetTTL(n.st.groupKeys, heldMarkerKey(gid, dev, h.KeyID), nil, 7*24*time.Hour); err != nil {
		return err
	}
	hash, err := hex.DecodeString(p.ID)
	if err != nil {
		return err
	}
	if err := n.markSeen(tx, gid, hash); err != nil {
		return err
	}
	return tx.SetTTL(n.st.groupPend, binary.BigEndian.AppendUint32(prefix, h.Iteration), raw, 7*24*time.Hour)
}

// openGroupMessage opens a message with the chain stored under k and
// stores it. A message that does not open is dropped (logged).
func (n *Node) openGroupMessage(tx *storage.Txn, gid groupstate.GroupID, dev identity.DeviceID, k []byte, p *pendingMessage) (groupMessage, error) {
	raw, err := tx.Get(n.st.groupKeys, k)
	if err != nil {
		return groupMessage{}, err
	}
	r, err := senderkey.ParseReceiver(raw)
	if err != nil {
		return groupMessage{}, err
	}
	pt, err := r.Open(p.Payload)
	if err != nil {
		n.log.Info("group message does not open", "group", hex.EncodeToString(gid[:8]), "err", err)
		return groupMessage{}, nil
	}
	if raw, err = r.MarshalBinary(); err != nil {
		return groupMessage{}, err
	}
	if err := tx.Set(n.st.groupKeys, k, raw); err != nil {
		return groupMessage{}, err
	}
	return n.storeOpened(tx, gid, dev, p, pt, 0)
}

func ptr[T any](v T) *T { return &v }
