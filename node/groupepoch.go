package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/storage"
)

// The epoch tier: channels, and groups of more than
// Config.GroupSenderKeyLimit members, encrypt their messages under an
// epoch key (crypto/epochkey) instead of Sender Keys. An admin's device
// draws the key, wraps a copy for every device of every member with HPKE
// to the device's certified X25519 key, and publishes the signed pages of
// copies (KindGrants envelopes) on the group's topic, where relays keep
// them with the messages for members who were offline. No pairwise
// session is needed, so a channel reaches subscribers that never talked
// to its admins, and a rotation costs one wrap per device, made once.
//
// Epoch numbers: the high 32 bits are the length of the group's log when
// the key was drawn (its base), the next 16 the first two bytes of the
// hash of the log's last entry then (its branch), the low 16 random, so
// that two admins drawing at once make two distinct epochs. A device
// seals with the greatest epoch it holds that is fresh: drawn on the log
// this node holds (the entry at base−1 is there, with that hash), after
// the log's last entry that took a member out (remove, ban, leave), by an
// account that is still an admin. A member removed at log position s got
// copies only of keys drawn before s on that branch; none of them is
// fresh once the removal is known — whatever epoch number its drawer
// chose (a far-future base is not on the log) and whichever way a fork
// went (a key drawn on a branch that lost is not on the log either).
// An admin draws a new key as soon as it learns of a removal (and when it
// posts with none fresh); a member that is not an admin and holds no
// fresh key cannot post until an admin's new key reaches it
// (chat.ErrUnavailable).
//
// Members who join get the current key from an admin's next pass (run on
// every change of the group); in a channel, every key the admin holds,
// so that subscribers read its history as in Telegram. In a group, a new
// member reads the current epoch (from the last rotation on), and nothing
// before it.

// maxEpochAhead is how many entries beyond its own log a node accepts an
// epoch's base to be (the drawer may hold entries not here yet).
const maxEpochAhead = 16

// DefaultSenderKeyLimit is the most members a group encrypts with Sender
// Keys by default (the design's threshold: Sender Keys cost every member
// a distribution to every other).
const DefaultSenderKeyLimit = 1000

// epochTier tells whether st's messages are sealed under epoch keys.
func (n *Node) epochTier(st *groupstate.State) bool {
	limit := n.cfg.GroupSenderKeyLimit
	if limit <= 0 {
		limit = DefaultSenderKeyLimit
	}
	return st.Channel() || len(st.Members) > limit
}

// Keys of groups.ek: group(32) || 'K' || epoch(8) → the key's secret ||
// the account that drew it;
// group || 'G' || epoch || device(32) → nothing: that device has a copy
// (kept by admins); group || 'H' || epoch → nothing: a message waits for
// the key (see heldMarkerKey for why).
func epochKeyKey(g groupstate.GroupID, epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(append(append([]byte(nil), g[:]...), 'K'), epoch)
}

func epochGrantedKey(g groupstate.GroupID, epoch uint64, dev identity.DeviceID) []byte {
	k := binary.BigEndian.AppendUint64(append(append([]byte(nil), g[:]...), 'G'), epoch)
	return append(k, dev[:]...)
}

// epochDrawKey (group || 'D') holds the last epoch this device drew.
func epochDrawKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'D') }

func epochHeldKey(g groupstate.GroupID, epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(append(append([]byte(nil), g[:]...), 'H'), epoch)
}

// epochBase is the log length at which an epoch's key was drawn.
func epochBase(epoch uint64) uint64 { return epoch >> 32 }

// epochNumber is the number of a key drawn on l now, with 16 random bits.
func epochNumber(l *groupstate.Log, random uint16) uint64 {
	h := l.Head().Hash()
	return uint64(l.State().Seq+1)<<32 | uint64(h[0])<<24 | uint64(h[1])<<16 | uint64(random)
}

// onLog tells whether an epoch was drawn on l: its base is within l and
// the entry before it has the hash bits the epoch names.
func onLog(l *groupstate.Log, epoch uint64) bool {
	base := epochBase(epoch)
	if base == 0 || base > l.State().Seq+1 {
		return false
	}
	es := l.Entries(base - 1)
	if len(es) == 0 {
		return false
	}
	h := es[0].Hash()
	return uint64(h[0])<<24|uint64(h[1])<<16 == epoch&0xffff0000
}

