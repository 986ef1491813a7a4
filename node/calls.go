package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/turnserver"
	"github.com/peergram/peergram/storage"
)

// Calls: the node runs a calls.Engine and is its Signaller. A call's
// signals go as "call" payloads through the outbox, sealed per device like
// any message (direct while the peer is online, its mailbox otherwise: an
// offer that waited longer than the ring timeout is a missed call at the
// other end). Signals are taken only from contacts; the engine checks that
// each belongs to the call's peer and device. Every state a call reaches
// is kept in the store ("calls"), so the history outlives the daemon.

// maxCallHistory bounds the calls kept in the store.
const maxCallHistory = 500

// callIn is a signal received, for the engine.
type callIn struct {
	peer, device string
	sig          *calls.Signal
}

// callSignaller carries the engine's signals in the end-to-end sessions.
type callSignaller struct{ n *Node }

func (s callSignaller) Signal(ctx context.Context, peer string, sig calls.Signal) error {
	n := s.n
	to, err := identity.ParseAccountID(peer)
	if err != nil {
		return err
	}
	b, err := sig.Marshal()
	if err != nil {
		return err
	}
	body, err := json.Marshal(payload{Kind: "call", Call: b, DT: n.tokenHex()})
	if err != nil {
		return err
	}
	var id chat.MessageID
	if _, err := n.rand.Read(id[:]); err != nil {
		return err
	}
	// Not synced: a signal lost in a crash belongs to a call that the
	// crash ended anyway, and a sync here is felt in every call's setup
	// (one per signalling leg). Its sealing still syncs the session
	// before the envelope leaves (sealBatch).
	if err := n.db.UpdateNoSync(func(tx *storage.Txn) error {
		return n.enqueue(tx, &job{ID: id, To: to, Payload: body, SentAt: n.cfg.Now().UnixMilli()})
	}); err != nil {
		return err
	}
	n.notify(to)
	return nil
}

// startCalls starts the call engine and the loop that hands it signals;
// the returned stop ends its calls.
func (n *Node) startCalls(ctx context.Context) (stop func(), err error) {
	cfg := calls.Config{
		Signaller:   callSignaller{n},
		Device:      n.keys.device.ID().String(),
		RingTimeout: n.cfg.CallRingTimeout,
		ICEServers:  n.cfg.CallICEServers,
		RelayOnly:   n.cfg.CallRelayOnly,
		Log:         n.log.With("part", "calls"),
		Now:         n.cfg.Now,
		Events:      n.callEvent,
		GroupEvents: n.groupCallEvent,
		ICE:         n.turnServers,
		ClientSignal: func(s calls.Signal) {
			n.events.publish(chat.Event{Type: chat.EventCallSignal, Signal: &s})
		},
		BridgeOffers: func(o calls.BridgeOffer) {
			n.events.publish(chat.Event{Type: chat.EventGroupCallOffer, BridgeOffer: &o})
		},

		CallsPerMinute: n.cfg.CallsPerMinute,
	}
	if n.cfg.CallLoopback {
		cfg.Settings = func(se *webrtc.SettingEngine) {
			se.SetIncludeLoopbackCandidate(true)
			se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
			se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		}
	}
	// Call states are written and published by one goroutine, in order,
	// off the call's path (a synced write per state held every answer
	// back by milliseconds: peergram-bench C2).
	evs := make(chan calls.Call, 1024)
	n.callEvents = evs
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		for c := range evs {
			n.keepCall(c)
		}
	}()
	e, err := calls.NewEngine(cfg)
	if err != nil {
		n.callEvents = nil
		close(evs)
		<-evDone
		return nil, err
	}
	n.calls = e
	in := make(chan callIn, 256)
	n.callIn = in
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-in:
				if err := n.handleCallSignal(ctx, e, c); err != nil {
					n.log.Info("calls: a signal refused", "from", c.peer, "type", c.sig.Type, "err", err)
				}
			}
		}
	}()
	return func() {
		e.Close()
		<-done
		n.callEvMu.Lock()
		n.callEvents = nil
		n.callEvMu.Unlock()
		close(evs)
		<-evDone
	}, nil
}

// turnServers returns TURN credentials from the first home relay that
// issues them, cached until a minute before they expire; a relay that
// refuses (or runs no TURN) is asked again after five minutes.
func (n *Node) turnServers(ctx context.Context) []webrtc.ICEServer {
	n.turnMu.Lock()
	defer n.turnMu.Unlock()
	now := time.Now()
	if now.Before(n.turnUntil) {
		return n.turnCache
	}
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	for _, r := range n.relays {
		c, err := turnserver.Fetch(ctx, n.host, r.ID, n.keys.device, cert)
		if err != nil {
			n.log.Debug("calls: no TURN credentials", "relay", r.ID, "err", err)
			continue
		}
		n.turnCache = []webrtc.ICEServer{{URLs: c.URLs, Username: c.Username, Credential: c.Password}}
		n.turnUntil = c.Expires.Add(-time.Minute)
		return n.turnCache
	}
	n.turnCache, n.turnUntil = nil, now.Add(5*time.Minute)
	return nil
}

