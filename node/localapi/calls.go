package localapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/peergram/peergram/calls"
	"github.com/peergram/peergram/node/chat"
)

// CallBackend is the calls part of a backend (node.Node has it; a
// backend without it answers the call routes 501). Media files and the
// record directory are paths on the daemon's machine.
type CallBackend interface {
	StartCall(ctx context.Context, contact string, m calls.Media) (calls.Call, error)
	AnswerCall(ctx context.Context, id string, m calls.Media) (calls.Call, error)
	DeclineCall(ctx context.Context, id string) error
	HangupCall(ctx context.Context, id string) error
	ShareScreen(ctx context.Context, id, file string) error
	UnshareScreen(ctx context.Context, id string) error
	Call(ctx context.Context, id string) (calls.Call, error)
	Calls(ctx context.Context) ([]calls.Call, error)
}

// ClientCallBackend lets a client of the API run a call's media itself
// (the web client, with the browser's WebRTC): StartCall and AnswerCall
// with Media.SDP, then these two.
type ClientCallBackend interface {
	// CallOffer is a ringing call's offer and the peer's candidates so far.
	CallOffer(ctx context.Context, id string) (calls.ClientOffer, error)
	// CallSignal sends the client's signal for its call to the peer.
	CallSignal(ctx context.Context, id string, s calls.Signal) error
}

func (s *Server) clientCallBackend() (ClientCallBackend, error) {
	cb, ok := s.backend.(ClientCallBackend)
	if !ok {
		return nil, ErrNotImplemented
	}
	return cb, nil
}

func (s *Server) callOffer(w http.ResponseWriter, r *http.Request) error {
	cb, err := s.clientCallBackend()
	if err != nil {
		return err
	}
	o, err := cb.CallOffer(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) callSignal(w http.ResponseWriter, r *http.Request) error {
	cb, err := s.clientCallBackend()
	if err != nil {
		return err
	}
	var sig calls.Signal
	if err := decode(w, r, &sig); err != nil {
		return err
	}
	if err := cb.CallSignal(r.Context(), r.PathValue("id"), sig); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// browserMedia refuses media files and record directories from a browser
// session: the browser's calls carry an SDP, their media is the browser's.
func browserMedia(r *http.Request, m calls.Media) error {
	if fromBrowser(r) && (m.Audio != "" || m.Video != "" || m.Record != "") {
		return errBrowserPath("media files or a record directory")
	}
	return nil
}

// CallRequest is POST /v1/calls's body (Contact) and POST
// /v1/calls/{id}/answer's (Contact empty).
type CallRequest struct {
	Contact string `json:"contact,omitempty"`
	calls.Media
}

// ShareRequest is POST /v1/calls/{id}/share's body.
type ShareRequest struct {
	File string `json:"file"`
}

func (s *Server) callBackend() (CallBackend, error) {
	cb, ok := s.backend.(CallBackend)
	if !ok {
		return nil, ErrNotImplemented
	}
	return cb, nil
}

func (s *Server) startCall(w http.ResponseWriter, r *http.Request) error {
	var req CallRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Contact == "" {
		return fmt.Errorf("contact is required: %w", chat.ErrInvalid)
	}
	if err := browserMedia(r, req.Media); err != nil {
		return err
	}
	cb, err := s.callBackend()
	if err != nil {
		return err
	}
	c, err := cb.StartCall(r.Context(), req.Contact, req.Media)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, c)
	return nil
}

func (s *Server) answerCall(w http.ResponseWriter, r *http.Request) error {
	var req CallRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	if err := browserMedia(r, req.Media); err != nil {
		return err
	}
	cb, err := s.callBackend()
	if err != nil {
		return err
	}
	c, err := cb.AnswerCall(r.Context(), r.PathValue("id"), req.Media)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) callAction(do func(cb CallBackend, r *http.Request, id string) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cb, err := s.callBackend()
		if err != nil {
			return err
		}
		id := r.PathValue("id")
		if err := do(cb, r, id); err != nil {
			return err
		}
		c, err := cb.Call(r.Context(), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, c)
		return nil
	}
}