// heldKey is an epoch key as stored, with the account that drew it.
type heldKey struct {
	epochkey.Key
	drawer identity.AccountID
}

func epochKeyValue(k epochkey.Key, drawer identity.AccountID) []byte {
	return append(append(make([]byte, 0, 64), k.Secret[:]...), drawer[:]...)
}

// lastRemoval is the position of the last entry of l that took a member
// out, 0 if none did.
func lastRemoval(l *groupstate.Log) uint64 {
	es := l.Entries(1)
	for i := len(es) - 1; i >= 0; i-- {
		switch es[i].Change.Kind {
		case groupstate.KindRemove, groupstate.KindBan, groupstate.KindLeave:
			return es[i].Seq
		}
	}
	return 0
}

// epochKeys returns the epoch keys this device holds for g, oldest
// epoch first.
func (n *Node) epochKeys(tx *storage.Txn, g groupstate.GroupID) ([]epochkey.Key, error) {
	held, err := n.heldKeys(tx, g)
	keys := make([]epochkey.Key, len(held))
	for i, h := range held {
		keys[i] = h.Key
	}
	return keys, err
}

func (n *Node) heldKeys(tx *storage.Txn, g groupstate.GroupID) ([]heldKey, error) {
	var keys []heldKey
	prefix := append(append([]byte(nil), g[:]...), 'K')
	err := tx.Iterate(n.st.groupEpoch, prefix, func(key, val []byte) error {
		if len(key) != len(prefix)+8 || len(val) != 64 {
			return fmt.Errorf("an epoch key record of %d/%d bytes", len(key), len(val))
		}
		k := heldKey{Key: epochkey.Key{Group: g, Epoch: binary.BigEndian.Uint64(key[len(prefix):])}}
		copy(k.Secret[:], val)
		copy(k.drawer[:], val[32:])
		keys = append(keys, k)
		return nil
	})
	return keys, err
}

// freshEpoch returns the key to seal with in l's group: the greatest
// epoch held that is fresh (see the comment at the top).
func (n *Node) freshEpoch(tx *storage.Txn, l *groupstate.Log) (epochkey.Key, bool, error) {
	// Read so that two transactions that both find no fresh key and
	// draw one conflict (drawEpoch writes it): the second runs again and
	// finds the first's key. Without it a new key in the 'K' range is a
	// phantom the store's conflict check cannot see (CI saw a post and
	// an admin's pass draw two keys at once).
	if _, err := tx.Get(n.st.groupEpoch, epochDrawKey(l.Group())); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return epochkey.Key{}, false, err
	}
	keys, err := n.heldKeys(tx, l.Group())
	if err != nil {
		return epochkey.Key{}, false, err
	}
	removed, st := lastRemoval(l), l.State()
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		if epochBase(k.Epoch) > removed && onLog(l, k.Epoch) && st.Role(k.drawer) >= groupstate.RoleAdmin {
			return k.Key, true, nil
		}
	}
	return epochkey.Key{}, false, nil
}

// memberCerts returns the certified devices of st's members that this
// node knows (its own list, its contacts' and members' lists).
func (n *Node) memberCerts(tx *storage.Txn, st *groupstate.State) ([]identity.DeviceCert, error) {
	self := n.keys.account.ID()
	var certs []identity.DeviceCert
	for a := range st.Members {
		if a == self {
			n.mu.Lock()
			own := n.keys.list
			n.mu.Unlock()
			if own == nil {
				certs = append(certs, *n.keys.cert)
				continue
			}
			certs = append(certs, own.Devices...)
			continue
		}
		c, err := n.st.getContact(tx, a)
		if errors.Is(err, chat.ErrUnknownContact) {
			continue // its list comes from the directory (learnMembers), then the next pass
		}
		if err != nil {
			return nil, err
		}
		l, err := c.deviceList()
		if err != nil || l == nil || l.Verify(a) != nil {
			continue
		}
		certs = append(certs, l.Devices...)
	}
	return certs, nil
}

