package calls

// Client calls: the call's media runs in a client of the daemon (the web
// client, with the browser's own WebRTC) instead of in this engine. The
// engine still owns everything else: the call's ID and state, ringing on
// every device and the first answer taking the call, the ring timeout,
// history, the verification code (from the two SDPs' DTLS fingerprints,
// which pass through it) and the end-to-end signalling. It makes no peer
// connection: the client's SDP goes to the peer as is, and the peer's
// signals for the call come back to the client through
// Config.ClientSignal. The DTLS fingerprint check is the browser's, on
// fingerprints that travelled inside the end-to-end session.
//
// A client never offers in a running call: the browser shares its screen
// by replacing the track of the video transceiver every call has, so
// renegotiation is only the peer's (its offers, and a polite peer's
// requests to offer, which the client grants).

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// ClientOffer is an incoming call's opening offer and the peer's ICE
// candidates that came before the client answered.
type ClientOffer struct {
	SDP        string                    `json:"sdp"`
	Video      bool                      `json:"video"`
	Candidates []webrtc.ICECandidateInit `json:"candidates"`
}

// checkClientMedia checks a client's offer or answer.
func checkClientMedia(m Media) error {
	if m.Audio != "" || m.Video != "" || m.Record != "" {
		return fmt.Errorf("%w: a client's call sends no files", ErrMedia)
	}
	if len(m.SDP) > MaxSDP {
		return fmt.Errorf("%w: an SDP of %d bytes", ErrMalformed, len(m.SDP))
	}
	_, err := fingerprints(m.SDP)
	return err
}

// startClient is Start with a client's offer (m.SDP).
func (e *Engine) startClient(peer string, m Media) (Call, error) {
	if err := checkClientMedia(m); err != nil {
		return Call{}, err
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Call{}, ErrClosed
	}
	if e.busy("") {
		e.mu.Unlock()
		return Call{}, ErrBusy
	}
	c := e.newCall(newCallID(), peer, Outgoing, Media{})
	c.client = true
	c.info.Client = true
	c.info.State = StateCalling
	c.info.Video = m.VideoCall
	c.offerSDP = m.SDP
	c.remoteSet = true // the client takes candidates as they come
	e.calls[c.info.ID] = c
	c.timer = time.AfterFunc(e.cfg.RingTimeout, func() { e.ringTimeout(c) })
	e.mu.Unlock()
	c.send(Signal{Type: SignalOffer, SDP: m.SDP, Video: m.VideoCall})
	e.emit(c)
	return c.snapshot(), nil
}

// answerClient is Answer with a client's answer (m.SDP).
func (e *Engine) answerClient(id string, m Media) (Call, error) {
	if err := checkClientMedia(m); err != nil {
		return Call{}, err
	}
	c, err := e.takeRinging(id)
	if err != nil {
		return Call{}, err
	}
	code, err := verification(id, c.offer, m.SDP) // c.offer is set once, before the call is listed
	if err != nil {
		e.end(c, StateFailed, err.Error(), true)
		return c.snapshot(), err
	}
	c.neg.Lock() // after prepare, if it runs: its connection is not needed
	e.mu.Lock()
	pc := c.pc
	c.pc, c.prepared, c.client, c.info.Client = nil, false, true, true
	c.remoteSet = true
	now := e.cfg.Now()
	live := c.info.State == StateRinging
	if live {
		c.offerSDP, c.answerSDP = c.offer, m.SDP
		c.info.State, c.info.AcceptedAt, c.info.Verification = StateAccepted, &now, code
		e.watchClient(c)
	}
	st := c.info.State
	early := c.cands // the peer's candidates so far; the client may have some from Offer (twice is harmless)
	c.cands = nil
	e.mu.Unlock()
	c.neg.Unlock()
	if pc != nil {
		pc.Close()
	}
	if !live {
		return c.snapshot(), fmt.Errorf("%w: %s while answering", ErrState, st)
	}
	c.send(Signal{Type: SignalAnswer, SDP: m.SDP})
	for _, cand := range early {
		e.toClient(c, Signal{Type: SignalCandidate, Candidate: &cand})
	}
	e.emit(c)
	return c.snapshot(), nil
}

// Offer returns a ringing incoming call's opening offer and the peer's
// candidates so far, for a client that answers it.
func (e *Engine) Offer(id string) (ClientOffer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls[id]
	if c == nil {
		return ClientOffer{}, ErrNoCall
	}
	if c.info.Direction != Incoming || c.offer == "" || c.info.State != StateRinging || c.answering {
		return ClientOffer{}, fmt.Errorf("%w: not a ringing incoming call (%s)", ErrState, c.info.State)
	}
	return ClientOffer{SDP: c.offer, Video: c.info.Video, Candidates: append([]webrtc.ICECandidateInit{}, c.cands...)}, nil
}

// ClientConnected is the type of the one signal a client sends to its
// daemon only: its peer connection is up. A client call not reported
// connected within clientConnectTimeout of its answer ends as failed, so
// a client that went away (a closed tab) or a peer that answers and
// never connects does not hold the device busy.
const ClientConnected = "connected"

