package localapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/peergram/peergram/node/chat"
)

// handlerFunc is a route handler; a returned error becomes the JSON error
// answer (statusOf picks the status).
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		if r.Context().Err() != nil {
			return // the client is gone; nobody reads the answer
		}
		// The cause stays in the daemon's log, not on the wire.
		s.log.Error("localapi: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = ErrInternal.Error()
	}
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only values out of JSON's range (e.g. a year past 9999) get here
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: ErrInternal.Error(), Code: CodeInternal})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads one JSON value of at most MaxBodyBytes into v; unknown fields
// and trailing data are invalid.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var mbe *http.MaxBytesError
	if err == nil {
		_, terr := dec.Token()
		switch {
		case terr == io.EOF:
			return nil
		case errors.As(terr, &mbe):
			err = terr
		default:
			err = errors.New("data after the JSON value")
		}
	}
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("request body over %d bytes: %w", MaxBodyBytes, chat.ErrTooLarge)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("request body is empty, want a JSON object: %w", chat.ErrInvalid)
	default:
		return fmt.Errorf("bad request body: %v: %w", err, chat.ErrInvalid)
	}
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	st, err := s.backend.Status(r.Context())
	if err != nil {
		return err
	}
	if st.Relays == nil {
		st.Relays = []RelayStatus{}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) identity(w http.ResponseWriter, r *http.Request) error {
	id, err := s.backend.Identity(r.Context())
	if err != nil {
		return err
	}
	if id.Addrs == nil {
		id.Addrs = []string{}
	}
	writeJSON(w, http.StatusOK, id)
	return nil
}

func (s *Server) contacts(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.backend.Contacts(r.Context())
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []chat.Contact{}
	}
	writeJSON(w, http.StatusOK, cs)
	return nil
}

// AddContactRequest is the body of POST /v1/contacts.
type AddContactRequest struct {
	AccountID string `json:"account_id"` // an account ID or a peergram:// link
	Name      string `json:"name"`       // local alias; optional
}

func (s *Server) addContact(w http.ResponseWriter, r *http.Request) error {
	var req AddContactRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.AccountID == "" {
		return fmt.Errorf("account_id is required: %w", chat.ErrInvalid)
	}
	c, err := s.backend.AddContact(r.Context(), req.AccountID, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, c)
	return nil
}

// RenameRequest is the body of POST /v1/contacts/{contact}/rename.
type RenameRequest struct {
	Name string `json:"name"` // the new alias
}

func (s *Server) renameContact(w http.ResponseWriter, r *http.Request) error {
	contact, err := contactParam(r)
	if err != nil {
		return err
	}
	var req RenameRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c, err := s.backend.RenameContact(r.Context(), contact, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) removeContact(w http.ResponseWriter, r *http.Request) error {
	contact, err := contactParam(r)
	if err != nil {
		return err
	}
	if err := s.backend.RemoveContact(r.Context(), contact); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) requests(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.backend.Requests(r.Context())
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []chat.Contact{}
	}
	writeJSON(w, http.StatusOK, cs)
	return nil
}

// AcceptRequest is the body of POST /v1/requests/{account}/accept
// (optional).
type AcceptRequest struct {
	Name string `json:"name"` // local alias; default: the account's own name
}