func (s *Server) declineCall(w http.ResponseWriter, r *http.Request) error {
	return s.callAction(func(cb CallBackend, r *http.Request, id string) error { return cb.DeclineCall(r.Context(), id) })(w, r)
}

func (s *Server) hangupCall(w http.ResponseWriter, r *http.Request) error {
	return s.callAction(func(cb CallBackend, r *http.Request, id string) error { return cb.HangupCall(r.Context(), id) })(w, r)
}

func (s *Server) shareScreen(w http.ResponseWriter, r *http.Request) error {
	if fromBrowser(r) {
		return errBrowserPath("a file to share")
	}
	var req ShareRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.File == "" {
		return fmt.Errorf("file is required: %w", chat.ErrInvalid)
	}
	return s.callAction(func(cb CallBackend, r *http.Request, id string) error {
		return cb.ShareScreen(r.Context(), id, req.File)
	})(w, r)
}

func (s *Server) unshareScreen(w http.ResponseWriter, r *http.Request) error {
	return s.callAction(func(cb CallBackend, r *http.Request, id string) error { return cb.UnshareScreen(r.Context(), id) })(w, r)
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request) error {
	cb, err := s.callBackend()
	if err != nil {
		return err
	}
	c, err := cb.Call(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) error {
	cb, err := s.callBackend()
	if err != nil {
		return err
	}
	cs, err := cb.Calls(r.Context())
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []calls.Call{}
	}
	writeJSON(w, http.StatusOK, cs)
	return nil
}

// StartCall calls a contact; see CallBackend.
func (c *Client) StartCall(ctx context.Context, contact string, m calls.Media) (calls.Call, error) {
	var out calls.Call
	err := c.do(ctx, http.MethodPost, "/v1/calls", CallRequest{Contact: contact, Media: m}, &out, http.StatusCreated)
	return out, err
}

// AnswerCall answers a ringing call.
func (c *Client) AnswerCall(ctx context.Context, id string, m calls.Media) (calls.Call, error) {
	var out calls.Call
	err := c.do(ctx, http.MethodPost, "/v1/calls/"+url.PathEscape(id)+"/answer", CallRequest{Media: m}, &out, http.StatusOK)
	return out, err
}

// DeclineCall declines a ringing call.
func (c *Client) DeclineCall(ctx context.Context, id string) (calls.Call, error) {
	return c.callPost(ctx, id, "decline", nil)
}

// HangupCall ends a call.
func (c *Client) HangupCall(ctx context.Context, id string) (calls.Call, error) {
	return c.callPost(ctx, id, "hangup", nil)
}

// ShareScreen adds a screen track (an IVF/VP8 file on the daemon's
// machine) to a running call.
func (c *Client) ShareScreen(ctx context.Context, id, file string) (calls.Call, error) {
	return c.callPost(ctx, id, "share", ShareRequest{File: file})
}

// UnshareScreen stops sharing.
func (c *Client) UnshareScreen(ctx context.Context, id string) (calls.Call, error) {
	return c.callPost(ctx, id, "unshare", nil)
}

func (c *Client) callPost(ctx context.Context, id, action string, in any) (calls.Call, error) {
	var out calls.Call
	err := c.do(ctx, http.MethodPost, "/v1/calls/"+url.PathEscape(id)+"/"+action, in, &out, http.StatusOK)
	return out, err
}

// Call returns one call.
func (c *Client) Call(ctx context.Context, id string) (calls.Call, error) {
	var out calls.Call
	err := c.do(ctx, http.MethodGet, "/v1/calls/"+url.PathEscape(id), nil, &out, http.StatusOK)
	return out, err
}

// Calls lists the calls, newest first.
func (c *Client) Calls(ctx context.Context) ([]calls.Call, error) {
	var out []calls.Call
	err := c.do(ctx, http.MethodGet, "/v1/calls", nil, &out, http.StatusOK)
	return out, err
}
