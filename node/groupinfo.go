package node

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peergram/peergram/crypto/groupstate"
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
		if len(k.Key) != chacha20poly1305.KeySize || len(have) >= maxInfoKeys {
			continue
		}
		dup := false
		for _, h := range have {
			dup = dup || h.ID == k.ID
		}
		if !dup {
			have = append(have, k)
			changed = true
		}
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

// maxInfoKeys bounds a group's info keys (one per removal).
const maxInfoKeys = 4096

// rotateInfoKey adds a group's next info key.
func (n *Node) rotateInfoKey(tx *storage.Txn, g groupstate.GroupID) error {
	k, err := newInfoKey()
	if err != nil {
		return err
	}
	return n.addInfoKeys(tx, g, []infoKey{k})
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
	keys, err := n.infoKeys(tx, st.Group)
	if err != nil {
		return ""
	}
	t, err := openInfo(keys, st.Title)
	if err != nil {
		return ""
	}
	return t
}