// takeCallSignal queues a received call signal for the engine (after
// the receive's commit order: one goroutine takes them in order).
func (n *Node) takeCallSignal(from identity.AccountID, dev identity.DeviceID, raw []byte) {
	if n.callIn == nil {
		return
	}
	sig, err := calls.ParseSignal(raw)
	if err != nil {
		n.log.Info("calls: a malformed signal", "from", from.String(), "err", err)
		return
	}
	select {
	case n.callIn <- callIn{peer: from.String(), device: dev.String(), sig: sig}:
	default:
		n.log.Warn("calls: signal queue full; dropped", "from", from.String(), "type", sig.Type)
	}
}

// handleCallSignal hands a peer's signal to the engine. A panic there (a
// peer's signal the engine did not expect; review finding: a grant for a
// missed call crashed the daemon) costs that signal, not the daemon.
func (n *Node) handleCallSignal(ctx context.Context, e *calls.Engine, c callIn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("calls: a signal made the engine panic", "from", c.peer, "type", c.sig.Type, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("calls: engine panic: %v", r)
		}
	}()
	return e.Handle(ctx, c.peer, c.device, c.sig)
}

// callEvent hands a call's new state to the goroutine that keeps and
// publishes states in order.
func (n *Node) callEvent(c calls.Call) {
	n.callEvMu.Lock()
	defer n.callEvMu.Unlock()
	if n.callEvents != nil { // nil once the engine is stopped
		n.callEvents <- c
	}
}

// keepCall keeps a call's new state in the history and publishes it.
func (n *Node) keepCall(c calls.Call) {
	// Published first: a UI waits on the event (ringing, media flowing),
	// not on the history write.
	n.events.publish(chat.Event{Type: chat.EventCall, Call: &c})
	b, err := json.Marshal(c)
	if err == nil {
		err = n.db.Update(func(tx *storage.Txn) error {
			if err := tx.Set(n.st.calls, []byte(c.ID), b); err != nil {
				return err
			}
			return n.pruneCalls(tx)
		})
	}
	if err != nil {
		n.log.Warn("calls: history not kept", "call", c.ID, "err", err)
	}
}

// pruneCalls keeps the history within 2 × maxCallHistory: past it, the
// oldest go down to maxCallHistory (a contact who calls again and again
// fills no disk).
func (n *Node) pruneCalls(tx *storage.Txn) error {
	count, err := tx.Count(n.st.calls, nil)
	if err != nil || count <= 2*maxCallHistory {
		return err
	}
	type entry struct {
		id string
		at time.Time
	}
	var all []entry
	if err := tx.Iterate(n.st.calls, nil, func(k, v []byte) error {
		var c calls.Call
		_ = json.Unmarshal(v, &c)
		all = append(all, entry{string(k), c.StartedAt})
		return nil
	}); err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b entry) int { return a.at.Compare(b.at) })
	for _, e := range all[:len(all)-maxCallHistory] {
		if err := tx.Delete(n.st.calls, []byte(e.id)); err != nil {
			return err
		}
	}
	return nil
}

// callErr maps the engine's errors to the API's.
func callErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, calls.ErrNoCall):
		return fmt.Errorf("%w: %w", chat.ErrUnknownCall, err)
	case errors.Is(err, calls.ErrBusy), errors.Is(err, calls.ErrState):
		return fmt.Errorf("%w: %w", chat.ErrExists, err)
	case errors.Is(err, calls.ErrMedia), errors.Is(err, calls.ErrMalformed):
		return fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	case errors.Is(err, calls.ErrClosed):
		return fmt.Errorf("%w: %w", chat.ErrUnavailable, err)
	}
	return err
}

func (n *Node) callEngine() (*calls.Engine, error) {
	select {
	case <-n.ready:
	default:
		return nil, fmt.Errorf("%w: the node is not running", chat.ErrUnavailable)
	}
	if n.calls == nil {
		return nil, fmt.Errorf("%w: calls are off", chat.ErrUnavailable)
	}
	return n.calls, nil
}

// StartCall calls a contact (alias or account ID): it rings on every
// device of the contact. Calls go to accepted contacts only.
func (n *Node) StartCall(ctx context.Context, contact string, m calls.Media) (calls.Call, error) {
	e, err := n.callEngine()
	if err != nil {
		return calls.Call{}, err
	}
	var c *contactRecord
	if err := n.db.View(func(tx *storage.Txn) (err error) { c, err = n.resolveContact(tx, contact); return err }); err != nil {
		return calls.Call{}, err
	}
	if !c.accepted() {
		return calls.Call{}, fmt.Errorf("%w: %s is not a contact", chat.ErrInvalid, contact)
	}
	call, err := e.Start(ctx, c.Account.String(), m)
	return call, callErr(err)
}