// clientConnectTimeout is how long a client call may take to connect
// after its answer (less when the ring timeout is shorter, as in tests).
func (e *Engine) clientConnectTimeout() time.Duration {
	return min(30*time.Second, e.cfg.RingTimeout)
}

// watchClient starts the connect watchdog of an answered client call.
// e.mu held.
func (e *Engine) watchClient(c *call) {
	if c.timer != nil {
		c.timer.Stop()
	}
	c.timer = time.AfterFunc(e.clientConnectTimeout(), func() {
		e.mu.Lock()
		stuck := c.info.State == StateAccepted && !c.clientUp
		e.mu.Unlock()
		if stuck {
			e.end(c, StateFailed, "the client never connected", true)
		}
	})
}

// ClientSignal sends a client's signal for its call to the peer: ICE
// candidates, an answer to the peer's renegotiation, a grant; or, of type
// ClientConnected, tells the engine the client's connection is up.
func (e *Engine) ClientSignal(ctx context.Context, id string, s Signal) error {
	if s.Type == ClientConnected {
		e.mu.Lock()
		defer e.mu.Unlock()
		c := e.calls[id]
		switch {
		case c == nil:
			return ErrNoCall
		case !c.client || c.info.State != StateAccepted:
			return fmt.Errorf("%w: %s", ErrState, c.info.State)
		}
		c.clientUp = true
		if c.timer != nil {
			c.timer.Stop()
		}
		return nil
	}
	s.Call = id
	if err := s.check(); err != nil {
		return err
	}
	e.mu.Lock()
	c := e.calls[id]
	if c == nil {
		e.mu.Unlock()
		return ErrNoCall
	}
	client, st := c.client, c.info.State
	e.mu.Unlock()
	if !client {
		return fmt.Errorf("%w: the call's media runs in the daemon", ErrState)
	}
	switch s.Type {
	case SignalCandidate:
		if !st.live() {
			// The browser trickles until it hears of the end: a
			// candidate that crosses the peer's hang-up is dropped.
			return nil
		}
	case SignalAnswer, SignalGrant:
		if !st.live() {
			// An answer to the peer's renegotiation that crosses its
			// hang-up (a CI run saw the 409 fail the browser test): the
			// call is over, nothing goes out.
			return nil
		}
		if st != StateAccepted {
			return fmt.Errorf("%w: %s", ErrState, st)
		}
	default:
		return fmt.Errorf("%w: a client sends no %s", ErrMalformed, s.Type)
	}
	c.send(Signal{Type: s.Type, SDP: s.SDP, Candidate: s.Candidate})
	return nil
}

// handleClient takes a peer's signal for a client call: what changes the
// call's state is done here, the rest goes to the client. It reports
// whether it handled s (false: Handle's own switch does).
func (e *Engine) handleClient(c *call, device string, s *Signal) (bool, error) {
	e.mu.Lock()
	client, st := c.client, c.info.State
	e.mu.Unlock()
	if !client {
		return false, nil
	}
	switch s.Type {
	case SignalAnswer:
		e.mu.Lock()
		first := c.info.Direction == Outgoing && c.info.Device == "" && c.info.State.live()
		offerSDP := c.offerSDP
		e.mu.Unlock()
		if first {
			code, err := verification(c.info.ID, offerSDP, s.SDP)
			if err != nil {
				e.end(c, StateFailed, err.Error(), true)
				return true, err
			}
			now := e.cfg.Now()
			e.mu.Lock()
			if c.info.Device != "" || !c.info.State.live() { // raced with another answer or an end
				e.mu.Unlock()
				return true, nil
			}
			c.info.Device = device
			if c.timer != nil {
				c.timer.Stop()
			}
			c.answerSDP = s.SDP
			c.info.State, c.info.AcceptedAt, c.info.Verification = StateAccepted, &now, code
			e.watchClient(c)
			e.mu.Unlock()
			c.send(Signal{Type: SignalTaken, Device: device})
			e.toClient(c, *s)
			e.emit(c)
			return true, nil
		}
		if st == StateAccepted {
			e.toClient(c, *s)
		}
		return true, nil
	case SignalOffer, SignalRenegotiate, SignalGrant:
		if st == StateAccepted {
			e.toClient(c, *s)
		}
		return true, nil
	case SignalCandidate:
		e.mu.Lock()
		attached := c.info.Direction == Outgoing || c.info.State == StateAccepted
		if !attached {
			if len(c.cands) < 64 {
				c.cands = append(c.cands, *s.Candidate)
			}
			e.mu.Unlock()
			return true, nil
		}
		e.mu.Unlock()
		if st.live() {
			e.toClient(c, *s)
		}
		return true, nil
	}
	return false, nil
}

// toClient hands s to Config.ClientSignal, in order. Its own lock, not
// the event lock: a callback may call the engine (hang up, say), whose
// events take the event lock (review finding: it deadlocked).
func (e *Engine) toClient(c *call, s Signal) {
	if e.cfg.ClientSignal == nil {
		return
	}
	s.Call = c.info.ID
	e.clientMu.Lock()
	defer e.clientMu.Unlock()
	e.cfg.ClientSignal(s)
}
