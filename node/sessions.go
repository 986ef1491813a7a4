package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/storage"
)

// Sessions are keyed by (account, device): a device ID alone names a
// mailbox, not an identity, and a session found under a device ID must also
// belong to the account the caller means. Each device has one current
// session (used to seal) and up to maxArchived archived ones, still used to
// open what the peer sealed in them: when both sides start a session at the
// same time, each ends up sealing in a different one (as libsignal's
// SessionRecord keeps previous states for the same reason).
//
//	sessions: "cur/" account(32) device(32)           → sealed session
//	          "old/" account(32) device(32) recvID(16) → archivedAt(8) | sealed session
//	          "recv/" recvID(16)                       → account(32) device(32)
const maxArchived = 4

// peerKey names one peer device.
type peerKey struct {
	account identity.AccountID
	device  identity.DeviceID
}

func (p peerKey) bytes() []byte {
	return append(append(make([]byte, 0, 64), p.account[:]...), p.device[:]...)
}

func sessionKey(p peerKey) []byte { return append([]byte("cur/"), p.bytes()...) }
func archivedPrefix(p peerKey) []byte {
	return append([]byte("old/"), p.bytes()...)
}
func archivedKey(p peerKey, id sealed.SessionID) []byte { return append(archivedPrefix(p), id[:]...) }
func recvKey(id sealed.SessionID) []byte                { return append([]byte("recv/"), id[:]...) }

// deviceLocks serialises everything that reads and advances the sessions
// of one peer device (sealing, opening, replacing), so decryption runs
// outside any node-wide lock and devices proceed in parallel.
type deviceLocks struct {
	stripes [64]sync.Mutex
}

func (l *deviceLocks) lock(p peerKey) func() {
	m := &l.stripes[int(p.device[0]^p.account[0])%len(l.stripes)]
	m.Lock()
	return m.Unlock
}

// stored is a session loaded from the store, with where it came from.
type stored struct {
	sess     *sealed.Session
	archived bool
	at       uint64 // archivedAt, for archived sessions
}

func decodeSession(raw []byte) (*sealed.Session, error) {
	s, err := sealed.UnmarshalSession(raw)
	if errors.Is(err, sealed.ErrUnknownVersion) {
		// A session of an older format cannot talk to current peers: the
		// next message starts a new one.
		return nil, storage.ErrNotFound
	}
	return s, err
}

// currentSession returns the current session with p, or ErrNotFound.
func (s *store) currentSession(tx *storage.Txn, p peerKey) (*sealed.Session, error) {
	raw, err := tx.Get(s.sessions, sessionKey(p))
	if err != nil {
		return nil, err
	}
	return decodeSession(raw)
}

// sessionOwner returns the peer whose session receives on id.
func (s *store) sessionOwner(tx *storage.Txn, id sealed.SessionID) (peerKey, error) {
	var p peerKey
	raw, err := tx.Get(s.sessions, recvKey(id))
	if err != nil {
		return p, err
	}
	if len(raw) != 64 {
		return p, fmt.Errorf("node: corrupt session index")
	}
	copy(p.account[:], raw[:32])
	copy(p.device[:], raw[32:])
	return p, nil
}

// sessionByRecv returns the session (current or archived) that receives on
// id, or ErrNotFound.
func (s *store) sessionByRecv(tx *storage.Txn, id sealed.SessionID) (peerKey, *stored, error) {
	p, err := s.sessionOwner(tx, id)
	if err != nil {
		return p, nil, err
	}
	cur, err := s.currentSession(tx, p)
	if err == nil && cur.ReceiveID() == id {
		return p, &stored{sess: cur}, nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return p, nil, err
	}
	raw, err := tx.Get(s.sessions, archivedKey(p, id))
	if err != nil {
		return p, nil, err
	}
	if len(raw) < 8 {
		return p, nil, fmt.Errorf("node: corrupt archived session")
	}
	sess, err := decodeSession(raw[8:])
	if err != nil {
		return p, nil, err
	}
	return p, &stored{sess: sess, archived: true, at: binary.BigEndian.Uint64(raw[:8])}, nil
}