// drawEpoch draws a new epoch key for l's group and wraps it for every
// member device known; it returns the key and the envelopes to publish.
func (n *Node) drawEpoch(tx *storage.Txn, l *groupstate.Log) (epochkey.Key, [][]byte, error) {
	var r [2]byte
	if _, err := io.ReadFull(n.rand, r[:]); err != nil {
		return epochkey.Key{}, nil, err
	}
	k, err := epochkey.NewKey(n.rand, l.Group(), epochNumber(l, binary.BigEndian.Uint16(r[:])))
	if err != nil {
		return epochkey.Key{}, nil, err
	}
	if err := tx.Set(n.st.groupEpoch, epochDrawKey(k.Group), binary.BigEndian.AppendUint64(nil, k.Epoch)); err != nil {
		return epochkey.Key{}, nil, err
	}
	if err := tx.Set(n.st.groupEpoch, epochKeyKey(k.Group, k.Epoch), epochKeyValue(k, n.keys.account.ID())); err != nil {
		return epochkey.Key{}, nil, err
	}
	certs, err := n.memberCerts(tx, l.State())
	if err != nil {
		return epochkey.Key{}, nil, err
	}
	envs, err := n.grantEpoch(tx, k, certs)
	n.log.Info("group: new epoch key", "group", hex.EncodeToString(k.Group[:8]), "devices", len(certs))
	return k, envs, err
}

// grantEpoch wraps k for devices and seals the pages as envelopes, kept
// to hand to the home relays (as own posts are) and marked as granted.
func (n *Node) grantEpoch(tx *storage.Txn, k epochkey.Key, devices []identity.DeviceCert) ([][]byte, error) {
	if len(devices) == 0 {
		return nil, nil
	}
	pages, err := epochkey.Wrap(n.keys.device, n.keys.cert, k, devices)
	if err != nil {
		return nil, err
	}
	var envs [][]byte
	for _, p := range pages {
		if len(p.Grants) == 0 {
			continue // only devices no copy can be made for
		}
		raw, err := p.MarshalBinary()
		if err != nil {
			return nil, err
		}
		env, _, err := n.sealEnvelope(tx, k.Group, groupmsg.KindGrants, raw)
		if err != nil {
			return nil, err
		}
		for _, g := range p.Grants {
			if err := tx.Set(n.st.groupEpoch, epochGrantedKey(k.Group, k.Epoch, g.Device), nil); err != nil {
				return nil, err
			}
		}
		envs = append(envs, env)
	}
	return envs, nil
}

// sealEnvelope signs an envelope of this device at a time after its last
// one, marks it seen and keeps it until a home relay shows it. It returns
// the envelope and its time.
func (n *Node) sealEnvelope(tx *storage.Txn, gid groupstate.GroupID, kind groupmsg.Kind, payload []byte) ([]byte, int64, error) {
	// Strictly increasing per device, so that members order a device's
	// messages as it sent them.
	now := max(n.cfg.Now().UnixMilli(), n.groups.lastSent.Load()+1)
	n.groups.lastSent.Store(now)
	env, err := groupmsg.Seal(n.keys.device, gid, kind, now, payload)
	if err != nil {
		return nil, 0, err
	}
	id := groupmsg.ID(env)
	v := binary.BigEndian.AppendUint64(nil, uint64(now))
	if err := tx.SetTTL(n.st.groupUnconf, groupSeenKey(gid, []byte(id)), append(v, env...), unconfTTL); err != nil {
		return nil, 0, err
	}
	return env, now, n.markSeen(tx, gid, []byte(id))
}

