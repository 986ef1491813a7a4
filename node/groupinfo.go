package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// A group's title and description are in its state log, which members
// register at their relays (relay/history), and relays must not read
// group names. So the node seals them before signing, with a group info
// key: 32 random bytes made with the group, sent to members with the log
// (payload "group-log", over the pairwise sessions) and never to a relay.
// A removal or a leave adds a new key, sent to the remaining members
// only, so a title set after someone left is not readable by them.
//
// Sealed text: "s1." + base64url(keyID u32 ‖ nonce[24] ‖
// XChaCha20-Poly1305(key, nonce, text, ad = infoAD ‖ group-independent)).
// The group ID is the hash of the creation entry, which carries the sealed
// title, so the seal cannot bind it; the log's signature binds the sealed
// text to the group instead.

const (
	sealedPrefix = "s1."
	infoAD       = "peergram/group-info/v1"
)

// infoKey is one of a group's info keys.
type infoKey struct {
	ID  uint32 `json:"id"`
	Key []byte `json:"k"`
	// Epoch is, in this node's store, the epoch key the key came (or was
	// posted) under as an info message; 0 for a key that came with the
	// log. A node never takes another's word for it (pairwiseKeys).
	Epoch uint64 `json:"e,omitempty"`
	// At and AtHash name the entry of the log (seq and hash) that was
	// its maker's head when the key was made, and travel with it:
	// outside the epoch tier a key seals only while that entry is in
	// this node's log, not before its last removal or leave
	// (sealingInfoKey). Empty on keys from before they were named.
	At     uint64 `json:"a,omitempty"`
	AtHash []byte `json:"ah,omitempty"`
	// By is its maker's device certificate and Sig that device's
	// signature of the key (infoKeySigned): whoever adds a member hands
	// it the keys, and a key seals only if an admin or the owner made it
	// (sealingInfoKey), so an adder cannot hand the newcomer a key of its
	// own making. Empty on keys that came as messages under epoch keys
	// (their sender is checked instead, takeInfoKey).
	By  []byte `json:"by,omitempty"`
	Sig []byte `json:"sg,omitempty"`
}

// infoKeyLabel labels an info key's signature (identity.DeviceKey.Sign).
const infoKeyLabel = "peergram/group-info-key/v1"

// infoKeySigned is what an info key's maker signs: the group, the key's
// ID, the entry it was made at and the key's hash (the signature travels
// with the key, but need not carry it).
func infoKeySigned(g groupstate.GroupID, k infoKey) []byte {
	kh := sha256.Sum256(k.Key)
	b := append(append(make([]byte, 0, 32+4+8+32+32), g[:]...), binary.BigEndian.AppendUint32(nil, k.ID)...)
	b = binary.BigEndian.AppendUint64(b, k.At)
	b = append(b, k.AtHash...)
	return append(b, kh[:]...)
}

// signInfoKey makes this device k's maker.
func (n *Node) signInfoKey(g groupstate.GroupID, k *infoKey) error {
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	by, err := cert.MarshalBinary()
	if err != nil {
		return err
	}
	k.By, k.Sig = by, n.keys.device.Sign(infoKeyLabel, infoKeySigned(g, *k))
	return nil
}

// infoKeyMaker returns the account whose device made and signed k, or
// false if k carries no valid signature.
func infoKeyMaker(g groupstate.GroupID, k infoKey) (identity.AccountID, bool) {
	if len(k.By) == 0 || len(k.AtHash) != 32 {
		return identity.AccountID{}, false
	}
	cert, err := identity.ParseDeviceCert(k.By)
	if err != nil || cert.Verify() != nil {
		return identity.AccountID{}, false
	}
	if !identity.Verify(cert.Device[:], infoKeyLabel, infoKeySigned(g, k), k.Sig) {
		return identity.AccountID{}, false
	}
	return cert.Account, true
}

// pairwiseKeys are keys as they came with a log: their epochs are the
// sender's say, so dropped.
func pairwiseKeys(ks []infoKey) []infoKey {
	out := make([]infoKey, len(ks))
	for i, k := range ks {
		out[i] = infoKey{ID: k.ID, Key: k.Key, At: k.At, AtHash: k.AtHash, By: k.By, Sig: k.Sig}
	}
	return out
}

