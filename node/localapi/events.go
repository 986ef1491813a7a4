package localapi

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// events streams the backend's events as Server-Sent Events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html): one
// JSON chat.Event per "data:" line, a comment line every keepAlive so that
// proxies and clients see the stream alive. It ends when the client goes
// away, the backend closes the subscription, or Serve shuts down.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	// Subscribe before answering: once the client has the headers, it
	// misses no event published afterwards.
	ch := s.backend.Subscribe(ctx)
	stop, _ := ctx.Value(stopKey{}).(chan struct{}) // nil (never ready) outside Serve

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if !s.writeEvent(w, rc, ": connected\n\n") {
		return nil
	}
	tick := time.NewTicker(s.keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			b, err := json.Marshal(ev)
			if err != nil {
				s.log.Error("localapi: event not encodable", "type", ev.Type, "err", err)
				continue
			}
			// json.Marshal escapes newlines, so the event is one data line.
			if !s.writeEvent(w, rc, "data: "+string(b)+"\n\n") {
				return nil
			}
		case <-tick.C:
			if !s.writeEvent(w, rc, ": keepalive\n\n") {
				return nil
			}
		}
	}
}

// writeEvent writes and flushes one block of the stream; false means the
// stream is over (client gone or too slow to read).
func (s *Server) writeEvent(w http.ResponseWriter, rc *http.ResponseController, block string) bool {
	// A client that stops reading would otherwise hold this goroutine and
	// its subscription forever. Not every ResponseWriter supports deadlines
	// (httptest.ResponseRecorder does not); the stream works without.
	_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	if _, err := io.WriteString(w, block); err != nil {
		s.log.Debug("localapi: event stream ended", "err", err)
		return false
	}
	if err := rc.Flush(); err != nil {
		s.log.Debug("localapi: event stream ended", "err", err)
		return false
	}
	return true
}
