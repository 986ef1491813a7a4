package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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

// addInfoKeys stores the keys of ks that the group does not have yet.
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
		dup := false
		for _, h := range have {
			dup = dup || h.ID == k.ID
		}
		if dup {
			continue
		}
		if len(have) >= maxInfoKeys {
			// The oldest goes, not the new one: a member who filled the
			// list before its removal must not keep out the key the
			// removal turns (the newest seals, and would be its own).
			have = have[1:]
		}
		have = append(have, k)
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
	g := l.Group()
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

// postInfoKey posts the info key rotateInfoKey left to post, if any, as a
// message under the group's fresh epoch key (an admin draws one first if
// the removal made the current one stale), so that a member taken out
// has no copy of it. A post that fails (this device no longer an admin,
// no relay yet) leaves the key to post at the group's next change.
func (n *Node) postInfoKey(ctx context.Context, gid groupstate.GroupID) {
	var body groupBody
	_, err := n.sealGroup(ctx, hex.EncodeToString(gid[:]), &body, nil, func(tx *storage.Txn, st *groupstate.State) error {
		raw, err := tx.Get(n.st.groupKeys, infoPostKey(gid))
		if errors.Is(err, storage.ErrNotFound) || (err == nil && !n.epochTier(st)) {
			return errNothingToPost
		}
		if err != nil {
			return err
		}
		keys, err := n.infoKeys(tx, gid)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if len(raw) == 4 && k.ID == binary.BigEndian.Uint32(raw) {
				body.Info = &k
			}
		}
		if body.Info == nil {
			return errNothingToPost
		}
		return tx.Delete(n.st.groupKeys, infoPostKey(gid))
	})
	if err != nil && !errors.Is(err, errNothingToPost) {
		n.log.Info("group: info key not posted; posted at the next change", "group", hex.EncodeToString(gid[:8]), "err", err)
	}
}

// takeInfoKey keeps an info key that came as a group message, if its
// sender is an admin (or the owner) in the log as this node holds it now:
// only they turn the key, and a member removed or demoted since cannot
// slip one in. (Keys sent with the log come from any member: whoever adds
// someone hands it the keys.)
func (n *Node) takeInfoKey(tx *storage.Txn, gid groupstate.GroupID, from identity.AccountID, k infoKey, id []byte) error {
	l, err := n.loadGroupTx(tx, gid)
	if err != nil {
		return err
	}
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
			return "", errSealed
		}
		return string(pt), nil
	}
	return "", errSealed
}

// groupTitle is a group's title as this node reads it.
func (n *Node) groupTitle(tx *storage.Txn, st *groupstate.State) string {
	return n.groupInfoText(tx, st, st.Title)
}

// groupInfoText opens a sealed title or description of st: empty if this
// node has not the key it was sealed with.
func (n *Node) groupInfoText(tx *storage.Txn, st *groupstate.State, sealed string) string {
	keys, err := n.infoKeys(tx, st.Group)
	if err != nil {
		return ""
	}
	t, err := openInfo(keys, sealed)
	if err != nil {
		return ""
	}
	return t
}