// infoUnderEpoch reports whether st's info keys go as messages under
// epoch keys (see rotateInfoKey).
func (n *Node) infoUnderEpoch(st *groupstate.State) bool { return n.gossipsLog(st) && n.epochTier(st) }

// sealingInfoKey is the key this node seals l's title, description and
// photo reference with. The order in which keys arrive is not the log's,
// so "the newest learnt" could be a key that a member taken out since, or
// an admin on a branch that lost, holds. In a group whose info keys go
// under epoch keys it is the newest key that came under the fresh epoch
// key (freshEpoch: drawn on this log, after its last removal, by an
// admin). In other groups (keys come pairwise, from admins, or all at
// once when this node joins) it is the newest learnt of those made at an
// entry of this log not before its last removal or leave (an admin
// offline removing someone while the owner removed another made a key on
// the losing branch and sent it to the member the owner removed) and
// signed by a device of an admin or the owner (whoever adds a member
// hands it the keys, and could otherwise slip in one of its own).
func (n *Node) sealingInfoKey(tx *storage.Txn, l *groupstate.Log) (infoKey, bool, error) {
	keys, err := n.infoKeys(tx, l.Group())
	if err != nil || len(keys) == 0 {
		return infoKey{}, false, err
	}
	if st := l.State(); !n.infoUnderEpoch(st) {
		last := lastOut(l)
		for i := len(keys) - 1; i >= 0; i-- {
			k := keys[i]
			if !madeOn(l, k, last) {
				continue
			}
			if maker, ok := infoKeyMaker(l.Group(), k); ok && st.Role(maker) >= groupstate.RoleAdmin {
				return k, true, nil
			}
		}
		return infoKey{}, false, nil
	}
	ek, fresh, err := n.freshEpoch(tx, l)
	if err != nil || !fresh {
		return infoKey{}, false, err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if keys[i].Epoch == ek.Epoch {
			return keys[i], true, nil
		}
	}
	return infoKey{}, false, nil
}

// lastOut is the seq of l's last removal, ban or leave (0: none).
func lastOut(l *groupstate.Log) uint64 {
	for seq := l.Head().Seq; seq > 0; seq-- {
		switch l.At(seq).Change.Kind {
		case groupstate.KindRemove, groupstate.KindBan, groupstate.KindLeave:
			return seq
		}
	}
	return 0
}

// madeOn reports whether k was made at an entry of l at or after seq from.
func madeOn(l *groupstate.Log, k infoKey, from uint64) bool {
	if len(k.AtHash) != 32 || k.At < from || k.At > l.Head().Seq {
		return false
	}
	return l.At(k.At).Hash() == [32]byte(k.AtHash)
}

// infoKeysKey (groups.sk: group || 'I') holds a group's info keys (JSON,
// in the order this node learnt them; the last seals).
func infoKeysKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'I') }

// newInfoKey makes a key with a random ID: two members that rotate at
// once make two keys, and both spread (members keep the union).
func newInfoKey() (infoKey, error) {
	var id [4]byte
	k := infoKey{Key: make([]byte, chacha20poly1305.KeySize)}
	if _, err := rand.Read(id[:]); err != nil {
		return k, err
	}
	k.ID = binary.BigEndian.Uint32(id[:])
	_, err := rand.Read(k.Key)
	return k, err
}

func (n *Node) infoKeys(tx *storage.Txn, g groupstate.GroupID) ([]infoKey, error) {
	raw, err := tx.Get(n.st.groupKeys, infoKeysKey(g))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []infoKey
	return keys, json.Unmarshal(raw, &keys)
}