func (s *Server) acceptRequest(w http.ResponseWriter, r *http.Request) error {
	account, err := contactParam(r)
	if err != nil {
		return err
	}
	var req AcceptRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	c, err := s.backend.AddContact(r.Context(), account, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) ignoreRequest(w http.ResponseWriter, r *http.Request) error {
	account, err := contactParam(r)
	if err != nil {
		return err
	}
	if err := s.backend.IgnoreRequest(r.Context(), account); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// SendRequest is the body of POST /v1/messages.
type SendRequest struct {
	Contact string `json:"contact"` // alias or account ID
	Text    string `json:"text"`
}

func (s *Server) sendFile(w http.ResponseWriter, r *http.Request) error {
	if fromBrowser(r) {
		return errBrowserPath("a file to send")
	}
	var req chat.FileSend
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Chat == "" || req.Path == "" {
		return fmt.Errorf("chat and path are required: %w", chat.ErrInvalid)
	}
	m, err := s.backend.SendFile(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (s *Server) files(w http.ResponseWriter, r *http.Request) error {
	contact, err := contactParam(r)
	if err != nil {
		return err
	}
	fs, err := s.backend.Files(r.Context(), contact)
	if err != nil {
		return err
	}
	if fs == nil {
		fs = []chat.File{}
	}
	writeJSON(w, http.StatusOK, fs)
	return nil
}

// DownloadRequest is POST /v1/files/{id}/download's body.
type DownloadRequest struct {
	Out string `json:"out,omitempty"` // where to write the file; empty: the home's downloads directory
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) error {
	var req DownloadRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	if req.Out != "" && fromBrowser(r) {
		return errBrowserPath("where a download goes")
	}
	f, err := s.backend.Download(r.Context(), r.PathValue("id"), req.Out)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) error {
	everyone := false
	if v := r.URL.Query().Get("everyone"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("everyone=%q is not true or false: %w", v, chat.ErrInvalid)
		}
		everyone = b
	}
	if err := s.backend.DeleteFile(r.Context(), r.PathValue("id"), everyone); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) error {
	var req SendRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Contact == "" {
		return fmt.Errorf("contact is required: %w", chat.ErrInvalid)
	}
	if req.Text == "" {
		return fmt.Errorf("text is required: %w", chat.ErrInvalid)
	}
	m, err := s.backend.Send(r.Context(), req.Contact, req.Text)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) error {
	markRead := true
	if v := r.URL.Query().Get("mark_read"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("mark_read=%q is not true or false: %w", v, chat.ErrInvalid)
		}
		markRead = b
	}
	contact, err := contactParam(r)
	if err != nil {
		return err
	}
	pg, err := pageParams(r)
	if err != nil {
		return err
	}
	ms, err := s.backend.Messages(r.Context(), contact, markRead)
	if err != nil {
		return err
	}
	ms, err = page(ms, pg, func(m chat.Message) string { return m.ID })
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []chat.Message{}
	}
	writeJSON(w, http.StatusOK, ms)
	return nil
}

// paging is a page of a chat: the limit messages before the message
// before ("" is the end), oldest first. limit 0 is the whole chat.
type paging struct {
	limit  int
	before string
}

// MaxPage is the largest limit a page of messages may ask for.
const MaxPage = 1000

func pageParams(r *http.Request) (paging, error) {
	q := r.URL.Query()
	var p paging
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPage {
			return p, fmt.Errorf("limit=%q is not a number from 1 to %d: %w", v, MaxPage, chat.ErrInvalid)
		}
		p.limit = n
	}
	p.before = q.Get("before")
	if p.before != "" && p.limit == 0 {
		return p, fmt.Errorf("before needs a limit: %w", chat.ErrInvalid)
	}
	return p, nil
}