// grantEpochs is an admin's pass over an epoch-tier group: a new key if
// there is none or a member was taken out since the current one was
// drawn; otherwise copies of the current key (in a channel, of every key
// held) for the member devices that have none yet.
func (n *Node) grantEpochs(ctx context.Context, gid groupstate.GroupID) {
	// One pass at a time: two at once would both draw a key.
	n.groups.epochMu.Lock()
	defer n.groups.epochMu.Unlock()
	var envs [][]byte
	err := n.db.Update(func(tx *storage.Txn) error {
		envs = nil
		l, err := n.findGroup(tx, hex.EncodeToString(gid[:]))
		if err != nil {
			return err
		}
		st := l.State()
		if !n.epochTier(st) || st.Role(n.keys.account.ID()) < groupstate.RoleAdmin {
			return nil
		}
		k, fresh, err := n.freshEpoch(tx, l)
		if err != nil {
			return err
		}
		if !fresh {
			_, envs, err = n.drawEpoch(tx, l)
			return err
		}
		certs, err := n.memberCerts(tx, st)
		if err != nil {
			return err
		}
		var lacking []identity.DeviceCert
		for _, c := range certs {
			ok, err := tx.Has(n.st.groupEpoch, epochGrantedKey(gid, k.Epoch, c.Device))
			if err != nil {
				return err
			}
			if !ok {
				lacking = append(lacking, c)
			}
		}
		if len(lacking) == 0 {
			return nil
		}
		keys := []epochkey.Key{k}
		if st.Channel() {
			// Subscribers read a channel's history.
			if keys, err = n.epochKeys(tx, gid); err != nil {
				return err
			}
		}
		for _, key := range keys {
			e, err := n.grantEpoch(tx, key, lacking)
			if err != nil {
				return err
			}
			envs = append(envs, e...)
		}
		return nil
	})
	if err != nil {
		n.log.Error("group: epoch keys", "group", hex.EncodeToString(gid[:8]), "err", err)
		return
	}
	n.publishEnvelopes(ctx, gid, envs)
}

// publishEnvelopes publishes this device's envelopes in order; what
// gossip does not carry reaches the relays from groups.unconf.
func (n *Node) publishEnvelopes(ctx context.Context, gid groupstate.GroupID, envs [][]byte) {
	for _, env := range envs {
		err := n.groups.net.Publish(ctx, gid, env)
		if errors.Is(err, groupnet.ErrNotJoined) {
			n.refreshGroup(n.runCtx, gid)
			err = n.groups.net.Publish(ctx, gid, env)
		}
		if err != nil {
			n.log.Info("group: publish", "group", hex.EncodeToString(gid[:8]), "err", err)
		}
	}
	if len(envs) > 0 {
		after := n.cfg.GroupStoreAfter
		if after <= 0 {
			after = 10 * time.Second
		}
		time.AfterFunc(after+time.Second, n.wakeHistory)
	}
}

// sealEpochMessage seals plain under the group's fresh epoch key (an
// admin draws one if there is none); it returns the ciphertext and the
// envelopes of a new key to publish before the message.
func (n *Node) sealEpochMessage(tx *storage.Txn, l *groupstate.Log, plain []byte) ([]byte, [][]byte, error) {
	k, fresh, err := n.freshEpoch(tx, l)
	if err != nil {
		return nil, nil, err
	}
	var grants [][]byte
	if !fresh {
		if l.State().Role(n.keys.account.ID()) < groupstate.RoleAdmin {
			return nil, nil, fmt.Errorf("%w: the group's key is being renewed by its admins; try again shortly", chat.ErrUnavailable)
		}
		if k, grants, err = n.drawEpoch(tx, l); err != nil {
			return nil, nil, err
		}
	}
	ct, err := epochkey.Seal(n.rand, k, n.keys.device.ID(), plain)
	return ct, grants, err
}

// takeEpochMessage stores a message sealed under an epoch key, or holds
// it until the key arrives.
func (n *Node) takeEpochMessage(gid groupstate.GroupID, msg *groupnet.Message) error {
	h, err := epochkey.PeekHeader(msg.Payload)
	if err != nil {
		return err
	}
	var gm groupMessage
	err = n.db.Update(func(tx *storage.Txn) error {
		gm = groupMessage{}
		if seen, err := tx.Has(n.st.groupSeen, groupSeenKey(gid, []byte(msg.ID))); err != nil || seen {
			return err
		}
		p := pendingMessage{ID: hex.EncodeToString([]byte(msg.ID)), From: msg.Account, Time: msg.Time, Payload: msg.Payload}
		secret, err := tx.Get(n.st.groupEpoch, epochKeyKey(gid, h.Epoch))
		if errors.Is(err, storage.ErrNotFound) {
			return n.holdEpochMessage(tx, gid, msg.Account, msg.Device, h.Epoch, &p)
		}
		if err != nil {
			return err
		}
		k := epochkey.Key{Group: gid, Epoch: h.Epoch}
		copy(k.Secret[:], secret)
		gm, err = n.openEpochMessage(tx, gid, msg.Device, k, &p)
		return err
	})
	if err != nil {
		return err
	}
	n.announce(gid, gm)
	return nil
}