// saveSession writes back a session that was loaded with sessionByRecv or
// currentSession and advanced.
func (s *store) saveSession(tx *storage.Txn, st *stored) error {
	raw, err := st.sess.MarshalBinary()
	if err != nil {
		return err
	}
	p := peerKey{st.sess.PeerAccount(), st.sess.PeerDevice()}
	if st.archived {
		return tx.Set(s.sessions, archivedKey(p, st.sess.ReceiveID()), append(binary.BigEndian.AppendUint64(nil, st.at), raw...))
	}
	return tx.Set(s.sessions, sessionKey(p), raw)
}

// installSession makes sess the current session with its peer. With
// archive, the previous current session is kept (archived) so envelopes
// the peer sealed in it still open; otherwise it is dropped (its keys no
// longer match the peer's certificate). nowNs orders archived sessions.
func (s *store) installSession(tx *storage.Txn, sess *sealed.Session, archive bool, nowNs int64) error {
	p := peerKey{sess.PeerAccount(), sess.PeerDevice()}
	prev, err := s.currentSession(tx, p)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return err
	case prev.ReceiveID() == sess.ReceiveID():
	case archive:
		raw, err := prev.MarshalBinary()
		if err != nil {
			return err
		}
		if err := tx.Set(s.sessions, archivedKey(p, prev.ReceiveID()), append(binary.BigEndian.AppendUint64(nil, uint64(nowNs)), raw...)); err != nil {
			return err
		}
		if err := s.trimArchive(tx, p); err != nil {
			return err
		}
	default:
		if err := tx.Delete(s.sessions, recvKey(prev.ReceiveID())); err != nil {
			return err
		}
	}
	raw, err := sess.MarshalBinary()
	if err != nil {
		return err
	}
	if err := tx.Set(s.sessions, sessionKey(p), raw); err != nil {
		return err
	}
	id := sess.ReceiveID()
	return tx.Set(s.sessions, recvKey(id), p.bytes())
}

// trimArchive keeps the maxArchived newest archived sessions of p.
func (s *store) trimArchive(tx *storage.Txn, p peerKey) error {
	type entry struct {
		id sealed.SessionID
		at uint64
	}
	var all []entry
	prefix := archivedPrefix(p)
	if err := tx.Iterate(s.sessions, prefix, func(key, val []byte) error {
		var e entry
		if len(key) != len(prefix)+16 || len(val) < 8 {
			return nil
		}
		copy(e.id[:], key[len(prefix):])
		e.at = binary.BigEndian.Uint64(val[:8])
		all = append(all, e)
		return nil
	}); err != nil {
		return err
	}
	for len(all) > maxArchived {
		oldest := 0
		for i := range all {
			if all[i].at < all[oldest].at {
				oldest = i
			}
		}
		if err := tx.Delete(s.sessions, archivedKey(p, all[oldest].id)); err != nil {
			return err
		}
		if err := tx.Delete(s.sessions, recvKey(all[oldest].id)); err != nil {
			return err
		}
		all = append(all[:oldest], all[oldest+1:]...)
	}
	return nil
}

// dropSessions deletes every session with p: its device left the
// account's list, or its key changed.
func (s *store) dropSessions(tx *storage.Txn, p peerKey) error {
	cur, err := s.currentSession(tx, p)
	if err == nil {
		if err := tx.Delete(s.sessions, recvKey(cur.ReceiveID())); err != nil {
			return err
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if err := tx.Delete(s.sessions, sessionKey(p)); err != nil {
		return err
	}
	prefix := archivedPrefix(p)
	var ids []sealed.SessionID
	if err := tx.Iterate(s.sessions, prefix, func(key, _ []byte) error {
		if len(key) == len(prefix)+16 {
			var id sealed.SessionID
			copy(id[:], key[len(prefix):])
			ids = append(ids, id)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		if err := tx.Delete(s.sessions, archivedKey(p, id)); err != nil {
			return err
		}
		if err := tx.Delete(s.sessions, recvKey(id)); err != nil {
			return err
		}
	}
	return nil
}

// peerSessions lists the peers this device has a current session with, of
// one account.
func (s *store) peerSessions(tx *storage.Txn, a identity.AccountID) ([]peerKey, error) {
	var out []peerKey
	prefix := append([]byte("cur/"), a[:]...)
	err := tx.Iterate(s.sessions, prefix, func(key, _ []byte) error {
		if len(key) != 4+64 {
			return nil
		}
		var p peerKey
		copy(p.account[:], key[4:36])
		copy(p.device[:], key[36:])
		out = append(out, p)
		return nil
	})
	return out, err
}