// addInfoKeys stores the keys of ks that the group does not have yet. A
// key is the same as one held if its ID, bytes and maker's signature
// are: a key under the ID of a held one but with other bytes is another
// key (openInfo tries each; a member handing a newcomer junk under a real
// key's ID must not keep the real one out), and a held key's copy
// signed otherwise is kept beside it (a copy whose signature was
// stripped or replaced must not keep out the one an admin signed; the
// first that seals is taken, sealingInfoKey). A copy without signature
// (a key that came as a message) adds nothing to a held signed one.
func (n *Node) addInfoKeys(tx *storage.Txn, g groupstate.GroupID, ks []infoKey) error {
	have, err := n.infoKeys(tx, g)
	if err != nil {
		return err
	}
	changed := false
	for _, k := range ks {
		if len(k.Key) != chacha20poly1305.KeySize {
			continue
		}
		dup, after := false, -1
		for i, h := range have {
			if h.ID != k.ID || string(h.Key) != string(k.Key) {
				continue
			}
			if h.Epoch == 0 && k.Epoch != 0 {
				have[i].Epoch, changed = k.Epoch, true // now known under which epoch
			}
			if k.By == nil || (bytes.Equal(h.By, k.By) && bytes.Equal(h.Sig, k.Sig)) {
				dup = true
			}
			after = i
		}
		if dup {
			continue
		}
		if len(have) >= maxInfoKeys {
			// The oldest goes, not the new one: a member who filled the
			// list before its removal must not keep out the key the
			// removal turns (the newest seals, and would be its own).
			have = have[1:]
			after--
		}
		if after >= 0 {
			// Beside the copy held: its place in the order learnt.
			k.Epoch = max(k.Epoch, have[after].Epoch)
			have = slices.Insert(have, after+1, k)
		} else {
			have = append(have, k)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	raw, err := json.Marshal(have)
	if err != nil {
		return err
	}
	return tx.Set(n.st.groupKeys, infoKeysKey(g), raw)
}

// maxInfoKeys bounds a group's info keys (one per removal; beyond it the
// oldest are dropped).
const maxInfoKeys = 4096

// rotateInfoKey adds a group's next info key. It reports whether the
// caller is to send it to every member pairwise (with the log): in a
// group whose log goes over gossip and whose messages go under epoch keys
// (more than Config.GroupSenderKeyLimit members, or a channel), it goes
// instead as a message under the next epoch key (postInfoKey), which
// reaches exactly the devices that remain, at the cost of one message,
// where pairwise it would take one session message per member: 200,000
// for a group of that size.
func (n *Node) rotateInfoKey(tx *storage.Txn, l *groupstate.Log) (pairwise bool, err error) {
	k, err := newInfoKey()
	if err != nil {
		return false, err
	}
	h := l.Head().Hash()
	k.At, k.AtHash = l.Head().Seq, h[:]
	g := l.Group()
	if err := n.signInfoKey(g, &k); err != nil {
		return false, err
	}
	if err := n.addInfoKeys(tx, g, []infoKey{k}); err != nil {
		return false, err
	}
	if st := l.State(); n.gossipsLog(st) && n.epochTier(st) {
		return false, tx.Set(n.st.groupKeys, infoPostKey(g), binary.BigEndian.AppendUint32(nil, k.ID))
	}
	return true, nil
}

// infoPostKey (groups.sk: group || 'P') holds the ID of an info key this
// node made and has still to post under an epoch key; it is deleted in
// the transaction that seals the post.
func infoPostKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'P') }

// errNothingToPost ends a postInfoKey that found no key to post.
var errNothingToPost = errors.New("no info key to post")

// errNoFreshEpoch ends a postInfoKey that found no fresh epoch key to
// post under (an admin's pass draws one).
var errNoFreshEpoch = errors.New("no fresh epoch key yet")

// postInfoKey posts the info key rotateInfoKey left to post, if any, as a
// message under the group's fresh epoch key (an admin draws one first if
// the removal made the current one stale), so that a member taken out
// has no copy of it. A post that fails (this device no longer an admin,
// no relay yet) leaves the key to post at the group's next change.
func (n *Node) postInfoKey(ctx context.Context, gid groupstate.GroupID) {
	err := n.postInfoKeyOnce(ctx, gid)
	if errors.Is(err, errNoFreshEpoch) {
		n.grantEpochs(ctx, gid) // an admin draws one
		err = n.postInfoKeyOnce(ctx, gid)
	}
	if err != nil && !errors.Is(err, errNothingToPost) {
		n.log.Info("group: info key not posted; posted at the next change", "group", hex.EncodeToString(gid[:8]), "err", err)
	}
}

// postInfoKeyOnce seals the key to post under the fresh epoch key, which
// it records as the key's epoch (the key then seals titles, see
// sealingInfoKey), in the transaction that seals the message.
func (n *Node) postInfoKeyOnce(ctx context.Context, gid groupstate.GroupID) error {
	var body groupBody
	_, err := n.sealGroup(ctx, hex.EncodeToString(gid[:]), &body, nil, func(tx *storage.Txn, st *groupstate.State) error {
		body.Info = nil
		raw, err := tx.Get(n.st.groupKeys, infoPostKey(gid))
		if errors.Is(err, storage.ErrNotFound) || (err == nil && !n.infoUnderEpoch(st)) {
			return errNothingToPost
		}
		if err != nil {
			return err
		}
		l, err := n.loadGroupTx(tx, gid)
		if err != nil {
			return err
		}
		ek, fresh, err := n.freshEpoch(tx, l)
		if err != nil {
			return err
		}
		if !fresh {
			return errNoFreshEpoch
		}
		keys, err := n.infoKeys(tx, gid)
		if err != nil {
			return err
		}
		for i, k := range keys {
			if len(raw) == 4 && k.ID == binary.BigEndian.Uint32(raw) {
				keys[i].Epoch = ek.Epoch
				body.Info = &infoKey{ID: k.ID, Key: k.Key}
			}
		}
		if body.Info == nil {
			return errNothingToPost
		}
		enc, err := json.Marshal(keys)
		if err != nil {
			return err
		}
		if err := tx.Set(n.st.groupKeys, infoKeysKey(gid), enc); err != nil {
			return err
		}
		return tx.Delete(n.st.groupKeys, infoPostKey(gid))
	})
	return err
}

// takeInfoKey keeps an info key that came as a group message, if its
// sender is an admin (or the owner) in the log as this node holds it now:
// only they turn the key, and a member removed or demoted since cannot
// slip one in. (Keys sent with the log come from any member: whoever adds
// someone hands it the keys.)
//
// epoch is the epoch key it came under (0: a Sender Keys message); the
// key seals this node's titles only while that epoch is fresh.
func (n *Node) takeInfoKey(tx *storage.Txn, gid groupstate.GroupID, from identity.AccountID, k infoKey, id []byte, epoch uint64) error {
	l, err := n.loadGroupTx(tx, gid)
	if err != nil {
		return err
	}
	k = infoKey{ID: k.ID, Key: k.Key, Epoch: epoch}
	if l.State().Role(from) < groupstate.RoleAdmin {
		n.log.Info("group: an info key from a device that is not an admin's dropped", "group", hex.EncodeToString(gid[:8]))
	} else if err := n.addInfoKeys(tx, gid, []infoKey{k}); err != nil {
		return err
	}
	return n.markSeen(tx, gid, id)
}

func sealInfo(k infoKey, text string) (string, error) {
	aead, err := chacha20poly1305.NewX(k.Key)
	if err != nil {
		return "", err
	}
	b := binary.BigEndian.AppendUint32(nil, k.ID)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	b = append(b, nonce...)
	b = aead.Seal(b, nonce, []byte(text), []byte(infoAD))
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// errSealed is what openInfo reports for text it cannot open.
var errSealed = errors.New("sealed with a key this device does not have")

// openInfo opens sealed text with the group's keys; text that is not
// sealed (groups of nodes before info keys) is returned as it is.
func openInfo(keys []infoKey, s string) (string, error) {
	if !strings.HasPrefix(s, sealedPrefix) {
		return s, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(sealedPrefix):])
	if err != nil || len(b) < 4+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return "", fmt.Errorf("malformed sealed text")
	}
	id := binary.BigEndian.Uint32(b)
	for _, k := range keys {
		if k.ID != id {
			continue
		}
		aead, err := chacha20poly1305.NewX(k.Key)
		if err != nil {
			return "", err
		}
		nonce := b[4 : 4+chacha20poly1305.NonceSizeX]
		pt, err := aead.Open(nil, nonce, b[4+chacha20poly1305.NonceSizeX:], []byte(infoAD))
		if err != nil {
			continue // (another key under the same ID, addInfoKeys)
		}
		return string(pt), nil
	}
	return "", errSealed
}

// groupTitle is a group's title as this node reads it.
func (n *Node) groupTitle(tx *storage.Txn, st *groupstate.State) string {
	if t := n.groupInfoText(tx, st, st.Title); titleShown(t) {
		return t
	}
	return ""
}

// groupInfoText opens a sealed title or description of st: empty if this
// node has not the key it was sealed with.
func (n *Node) groupInfoText(tx *storage.Txn, st *groupstate.State, sealed string) string {
	keys, err := n.infoKeys(tx, st.Group)
	if err != nil {
		return ""
	}
	t, err := openInfo(keys, sealed)
	if err != nil || len(t) > groupstate.MaxDescription || !utf8.ValidString(t) {
		return "" // (a member's node sealed what no honest node would)
	}
	return t
}