// announce counts and publishes the events of a message just stored.
func (n *Node) announce(gid groupstate.GroupID, gm groupMessage) {
	if gm.ID == "" {
		return
	}
	n.received.Add(1)
	for _, ev := range n.groupMessageEvents(gid, gm) {
		n.events.publish(ev)
	}
}

func epochPendKey(gid groupstate.GroupID, acct identity.AccountID, dev identity.DeviceID, epoch uint64, id []byte) []byte {
	k := binary.BigEndian.AppendUint64(append(append(append([]byte(nil), gid[:]...), acct[:]...), dev[:]...), epoch)
	return append(k, id[:8]...)
}

// epochPendLen is the length of a groups.epend key.
const epochPendLen = 32 + 32 + 32 + 8 + 8

// holdEpochMessage keeps a message until its epoch's key arrives, within
// the bounds of held Sender Keys messages — per sending account rather
// than per device (an account may list many devices) — and only for an
// epoch whose base is within the log (give or take an entry this node
// has not got yet): a member cannot fill the group's bound with epochs
// no one will ever draw (review finding).
func (n *Node) holdEpochMessage(tx *storage.Txn, gid groupstate.GroupID, from identity.AccountID, dev identity.DeviceID, epoch uint64, p *pendingMessage) error {
	if len(p.Payload) > maxHeldPayload {
		return fmt.Errorf("a held message of %d bytes (at most %d)", len(p.Payload), maxHeldPayload)
	}
	if st := n.groupState(gid); st == nil || epochBase(epoch) == 0 || epochBase(epoch) > st.Seq+1+maxEpochAhead {
		return fmt.Errorf("a message of epoch %x, not drawn on this group's log", epoch)
	}
	for _, b := range []struct {
		prefix []byte
		max    int
	}{{append(append([]byte(nil), gid[:]...), from[:]...), maxPendingDevice}, {gid[:], maxPendingGroup}} {
		held, err := tx.Count(n.st.groupEpend, b.prefix)
		if err != nil {
			return err
		}
		if held >= b.max {
			return fmt.Errorf("%d messages held already", held)
		}
	}
	hash, err := hex.DecodeString(p.ID)
	if err != nil || len(hash) != 32 {
		return fmt.Errorf("a message ID %q", p.ID)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := tx.SetTTL(n.st.groupEpoch, epochHeldKey(gid, epoch), nil, 7*24*time.Hour); err != nil {
		return err
	}
	if err := n.markSeen(tx, gid, hash); err != nil {
		return err
	}
	return tx.SetTTL(n.st.groupEpend, epochPendKey(gid, p.From, dev, epoch, hash), raw, 7*24*time.Hour)
}

// openEpochMessage opens a message with k and stores it. A message that
// does not open is dropped (logged).
func (n *Node) openEpochMessage(tx *storage.Txn, gid groupstate.GroupID, dev identity.DeviceID, k epochkey.Key, p *pendingMessage) (groupMessage, error) {
	pt, err := epochkey.Open(k, dev, p.Payload)
	if err != nil {
		n.log.Info("group message does not open", "group", hex.EncodeToString(gid[:8]), "err", err)
		return groupMessage{}, nil
	}
	return n.storeOpened(tx, gid, dev, p, pt, k.Epoch)
}

// storeOpened decodes and stores a group message's plaintext. One that
// does not decode is dropped (logged).
func (n *Node) storeOpened(tx *storage.Txn, gid groupstate.GroupID, dev identity.DeviceID, p *pendingMessage, pt []byte, epoch uint64) (groupMessage, error) {
	var b groupBody
	err := json.Unmarshal(pt, &b)
	if err == nil {
		err = b.check()
	}
	if err != nil {
		n.log.Info("group message undecodable", "group", hex.EncodeToString(gid[:8]), "err", err)
		return groupMessage{}, nil
	}
	gm := groupMessage{ID: p.ID, From: p.From, Device: dev, SentAt: p.Time, Received: n.cfg.Now().UnixMilli()}
	gm.setBody(&b)
	if b.Info != nil {
		hash, _ := hex.DecodeString(p.ID)
		return groupMessage{}, n.takeInfoKey(tx, gid, p.From, *b.Info, hash, epoch)
	}
	if b.Call != nil {
		go n.takeCallBody(gid, p.From, dev, time.UnixMilli(p.Time), b.Call)
		if gm.notKept {
			// A call's key or end is acted on, not kept: marked seen
			// so that gossip and history take it once.
			hash, _ := hex.DecodeString(p.ID)
			return groupMessage{}, n.markSeen(tx, gid, hash)
		}
	}
	if b.File != nil {
		if err := n.fileGroupTx(tx, gid, &gm, b.File); err != nil {
			return groupMessage{}, err
		}
	}
	if b.DeleteFile != "" {
		evs, err := n.fileDeleteTx(tx, hex.EncodeToString(gid[:]), p.From, []string{b.DeleteFile})
		if err != nil {
			return groupMessage{}, err
		}
		gm.events = evs
	}
	return gm, n.putGroupMessage(tx, gid, &gm)
}

// takeGrants takes a page of an epoch's copies from an admin (the
// validators checked that its device is an admin's): this device's copy
// is unwrapped, kept, and opens the messages held for it; an admin also
// notes which devices the page covers, so that it does not wrap for them
// again.
func (n *Node) takeGrants(gid groupstate.GroupID, msg *groupnet.Message) error {
	g, err := epochkey.ParseGrants(msg.Payload)
	if err != nil {
		return err
	}
	switch {
	case g.Group != gid:
		return fmt.Errorf("%w: copies of another group's key", chat.ErrInvalid)
	case g.Cert.Device != msg.Device || g.Cert.Account != msg.Account:
		return fmt.Errorf("%w: copies signed by another device than the envelope's", chat.ErrInvalid)
	}
	var opened []groupMessage
	err = n.db.Update(func(tx *storage.Txn) error {
		opened = nil
		if seen, err := tx.Has(n.st.groupSeen, groupSeenKey(gid, []byte(msg.ID))); err != nil || seen {
			return err
		}
		if err := n.markSeen(tx, gid, []byte(msg.ID)); err != nil {
			return err
		}
		if st := n.groupState(gid); st != nil && st.Role(n.keys.account.ID()) >= groupstate.RoleAdmin {
			for _, gr := range g.Grants {
				if err := tx.Set(n.st.groupEpoch, epochGrantedKey(gid, g.Epoch, gr.Device), nil); err != nil {
					return err
				}
			}
		}
		k, err := g.Unwrap(n.keys.device)
		if errors.Is(err, epochkey.ErrNoGrant) {
			return nil // a page for other devices
		}
		if err != nil {
			return err
		}
		if _, err := tx.Get(n.st.groupEpoch, epochKeyKey(gid, k.Epoch)); err == nil {
			return nil // held already (another admin's copy)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err := tx.Set(n.st.groupEpoch, epochKeyKey(gid, k.Epoch), epochKeyValue(k, g.Cert.Account)); err != nil {
			return err
		}
		// The marker makes this and a hold of a message for the epoch
		// conflict (see heldMarkerKey).
		if _, err := tx.Get(n.st.groupEpoch, epochHeldKey(gid, k.Epoch)); errors.Is(err, storage.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		type held struct {
			key []byte
			dev identity.DeviceID
			p   pendingMessage
		}
		var hs []held
		if err := tx.Iterate(n.st.groupEpend, gid[:], func(key, val []byte) error {
			if len(key) != epochPendLen || binary.BigEndian.Uint64(key[96:104]) != k.Epoch {
				return nil
			}
			h := held{key: append([]byte(nil), key...)}
			copy(h.dev[:], key[64:96])
			if err := json.Unmarshal(val, &h.p); err != nil {
				return err
			}
			hs = append(hs, h)
			return nil
		}); err != nil {
			return err
		}
		for _, h := range hs {
			if err := tx.Delete(n.st.groupEpend, h.key); err != nil {
				return err
			}
			gm, err := n.openEpochMessage(tx, gid, h.dev, k, &h.p)
			if err != nil {
				return err
			}
			opened = append(opened, gm)
		}
		return tx.Delete(n.st.groupEpoch, epochHeldKey(gid, k.Epoch))
	})
	if err != nil {
		return err
	}
	for _, gm := range opened {
		n.announce(gid, gm)
	}
	return nil
}
