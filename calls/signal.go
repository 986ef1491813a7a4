package calls

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Signal types. A call's signals travel inside the end-to-end session
// between the two accounts, in the order they were sent.
const (
	// SignalOffer opens a call (to every device of the callee) or, in a
	// call already answered, renegotiates it (a track added or removed).
	SignalOffer = "offer"
	// SignalAnswer answers an offer: the first answer to a call's opening
	// offer takes the call for the device that sent it.
	SignalAnswer = "answer"
	// SignalCandidate is one ICE candidate (trickle ICE).
	SignalCandidate = "candidate"
	// SignalRinging tells the caller that a device of the callee rings.
	SignalRinging = "ringing"
	// SignalDecline: the callee does not take the call.
	SignalDecline = "decline"
	// SignalBusy: the callee is in another call.
	SignalBusy = "busy"
	// SignalHangup ends a call, ringing or running; Reason says why
	// ("missed" when nobody answered in time).
	SignalHangup = "hangup"
	// SignalTaken tells the callee's devices which one took the call
	// (Device); the others stop ringing.
	SignalTaken = "taken"
	// SignalRenegotiate: the callee asks to offer (a track added or
	// removed); SignalGrant: the caller lets it, and offers nothing
	// itself until the callee's offer is answered. So the two never
	// offer at once.
	SignalRenegotiate = "renegotiate"
	SignalGrant       = "grant"
)

// Limits on what a signal may carry. An SDP of a call with a few tracks
// is 3–8 KiB; a browser's with many codecs under 16.
const (
	MaxSDP       = 64 << 10
	MaxCandidate = 1 << 10
	maxReason    = 64
	maxSignal    = MaxSDP + 4<<10
)

// ErrMalformed is a signal that does not decode or breaks a limit.
var ErrMalformed = errors.New("calls: malformed signal")

// Signal is one call signalling message. Its JSON form is what the
// node carries in the end-to-end session, and what a browser peer
// (the web client) sends and receives through the daemon.
type Signal struct {
	// Call is the call's ID: 16 random bytes in hex, drawn by the caller.
	Call string `json:"call"`
	Type string `json:"type"`
	// SDP is an offer's or answer's session description.
	SDP string `json:"sdp,omitempty"`
	// Candidate is a SignalCandidate's ICE candidate.
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	// Device, when set, is the device the call belongs to (SignalTaken,
	// and every signal after it): other devices ignore the signal.
	Device string `json:"device,omitempty"`
	// Video marks an opening offer of a video call.
	Video bool `json:"video,omitempty"`
	// At is the sender's clock, unix milliseconds: an opening offer older
	// than the ring timeout is a missed call, not a ringing one.
	At     int64  `json:"at"`
	Reason string `json:"reason,omitempty"`
}

// Marshal encodes s.
func (s *Signal) Marshal() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// ParseSignal decodes and checks a signal from a peer.
func ParseSignal(b []byte) (*Signal, error) {
	if len(b) > maxSignal {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	var s Signal
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Signal) check() error {
	if !isCallID(s.Call) {
		return fmt.Errorf("%w: call ID %q", ErrMalformed, s.Call)
	}
	switch s.Type {
	case SignalOffer, SignalAnswer:
		if s.SDP == "" || len(s.SDP) > MaxSDP {
			return fmt.Errorf("%w: %s with an SDP of %d bytes", ErrMalformed, s.Type, len(s.SDP))
		}
	case SignalCandidate:
		if s.Candidate == nil || len(s.Candidate.Candidate) > MaxCandidate ||
			(s.Candidate.SDPMid != nil && len(*s.Candidate.SDPMid) > 32) ||
			(s.Candidate.UsernameFragment != nil && len(*s.Candidate.UsernameFragment) > 256) {
			return fmt.Errorf("%w: candidate", ErrMalformed)
		}
	case SignalRinging, SignalDecline, SignalBusy, SignalHangup, SignalTaken, SignalRenegotiate, SignalGrant:
	default:
		return fmt.Errorf("%w: type %q", ErrMalformed, s.Type)
	}
	if s.Type != SignalOffer && s.Type != SignalAnswer && s.SDP != "" {
		return fmt.Errorf("%w: an SDP in a %s", ErrMalformed, s.Type)
	}
	if s.Type != SignalCandidate && s.Candidate != nil {
		return fmt.Errorf("%w: a candidate in a %s", ErrMalformed, s.Type)
	}
	if len(s.Device) > 128 || len(s.Reason) > maxReason || s.At < 0 {
		return fmt.Errorf("%w: field too long", ErrMalformed)
	}
	if s.Type == SignalTaken && s.Device == "" {
		return fmt.Errorf("%w: taken by no device", ErrMalformed)
	}
	return nil
}

func isCallID(s string) bool {
	if len(s) != 32 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
