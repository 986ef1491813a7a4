package node

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/crypto/epochkey"
	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/groupnet"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// r14DenyAll is a connection gater that refuses every connection: a node
// on a host with it is cut off from everyone (a device offline, or one a
// relay withholds from), while its own code runs as usual.
type r14DenyAll struct{}

func (r14DenyAll) InterceptPeerDial(peer.ID) bool               { return false }
func (r14DenyAll) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return false }
func (r14DenyAll) InterceptAccept(network.ConnMultiaddrs) bool  { return false }
func (r14DenyAll) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return false
}
func (r14DenyAll) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return false, 0 }

// r14Isolated restarts n from its home on a host that can reach no one
// and is reached by no one, with no relay, and the configuration mod.
func r14Isolated(t *testing.T, n *testNode, mod func(*Config)) *testNode {
	t.Helper()
	home := n.home
	n.stop()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.ConnectionGater(r14DenyAll{}), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return launchNode(t, home, func(c *Config) {
		if mod != nil {
			mod(c)
		}
		c.Host = h
	})
}

// r14Gid decodes a group ID.
func r14Gid(t *testing.T, s string) groupstate.GroupID {
	t.Helper()
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 32 {
		t.Fatalf("group ID %q", s)
	}
	return groupstate.GroupID(raw)
}

// r14SealID is the ID of the info key a sealed text was sealed with.
func r14SealID(t *testing.T, sealed string) uint32 {
	t.Helper()
	if !strings.HasPrefix(sealed, sealedPrefix) {
		t.Fatalf("text not sealed: %q", sealed)
	}
	b, err := base64.RawURLEncoding.DecodeString(sealed[len(sealedPrefix):])
	if err != nil || len(b) < 4 {
		t.Fatalf("sealed text %q: %v", sealed, err)
	}
	return binary.BigEndian.Uint32(b)
}

// r14HasPost reports whether n holds an info key still to post.
func r14HasPost(t *testing.T, n *testNode, gid groupstate.GroupID) bool {
	t.Helper()
	var ok bool
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		ok, err = tx.Has(n.st.groupKeys, infoPostKey(gid))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}

// r14InfoKeys returns the info keys n holds.
func r14InfoKeys(t *testing.T, n *testNode, gid groupstate.GroupID) []infoKey {
	t.Helper()
	var keys []infoKey
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		keys, err = n.infoKeys(tx, gid)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// r14Unconf returns n's own envelopes of gid that no relay confirmed,
// oldest first.
func r14Unconf(t *testing.T, n *testNode, gid groupstate.GroupID) [][]byte {
	t.Helper()
	type item struct {
		at  uint64
		env []byte
	}
	var items []item
	if err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.groupUnconf, gid[:], func(_, v []byte) error {
			if len(v) > 8 {
				items = append(items, item{binary.BigEndian.Uint64(v), append([]byte(nil), v[8:]...)})
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].at < items[j].at })
	var out [][]byte
	for _, it := range items {
		out = append(out, it.env)
	}
	return out
}

// r14Message makes the groupnet.Message a validator would hand over for
// env (sent by from's account).
func r14Message(t *testing.T, gid groupstate.GroupID, env []byte, from *testNode) *groupnet.Message {
	t.Helper()
	e, err := groupmsg.Open(gid, env)
	if err != nil {
		t.Fatal(err)
	}
	m := &groupnet.Message{Envelope: e, Account: from.keys.account.ID(), ID: groupmsg.ID(env), Raw: env}
	if e.Kind == groupmsg.KindState {
		if m.Entry, err = groupstate.Parse(e.Payload); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// r14RelayEnvelopes returns the envelopes of gid the relay keeps, of kind,
// from the device of from.
func r14RelayEnvelopes(t *testing.T, viewer *testNode, relay *testRelay, gid groupstate.GroupID, from *testNode, kind groupmsg.Kind) [][]byte {
	t.Helper()
	pg, err := history.NewClient(viewer.host).Query(context.Background(), relay.h.ID(), gid, 0, 0, false)
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, it := range pg.Items {
		if e, err := groupmsg.Open(gid, it.Envelope); err == nil && e.Kind == kind && e.Device == from.keys.device.ID() {
			out = append(out, it.Envelope)
		}
	}
	return out
}

// r14OpenEpoch opens an epoch envelope with any of keys and decodes its
// body; ok is false if none opens it.
func r14OpenEpoch(gid groupstate.GroupID, keys []epochkey.Key, env []byte) (groupBody, bool) {
	e, err := groupmsg.Open(gid, env)
	if err != nil || e.Kind != groupmsg.KindEpoch {
		return groupBody{}, false
	}
	h, err := epochkey.PeekHeader(e.Payload)
	if err != nil {
		return groupBody{}, false
	}
	for _, k := range keys {
		if k.Epoch != h.Epoch {
			continue
		}
		pt, err := epochkey.Open(k, e.Device, e.Payload)
		if err != nil {
			continue
		}
		var b groupBody
		if json.Unmarshal(pt, &b) == nil {
			return b, true
		}
	}
	return groupBody{}, false
}

// r14EpochKeys returns the epoch keys n holds for gid.
func r14EpochKeys(t *testing.T, n *testNode, gid groupstate.GroupID) []epochkey.Key {
	t.Helper()
	var keys []epochkey.Key
	if err := n.db.View(func(tx *storage.Txn) (err error) {
		keys, err = n.epochKeys(tx, gid)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// r14LogRaws is the log n holds of gid, encoded.
func r14LogRaws(t *testing.T, n *testNode, gid groupstate.GroupID) [][]byte {
	t.Helper()
	return r13Raws(t, n.reloadGroup(t, gid).Entries(0))
}

func r14Contains(ks []infoKey, id uint32) bool {
	return slices.ContainsFunc(ks, func(k infoKey) bool { return k.ID == id })
}

func sleepMs(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }
