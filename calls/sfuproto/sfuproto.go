// Package sfuproto is the signalling protocol between a member's device
// and a relay's SFU (Selective Forwarding Unit) in a group call: the
// messages, their limits and their framing on a libp2p stream.
//
// Why a package of its own: the relay's SFU (relay/sfu) and the device's
// call engine (calls) both speak it, and neither should import the
// other's internals.
//
// # The conversation
//
// One stream per participant and call, open for the call's length:
//
//	Join{group, call, cert, time, sig}  ──▶  the SFU checks the device
//	                                         certificate, the signature
//	                                         and that the device's account
//	                                         is a member of the group
//	                                    ◀──  Offer{sdp}   (the SFU always offers:
//	                                                       first, and again whenever a
//	                                                       track comes or goes)
//	Answer{sdp}                         ──▶
//	Candidate{candidate}                ◀─▶  trickle ICE, both ways
//	Mute{muted}                         ──▶  the SFU stops forwarding the audio
//	                                    ◀──  Roster{participant...} on every join,
//	                                         leave, mute and change of speaker
//	Leave{}                             ──▶  (or the stream closes)
//	                                    ◀──  Error{error} and close: refused or removed
//
// Frames are a 4-byte big-endian length and that many bytes of JSON, at
// most MaxMessage. Media never goes through this stream: it flows over
// the DTLS-SRTP connection the offer and answer set up, and every frame
// in it is SFrame-encrypted (crypto/sframe) by its sender with a key
// the SFU never holds.
package sfuproto

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pion/webrtc/v4"
)

// ProtocolID is the libp2p protocol of SFU signalling.
const ProtocolID = "/peergram/sfu/1.0.0"

// JoinLabel is the domain-separation label of a join's signature.
const JoinLabel = "peergram/sfu/join/v1"

// Limits.
const (
	// MaxMessage bounds a frame: an SDP of a call with a dozen
	// participants is well under 32 KiB.
	MaxMessage = 64 << 10
	// MaxSDP bounds an offer's or answer's SDP.
	MaxSDP = 48 << 10
	// MaxRoster bounds the participants a roster lists.
	MaxRoster = 256
	// MaxError bounds an error's text.
	MaxError = 200
)

// Types of message.
const (
	TypeJoin      = "join"
	TypeOffer     = "offer"
	TypeAnswer    = "answer"
	TypeCandidate = "candidate"
	TypeMute      = "mute"
	TypeLeave     = "leave"
	TypeRoster    = "roster"
	TypeError     = "error"
)

// ErrMalformed is a frame that does not decode or breaks a limit.
var ErrMalformed = errors.New("sfuproto: malformed message")

// Message is one signalling message; Type says which fields it uses.
type Message struct {
	Type string `json:"type"`

	// Join: the group (32 bytes, hex) and call (16 bytes, hex), the
	// device's certificate (identity.DeviceCert, binary), the time
	// (unix ms) and the device key's signature over JoinSigned.
	Group string `json:"group,omitempty"`
	Call  string `json:"call,omitempty"`
	Cert  []byte `json:"cert,omitempty"`
	Time  int64  `json:"time,omitempty"`
	Sig   []byte `json:"sig,omitempty"`

	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Muted     bool                     `json:"muted,omitempty"`
	Roster    []Participant            `json:"roster,omitempty"`
	Error     string                   `json:"error,omitempty"`
}

// Participant is one device in a group call, as the SFU sees it.
type Participant struct {
	Device   string `json:"device"`  // device ID (hex): also the stream ID of its tracks
	Account  string `json:"account"` // account ID
	Muted    bool   `json:"muted,omitempty"`
	Speaking bool   `json:"speaking,omitempty"`
	// Tracks are the track IDs it publishes ("audio", "video").
	Tracks []string `json:"tracks,omitempty"`
}

// JoinSigned is what a join's signature covers: the SFU relay's peer ID,
// the joining peer's, the group, the call and the time, so a join cannot
// be replayed to another relay, by another peer, or for another call.
func JoinSigned(relay, requester string, group [32]byte, call string, timeMs int64) []byte {
	b := []byte(JoinLabel)
	for _, s := range []string{relay, requester, call} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = append(b, group[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(timeMs))
}

// ParseGroup decodes a group ID.
func ParseGroup(s string) ([32]byte, error) {
	var g [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return g, fmt.Errorf("%w: group is not 32 bytes of hex", ErrMalformed)
	}
	copy(g[:], b)
	return g, nil
}

// ValidCall tells whether s is a call ID: 16 bytes in hex.
func ValidCall(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 16
}

// Check bounds a message, whoever sent it.
func (m *Message) Check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(f, a...)) }
	switch m.Type {
	case TypeJoin:
		if _, err := ParseGroup(m.Group); err != nil {
			return err
		}
		if !ValidCall(m.Call) {
			return bad("call is not 16 bytes of hex")
		}
		if len(m.Cert) == 0 || len(m.Cert) > 2048 || len(m.Sig) != 64 {
			return bad("join without a certificate or signature")
		}
	case TypeOffer, TypeAnswer:
		if m.SDP == "" || len(m.SDP) > MaxSDP {
			return bad("%s SDP of %d bytes", m.Type, len(m.SDP))
		}
	case TypeCandidate:
		if m.Candidate == nil || len(m.Candidate.Candidate) > 1024 {
			return bad("candidate missing or too long")
		}
	case TypeRoster:
		if len(m.Roster) > MaxRoster {
			return bad("roster of %d", len(m.Roster))
		}
		for _, p := range m.Roster {
			if len(p.Device) > 128 || len(p.Account) > 128 || len(p.Tracks) > 4 {
				return bad("roster entry out of bounds")
			}
		}
	case TypeError:
		if len(m.Error) > MaxError {
			return bad("error of %d bytes", len(m.Error))
		}
	case TypeMute, TypeLeave:
	default:
		return bad("type %q", m.Type)
	}
	return nil
}

// Write frames m onto w.
func Write(w io.Writer, m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// Read reads one frame from r and checks it.
func Read(r io.Reader) (*Message, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 || n > MaxMessage {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrMalformed, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return Decode(b)
}

// Decode decodes and checks one frame's body.
func Decode(b []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Conn is a signalling stream: Send may be called from any goroutine,
// Recv from one.
type Conn struct {
	mu  sync.Mutex
	rwc io.ReadWriteCloser
}

// NewConn frames messages on rwc.
func NewConn(rwc io.ReadWriteCloser) *Conn { return &Conn{rwc: rwc} }

// Send writes one message.
func (c *Conn) Send(m *Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Write(c.rwc, m)
}

// Recv reads one message.
func (c *Conn) Recv() (*Message, error) { return Read(c.rwc) }

// Close closes the stream.
func (c *Conn) Close() error { return c.rwc.Close() }
