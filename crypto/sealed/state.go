package sealed

import (
	"fmt"

	"github.com/peergram/peergram/crypto/internal/wire"
	"github.com/peergram/peergram/crypto/ratchet"
)

// stateVersion 2: the ratchet AD names both accounts and devices; version 1
// sessions cannot talk to version 2 peers and are refused.
const stateVersion = 2

// maxRatchetState bounds the ratchet's encoded state on decode (2,000
// skipped keys of ~72 bytes plus chains).
const maxRatchetState = 1 << 20

// MarshalBinary encodes the session for the device's store. The result is
// secret.
func (s *Session) MarshalBinary() ([]byte, error) {
	rs, err := s.ratchet.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("sealed: marshal: %w", err)
	}
	w := wire.NewWriter(len(rs) + 512 + len(s.pendingCert) + len(s.pendingInit) + 16*len(s.seen))
	w.Byte(stateVersion)
	w.Var(rs)
	w.Fixed(s.self[:])
	w.Fixed(s.selfAcct[:])
	w.Fixed(s.peerAccount[:])
	w.Fixed(s.peerDevice[:])
	w.Fixed(s.peerIK[:])
	w.Fixed(s.sendID[:])
	w.Fixed(s.recvID[:])
	w.Var(s.ad)
	w.Var(s.pendingCert)
	w.Var(s.pendingInit)
	w.Uint32(uint32(len(s.seen)))
	for _, id := range s.seenInOrder() {
		w.Fixed(id[:])
	}
	return w.Bytes(), nil
}

// UnmarshalSession decodes what MarshalBinary produced.
func UnmarshalSession(data []byte) (*Session, error) {
	r := wire.NewReader(data)
	if v := r.Byte(); r.Err() == nil && v != stateVersion {
		return nil, fmt.Errorf("%w: session version %d", ErrUnknownVersion, v)
	}
	rs := r.Var(maxRatchetState)
	s := &Session{}
	r.FixedInto(s.self[:])
	r.FixedInto(s.selfAcct[:])
	r.FixedInto(s.peerAccount[:])
	r.FixedInto(s.peerDevice[:])
	r.FixedInto(s.peerIK[:])
	r.FixedInto(s.sendID[:])
	r.FixedInto(s.recvID[:])
	s.ad = r.Var(64)
	s.pendingCert = r.Var(1024)
	s.pendingInit = r.Var(8192)
	n := r.Count(legacySeenIDs, 16)
	s.seen = make([]MessageID, 0, min(n, MaxSeenIDs))
	s.seenIndex = make(map[MessageID]struct{}, min(n, MaxSeenIDs))
	for i := range n {
		var id MessageID
		r.FixedInto(id[:])
		if i < n-MaxSeenIDs {
			continue // older than the ring holds now
		}
		s.seen = append(s.seen, id)
		s.seenIndex[id] = struct{}{}
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: session: %w", ErrMalformed, err)
	}
	if len(s.ad) != 64 {
		return nil, fmt.Errorf("%w: session: associated data", ErrMalformed)
	}
	if len(s.pendingCert) == 0 {
		s.pendingCert = nil
	}
	if len(s.pendingInit) == 0 {
		s.pendingInit = nil
	}
	var err error
	if s.ratchet, err = ratchet.Unmarshal(rs); err != nil {
		return nil, fmt.Errorf("%w: session: %w", ErrMalformed, err)
	}
	return s, nil
}