// CallOffer returns a ringing call's offer, for the web client that
// answers it with the browser's WebRTC.
func (n *Node) CallOffer(_ context.Context, id string) (calls.ClientOffer, error) {
	e, err := n.callEngine()
	if err != nil {
		return calls.ClientOffer{}, err
	}
	o, err := e.Offer(id)
	return o, callErr(err)
}

// CallSignal sends the web client's signal (an ICE candidate, an answer
// to a renegotiation, a grant) for its call to the peer.
func (n *Node) CallSignal(ctx context.Context, id string, s calls.Signal) error {
	e, err := n.callEngine()
	if err != nil {
		return err
	}
	return callErr(e.ClientSignal(ctx, id, s))
}

// AnswerCall answers a ringing call.
func (n *Node) AnswerCall(ctx context.Context, id string, m calls.Media) (calls.Call, error) {
	e, err := n.callEngine()
	if err != nil {
		return calls.Call{}, err
	}
	c, err := e.Answer(ctx, id, m)
	return c, callErr(err)
}

// DeclineCall declines a ringing call; HangupCall ends a call.
func (n *Node) DeclineCall(ctx context.Context, id string) error {
	e, err := n.callEngine()
	if err != nil {
		return err
	}
	return callErr(e.Decline(ctx, id))
}

// HangupCall ends a live call.
func (n *Node) HangupCall(ctx context.Context, id string) error {
	e, err := n.callEngine()
	if err != nil {
		return err
	}
	return callErr(e.Hangup(ctx, id))
}

// ShareScreen adds a screen track (an IVF/VP8 file) to a running call;
// UnshareScreen removes it.
func (n *Node) ShareScreen(ctx context.Context, id, file string) error {
	e, err := n.callEngine()
	if err != nil {
		return err
	}
	return callErr(e.Share(ctx, id, file))
}

// UnshareScreen stops sharing the screen.
func (n *Node) UnshareScreen(ctx context.Context, id string) error {
	e, err := n.callEngine()
	if err != nil {
		return err
	}
	return callErr(e.Unshare(ctx, id))
}

// Call returns a call: live from the engine, else from the history.
func (n *Node) Call(ctx context.Context, id string) (calls.Call, error) {
	if e, err := n.callEngine(); err == nil {
		if c, err := e.Get(id); err == nil {
			return c, nil
		}
	}
	var c calls.Call
	err := n.db.View(func(tx *storage.Txn) error {
		b, err := tx.Get(n.st.calls, []byte(id))
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: %s", chat.ErrUnknownCall, id)
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &c)
	})
	return c, err
}

// Calls lists the calls of this device, newest first (at most
// maxCallHistory).
func (n *Node) Calls(ctx context.Context) ([]calls.Call, error) {
	var out []calls.Call
	err := n.db.View(func(tx *storage.Txn) error {
		return tx.Iterate(n.st.calls, nil, func(_, v []byte) error {
			var c calls.Call
			if json.Unmarshal(v, &c) == nil {
				out = append(out, c)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if e, err := n.callEngine(); err == nil {
		for i, c := range out {
			if live, err := e.Get(c.ID); err == nil {
				out[i] = live
			}
		}
	}
	slices.SortStableFunc(out, func(a, b calls.Call) int { return b.StartedAt.Compare(a.StartedAt) })
	if len(out) > maxCallHistory {
		out = out[:maxCallHistory]
	}
	return out, nil
}

// callEntries are the calls with account as chat history entries.
func (n *Node) callEntries(account identity.AccountID) []chat.Message {
	cs, err := n.Calls(context.Background())
	if err != nil {
		return nil
	}
	self := n.keys.account.ID().String()
	var out []chat.Message
	for _, c := range cs {
		if c.Peer != account.String() {
			continue
		}
		m := chat.Message{ID: c.ID, Chat: c.Peer, From: c.Peer, Outgoing: c.Direction == calls.Outgoing,
			Text: callText(c), SentAt: c.StartedAt, Status: chat.StatusRead, Call: &c}
		if m.Outgoing {
			m.From, m.Status = self, chat.StatusSent
		} else {
			m.Received = c.StartedAt
		}
		out = append(out, m)
	}
	return out
}

// callText says what happened to a call, as a chat shows it.
func callText(c calls.Call) string {
	kind := "call"
	if c.Video {
		kind = "video call"
	}
	dir := "Incoming "
	if c.Direction == calls.Outgoing {
		dir = "Outgoing "
	}
	switch c.State {
	case calls.StateMissed:
		if c.Direction == calls.Outgoing {
			return "Cancelled " + kind
		}
		return "Missed " + kind
	case calls.StateDeclined:
		return "Declined " + kind
	case calls.StateBusy:
		return dir + kind + " · busy"
	case calls.StateFailed:
		return dir + kind + " · failed"
	case calls.StateEnded:
		if c.AcceptedAt != nil && c.EndedAt != nil {
			d := c.EndedAt.Sub(*c.AcceptedAt).Round(time.Second)
			return fmt.Sprintf("%s%s · %d:%02d", dir, kind, int(d.Minutes()), int(d.Seconds())%60)
		}
		return dir + kind
	}
	return dir + kind + " · " + string(c.State)
}
