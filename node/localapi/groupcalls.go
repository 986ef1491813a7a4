package localapi

import (
	"context"
	"net/http"
	"net/url"

	"github.com/peergram/peergram/calls"
)

// GroupCallBackend is the group-calls part of a backend (node.Node has
// it; a backend without it answers these routes 501). GROUP is a group's
// ID or a title unique on the node.
type GroupCallBackend interface {
	StartGroupCall(ctx context.Context, group string, m calls.Media) (calls.GroupCall, error)
	JoinGroupCall(ctx context.Context, group string, m calls.Media) (calls.GroupCall, error)
	LeaveGroupCall(ctx context.Context, group string) (calls.GroupCall, error)
	MuteGroupCall(ctx context.Context, group string, muted bool) (calls.GroupCall, error)
	GroupCall(ctx context.Context, group string) (calls.GroupCall, error)
	GroupCalls(ctx context.Context) ([]calls.GroupCall, error)
	// The web client's group call (joined with "client": true): the
	// daemon's bridge offers, the client answers.
	GroupCallOffer(ctx context.Context, group string) (calls.BridgeOffer, error)
	GroupCallSignal(ctx context.Context, group string, s calls.BridgeSignal) error
}

// MuteRequest is POST /v1/groups/{group}/call/mute's body.
type MuteRequest struct {
	Muted bool `json:"muted"`
}

func (s *Server) groupCallBackend() (GroupCallBackend, error) {
	b, ok := s.backend.(GroupCallBackend)
	if !ok {
		return nil, ErrNotImplemented
	}
	return b, nil
}

// groupCallMedia is the start and join handlers: the body (optional)
// names the media.
func (s *Server) groupCallMedia(status int, do func(GroupCallBackend, *http.Request, calls.Media) (calls.GroupCall, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var m calls.Media
		if r.ContentLength != 0 {
			if err := decode(w, r, &m); err != nil {
				return err
			}
		}
		if err := browserMedia(r, m); err != nil {
			return err
		}
		b, err := s.groupCallBackend()
		if err != nil {
			return err
		}
		g, err := do(b, r, m)
		if err != nil {
			return err
		}
		writeJSON(w, status, g)
		return nil
	}
}

func (s *Server) startGroupCall(w http.ResponseWriter, r *http.Request) error {
	return s.groupCallMedia(http.StatusCreated, func(b GroupCallBackend, r *http.Request, m calls.Media) (calls.GroupCall, error) {
		return b.StartGroupCall(r.Context(), r.PathValue("group"), m)
	})(w, r)
}

func (s *Server) joinGroupCall(w http.ResponseWriter, r *http.Request) error {
	return s.groupCallMedia(http.StatusOK, func(b GroupCallBackend, r *http.Request, m calls.Media) (calls.GroupCall, error) {
		return b.JoinGroupCall(r.Context(), r.PathValue("group"), m)
	})(w, r)
}

func (s *Server) leaveGroupCall(w http.ResponseWriter, r *http.Request) error {
	b, err := s.groupCallBackend()
	if err != nil {
		return err
	}
	g, err := b.LeaveGroupCall(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) muteGroupCall(w http.ResponseWriter, r *http.Request) error {
	b, err := s.groupCallBackend()
	if err != nil {
		return err
	}
	var req MuteRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := b.MuteGroupCall(r.Context(), r.PathValue("group"), req.Muted)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) getGroupCall(w http.ResponseWriter, r *http.Request) error {
	b, err := s.groupCallBackend()
	if err != nil {
		return err
	}
	g, err := b.GroupCall(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) listGroupCalls(w http.ResponseWriter, r *http.Request) error {
	b, err := s.groupCallBackend()
	if err != nil {
		return err
	}
	gs, err := b.GroupCalls(r.Context())
	if err != nil {
		return err
	}
	if gs == nil {
		gs = []calls.GroupCall{}
	}
	writeJSON(w, http.StatusOK, gs)
	return nil
}

func groupCallPath(group, action string) string {
	p := "/v1/groups/" + url.PathEscape(group) + "/call"
	if action != "" {
		p += "/" + action
	}
	return p
}

// StartGroupCall starts a call in group and joins it.
func (c *Client) StartGroupCall(ctx context.Context, group string, m calls.Media) (calls.GroupCall, error) {
	var out calls.GroupCall
	err := c.do(ctx, http.MethodPost, groupCallPath(group, "start"), m, &out, http.StatusCreated)
	return out, err
}

// JoinGroupCall joins the call running in group.
func (c *Client) JoinGroupCall(ctx context.Context, group string, m calls.Media) (calls.GroupCall, error) {
	var out calls.GroupCall
	err := c.do(ctx, http.MethodPost, groupCallPath(group, "join"), m, &out, http.StatusOK)
	return out, err
}

// LeaveGroupCall leaves group's call.
func (c *Client) LeaveGroupCall(ctx context.Context, group string) (calls.GroupCall, error) {
	var out calls.GroupCall
	err := c.do(ctx, http.MethodPost, groupCallPath(group, "leave"), nil, &out, http.StatusOK)
	return out, err
}

// MuteGroupCall mutes or unmutes this device in group's call.
func (c *Client) MuteGroupCall(ctx context.Context, group string, muted bool) (calls.GroupCall, error) {
	var out calls.GroupCall
	err := c.do(ctx, http.MethodPost, groupCallPath(group, "mute"), MuteRequest{Muted: muted}, &out, http.StatusOK)
	return out, err
}

// GroupCall returns group's call.
func (c *Client) GroupCall(ctx context.Context, group string) (calls.GroupCall, error) {
	var out calls.GroupCall
	err := c.do(ctx, http.MethodGet, groupCallPath(group, ""), nil, &out, http.StatusOK)
	return out, err
}

// GroupCalls lists this device's group calls, newest first.
func (c *Client) GroupCalls(ctx context.Context) ([]calls.GroupCall, error) {
	var out []calls.GroupCall
	err := c.do(ctx, http.MethodGet, "/v1/group-calls", nil, &out, http.StatusOK)
	return out, err
}

func (s *Server) groupCallOffer(w http.ResponseWriter, r *http.Request) error {
	b, err := s.groupCallBackend()
	if err != nil {
		return err
	}
	o, err := b.GroupCallOffer(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *Server) groupCallSignal(w http.ResponseWriter, r *http.Request) error {
	b, err := s.groupCallBackend()
	if err != nil {
		return err
	}
	var sig calls.BridgeSignal
	if err := decode(w, r, &sig); err != nil {
		return err
	}
	if err := b.GroupCallSignal(r.Context(), r.PathValue("group"), sig); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