// page cuts a chat (oldest first) to p; a before that is not in the chat
// is an unknown message.
func page[M any](ms []M, p paging, id func(M) string) ([]M, error) {
	if p.limit == 0 {
		return ms, nil
	}
	end := len(ms)
	if p.before != "" {
		// The last entry of that ID: the node lists an ID once, but a
		// backend that repeated one (a call entry whose ID a peer drew
		// equal to a message's) must not lose the pages before it.
		end = -1
		for i := len(ms) - 1; i >= 0; i-- {
			if id(ms[i]) == p.before {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("before=%q is not a message of the chat: %w", p.before, chat.ErrInvalid)
		}
	}
	return ms[max(0, end-p.limit):end], nil
}

// MarkReadRequest is the body of POST /v1/chats/{contact}/read.
type MarkReadRequest struct {
	IDs []string `json:"ids"` // message IDs, lowercase hex (chat.MessageID.String)
}

func (s *Server) markRead(w http.ResponseWriter, r *http.Request) error {
	contact, err := contactParam(r)
	if err != nil {
		return err
	}
	var req MarkReadRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if len(req.IDs) == 0 {
		return fmt.Errorf("ids is required: %w", chat.ErrInvalid)
	}
	ids := make([]chat.MessageID, len(req.IDs))
	for i, s := range req.IDs {
		id, err := chat.ParseMessageID(s)
		if err != nil {
			return fmt.Errorf("%v: %w", err, chat.ErrInvalid)
		}
		ids[i] = id
	}
	if err := s.backend.MarkRead(r.Context(), contact, ids); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// contactParam returns the {contact} path segment (percent-decoded).
func contactParam(r *http.Request) (string, error) {
	c := r.PathValue("contact")
	if c == "" {
		return "", fmt.Errorf("contact is required: %w", chat.ErrInvalid)
	}
	return c, nil
}

// CreateGroupRequest is the body of POST /v1/groups.
type CreateGroupRequest struct {
	Title string `json:"title"`
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req CreateGroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.CreateGroup(r.Context(), req.Title)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Server) groups(w http.ResponseWriter, r *http.Request) error {
	gs, err := s.backend.Groups(r.Context())
	if err != nil {
		return err
	}
	if gs == nil {
		gs = []chat.Group{}
	}
	writeJSON(w, http.StatusOK, gs)
	return nil
}

func (s *Server) group(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.Group(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// AddMembersRequest is the body of POST /v1/groups/{group}/members.
type AddMembersRequest struct {
	Members []string `json:"members"` // contacts: aliases or account IDs
}

func (s *Server) addGroupMembers(w http.ResponseWriter, r *http.Request) error {
	var req AddMembersRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if len(req.Members) == 0 {
		return fmt.Errorf("members is required: %w", chat.ErrInvalid)
	}
	g, err := s.backend.AddGroupMembers(r.Context(), r.PathValue("group"), req.Members)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// GroupSendRequest is the body of POST /v1/groups/{group}/messages.
type GroupSendRequest = chat.GroupPost

func (s *Server) sendGroup(w http.ResponseWriter, r *http.Request) error {
	var req GroupSendRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Text == "" {
		return fmt.Errorf("text is required: %w", chat.ErrInvalid)
	}
	m, err := s.backend.PostGroup(r.Context(), r.PathValue("group"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (s *Server) groupMessages(w http.ResponseWriter, r *http.Request) error {
	pg, err := pageParams(r)
	if err != nil {
		return err
	}
	ms, err := s.backend.GroupMessages(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	if ms, err = page(ms, pg, func(m chat.GroupMessage) string { return m.ID }); err != nil {
		return err
	}
	if ms == nil {
		ms = []chat.GroupMessage{}
	}
	writeJSON(w, http.StatusOK, ms)
	return nil
}

func (s *Server) removeGroupMember(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.RemoveGroupMember(r.Context(), r.PathValue("group"), r.PathValue("member"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) setGroupRole(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Role string `json:"role"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.SetGroupRole(r.Context(), r.PathValue("group"), r.PathValue("member"), req.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) setGroupInfo(w http.ResponseWriter, r *http.Request) error {
	var req chat.GroupInfoChange
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.SetGroupInfo(r.Context(), r.PathValue("group"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// MaxGroupPhotoBytes bounds the image PUT /v1/groups/{group}/photo takes
// (the node crops and re-encodes it to a 640 × 640 JPEG).
const MaxGroupPhotoBytes = 10 << 20

// setGroupPhoto takes the image as the request's body (any type the
// node decodes: JPEG, PNG, GIF, WEBP).
func (s *Server) setGroupPhoto(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > MaxGroupPhotoBytes {
		return fmt.Errorf("an image of %d bytes (at most %d): %w", r.ContentLength, MaxGroupPhotoBytes, chat.ErrTooLarge)
	}
	img, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxGroupPhotoBytes))
	if err != nil {
		return fmt.Errorf("an image over %d bytes: %w", MaxGroupPhotoBytes, chat.ErrTooLarge)
	}
	if len(img) == 0 {
		return fmt.Errorf("the image is the request's body: %w", chat.ErrInvalid)
	}
	g, err := s.backend.SetGroupPhoto(r.Context(), r.PathValue("group"), img)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) removeGroupPhoto(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.SetGroupPhoto(r.Context(), r.PathValue("group"), nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// groupPhoto answers the group's photo as image/jpeg; the bytes are a
// peer's (the node checked they are a JPEG), so never sniffed and under
// a sandbox CSP.
func (s *Server) groupPhoto(w http.ResponseWriter, r *http.Request) error {
	img, err := s.backend.GroupPhoto(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	if img == nil {
		return fmt.Errorf("the group has no photo: %w", ErrNotFound)
	}
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(img)
	return nil
}

func (s *Server) createPoll(w http.ResponseWriter, r *http.Request) error {
	var req chat.PollSpec
	if err := decode(w, r, &req); err != nil {
		return err
	}
	m, err := s.backend.CreatePoll(r.Context(), r.PathValue("group"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (s *Server) groupPoll(w http.ResponseWriter, r *http.Request) error {
	p, err := s.backend.GroupPoll(r.Context(), r.PathValue("group"), r.PathValue("poll"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// VoteRequest is the body of POST /v1/groups/{group}/polls/{poll}/votes.
type VoteRequest struct {
	Options []int `json:"options"`
}

func (s *Server) votePoll(w http.ResponseWriter, r *http.Request) error {
	var req VoteRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	p, err := s.backend.VotePoll(r.Context(), r.PathValue("group"), r.PathValue("poll"), req.Options)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *Server) closePoll(w http.ResponseWriter, r *http.Request) error {
	p, err := s.backend.ClosePoll(r.Context(), r.PathValue("group"), r.PathValue("poll"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// CreateChannelRequest is the body of POST /v1/channels.
type CreateChannelRequest struct {
	Title      string `json:"title"`
	PublicName string `json:"public_name,omitempty"`
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) error {
	var req CreateChannelRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.CreateChannel(r.Context(), req.Title)
	if err != nil {
		return err
	}
	if req.PublicName != "" {
		if g, err = s.backend.PublishChannelName(r.Context(), g.ID, req.PublicName); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

// NameRequest is the body of POST /v1/groups/{group}/public-name.
type NameRequest struct {
	Name string `json:"name"`
}

func (s *Server) publishName(w http.ResponseWriter, r *http.Request) error {
	var req NameRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.PublishChannelName(r.Context(), r.PathValue("group"), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// ForwardRequest is the body of POST .../messages/{message}/forward.
type ForwardRequest struct {
	To string `json:"to"` // a contact (alias or account ID) or a group (ID or title)
}

func (s *Server) forwardGroupMessage(w http.ResponseWriter, r *http.Request) error {
	var req ForwardRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.To == "" {
		return fmt.Errorf("to is required: %w", chat.ErrInvalid)
	}
	id, err := s.backend.ForwardGroupMessage(r.Context(), r.PathValue("group"), r.PathValue("message"), req.To)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
	return nil
}

// InviteRequest is the body of POST /v1/groups/{group}/invites.
type InviteRequest struct {
	ExpiresInSeconds int64 `json:"expires_in_seconds,omitempty"`
}

func (s *Server) createInvite(w http.ResponseWriter, r *http.Request) error {
	var req InviteRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.ExpiresInSeconds < 0 || req.ExpiresInSeconds > 10*365*24*3600 {
		return fmt.Errorf("expires_in_seconds is 0 (never) to ten years: %w", chat.ErrInvalid)
	}
	inv, err := s.backend.CreateInvite(r.Context(), r.PathValue("group"), time.Duration(req.ExpiresInSeconds)*time.Second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, inv)
	return nil
}

// LinkRequest names an invite link.
type LinkRequest struct {
	Link string `json:"link"`
}

func (s *Server) revokeInvite(w http.ResponseWriter, r *http.Request) error {
	var req LinkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.RevokeInvite(r.Context(), r.PathValue("group"), req.Link)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) joinByLink(w http.ResponseWriter, r *http.Request) error {
	var req LinkRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if !strings.Contains(req.Link, "://") && !strings.HasPrefix(req.Link, "@") {
		return fmt.Errorf("link is an invite link (peergram://join/…) or a public name (@name): %w", chat.ErrInvalid)
	}
	g, err := s.backend.JoinGroup(r.Context(), req.Link)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// BanRequest is the body of POST /v1/groups/{group}/bans.
type BanRequest struct {
	Member string `json:"member"`
}

func (s *Server) banMember(w http.ResponseWriter, r *http.Request) error {
	var req BanRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.BanGroupMember(r.Context(), r.PathValue("group"), req.Member, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) unbanMember(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.BanGroupMember(r.Context(), r.PathValue("group"), r.PathValue("member"), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// PinRequest is the body of POST /v1/groups/{group}/pins.
type PinRequest struct {
	Message string `json:"message"`
}

func (s *Server) pinMessage(w http.ResponseWriter, r *http.Request) error {
	var req PinRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	g, err := s.backend.PinGroupMessage(r.Context(), r.PathValue("group"), req.Message, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) unpinMessage(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.PinGroupMessage(r.Context(), r.PathValue("group"), r.PathValue("message"), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) joinGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.JoinGroup(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (s *Server) declineGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.backend.DeclineGroup(r.Context(), r.PathValue("group")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) leaveGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.backend.LeaveGroup(r.Context(), r.PathValue("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}
