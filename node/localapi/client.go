package localapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/peergram/peergram/node/chat"
)

const (
	// maxResponseBytes bounds a response body the Client reads. The daemon
	// is trusted (it holds our keys), but a wrong port in DIR/api should not
	// make the CLI read without end.
	maxResponseBytes = 256 << 20
	maxErrorBytes    = 64 << 10
	maxEventBytes    = 4 << 20 // longest event line
	eventBuffer      = 16
)

// Client speaks the API over HTTP; the CLI and tests use it. Its methods
// mirror Backend. API errors come back as *Error, which matches the chat
// sentinels with errors.Is. Safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// maxIdleConns is how many idle connections a Client keeps to its daemon:
// a bot or the web client with many requests in flight reuses them
// instead of dialling anew for each (net/http keeps 2 by default).
const maxIdleConns = 64

// NewClient returns a Client for the daemon at baseURL (e.g.
// "http://127.0.0.1:7777", the content of DIR/api) with the bearer token
// (DIR/token).
func NewClient(baseURL, token string) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the daemon is on loopback: never through a proxy
	t.MaxIdleConnsPerHost = maxIdleConns
	return &Client{
		base:  strings.TrimRight(strings.TrimSpace(baseURL), "/"),
		token: strings.TrimSpace(token),
		hc:    &http.Client{Transport: t},
	}
}

// NewUnixClient returns a Client for the daemon listening on the Unix
// socket at path (DIR/api.sock). The socket lives in the home directory,
// which only its owner can enter, so no other local user can answer in the
// daemon's place and receive the token.
func NewUnixClient(path, token string) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = maxIdleConns
	t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	return &Client{base: "http://localhost", token: strings.TrimSpace(token), hc: &http.Client{Transport: t}}
}

// Close closes idle connections. The Client stays usable.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &out, http.StatusOK)
	return out, err
}

// Health checks that the daemon answers and accepts the token.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/health", nil, nil, http.StatusOK)
}

// Identity returns the daemon's account, device and addresses.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	err := c.do(ctx, http.MethodGet, "/v1/identity", nil, &id, http.StatusOK)
	return id, err
}

// AddContact adds a contact by account ID or peergram:// link, with an
// optional alias.
func (c *Client) AddContact(ctx context.Context, idOrLink, name string) (chat.Contact, error) {
	var ct chat.Contact
	err := c.do(ctx, http.MethodPost, "/v1/contacts", AddContactRequest{AccountID: idOrLink, Name: name}, &ct, http.StatusCreated)
	return ct, err
}

// CreateGroup is POST /v1/groups.
func (c *Client) CreateGroup(ctx context.Context, title string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups", CreateGroupRequest{Title: title}, &g, http.StatusCreated)
	return g, err
}

// Groups is GET /v1/groups.
func (c *Client) Groups(ctx context.Context) ([]chat.Group, error) {
	var gs []chat.Group
	err := c.do(ctx, http.MethodGet, "/v1/groups", nil, &gs, http.StatusOK)
	return gs, err
}

// Group is GET /v1/groups/{group}: a group by ID or unique title.
func (c *Client) Group(ctx context.Context, idOrTitle string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(idOrTitle), nil, &g, http.StatusOK)
	return g, err
}

// AddGroupMembers is POST /v1/groups/{group}/members.
func (c *Client) AddGroupMembers(ctx context.Context, group string, contacts []string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/members", AddMembersRequest{Members: contacts}, &g, http.StatusOK)
	return g, err
}

// SendGroup posts a text: PostGroup without a reply.
func (c *Client) SendGroup(ctx context.Context, group, text string) (chat.GroupMessage, error) {
	return c.PostGroup(ctx, group, chat.GroupPost{Text: text})
}

// PostGroup is POST /v1/groups/{group}/messages.
func (c *Client) PostGroup(ctx context.Context, group string, post chat.GroupPost) (chat.GroupMessage, error) {
	var m chat.GroupMessage
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/messages", post, &m, http.StatusCreated)
	return m, err
}

func pollPath(group, poll string) string {
	return "/v1/groups/" + url.PathEscape(group) + "/polls/" + url.PathEscape(poll)
}

// CreatePoll is POST /v1/groups/{group}/polls.
func (c *Client) CreatePoll(ctx context.Context, group string, spec chat.PollSpec) (chat.GroupMessage, error) {
	var m chat.GroupMessage
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/polls", spec, &m, http.StatusCreated)
	return m, err
}

// GroupPoll is GET /v1/groups/{group}/polls/{poll}.
func (c *Client) GroupPoll(ctx context.Context, group, poll string) (chat.Poll, error) {
	var p chat.Poll
	err := c.do(ctx, http.MethodGet, pollPath(group, poll), nil, &p, http.StatusOK)
	return p, err
}

// VotePoll is POST /v1/groups/{group}/polls/{poll}/votes.
func (c *Client) VotePoll(ctx context.Context, group, poll string, options []int) (chat.Poll, error) {
	var p chat.Poll
	if options == nil {
		options = []int{}
	}
	err := c.do(ctx, http.MethodPost, pollPath(group, poll)+"/votes", VoteRequest{Options: options}, &p, http.StatusOK)
	return p, err
}

// ClosePoll is POST /v1/groups/{group}/polls/{poll}/close.
func (c *Client) ClosePoll(ctx context.Context, group, poll string) (chat.Poll, error) {
	var p chat.Poll
	err := c.do(ctx, http.MethodPost, pollPath(group, poll)+"/close", struct{}{}, &p, http.StatusOK)
	return p, err
}

// BanGroupMember is POST /v1/groups/{group}/bans (ban) or DELETE
// /v1/groups/{group}/bans/{member} (unban).
func (c *Client) BanGroupMember(ctx context.Context, group, member string, ban bool) (chat.Group, error) {
	var g chat.Group
	var err error
	if ban {
		err = c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/bans", BanRequest{Member: member}, &g, http.StatusOK)
	} else {
		err = c.do(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(group)+"/bans/"+url.PathEscape(member), nil, &g, http.StatusOK)
	}
	return g, err
}

// PinGroupMessage is POST /v1/groups/{group}/pins (pin) or DELETE
// /v1/groups/{group}/pins/{message} (unpin).
func (c *Client) PinGroupMessage(ctx context.Context, group, message string, pin bool) (chat.Group, error) {
	var g chat.Group
	var err error
	if pin {
		err = c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/pins", PinRequest{Message: message}, &g, http.StatusOK)
	} else {
		err = c.do(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(group)+"/pins/"+url.PathEscape(message), nil, &g, http.StatusOK)
	}
	return g, err
}

// GroupMessages is GET /v1/groups/{group}/messages.
func (c *Client) GroupMessages(ctx context.Context, group string) ([]chat.GroupMessage, error) {
	var ms []chat.GroupMessage
	err := c.do(ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(group)+"/messages", nil, &ms, http.StatusOK)
	return ms, err
}

// RemoveGroupMember is DELETE /v1/groups/{group}/members/{member}.
func (c *Client) RemoveGroupMember(ctx context.Context, group, member string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodDelete, "/v1/groups/"+url.PathEscape(group)+"/members/"+url.PathEscape(member), nil, &g, http.StatusOK)
	return g, err
}

// SetGroupRole is PUT /v1/groups/{group}/members/{member}/role.
func (c *Client) SetGroupRole(ctx context.Context, group, member, role string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPut, "/v1/groups/"+url.PathEscape(group)+"/members/"+url.PathEscape(member)+"/role",
		map[string]string{"role": role}, &g, http.StatusOK)
	return g, err
}

// SetGroupInfo is POST /v1/groups/{group}/info.
func (c *Client) SetGroupInfo(ctx context.Context, group string, ch chat.GroupInfoChange) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/info", ch, &g, http.StatusOK)
	return g, err
}

// SetGroupPhoto is PUT /v1/groups/{group}/photo with the image, or
// DELETE /v1/groups/{group}/photo for nil.
func (c *Client) SetGroupPhoto(ctx context.Context, group string, image []byte) (chat.Group, error) {
	var g chat.Group
	path := "/v1/groups/" + url.PathEscape(group) + "/photo"
	if image == nil {
		return g, c.do(ctx, http.MethodDelete, path, nil, &g, http.StatusOK)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+path, bytes.NewReader(image))
	if err != nil {
		return g, fmt.Errorf("localapi: PUT %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return g, fmt.Errorf("localapi: PUT %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return g, readError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&g); err != nil {
		return g, fmt.Errorf("localapi: PUT %s: decode answer: %w", path, err)
	}
	return g, nil
}

// GroupPhoto is GET /v1/groups/{group}/photo: the photo, a JPEG (an
// *Error with Status 404 if the group has none).
func (c *Client) GroupPhoto(ctx context.Context, group string) ([]byte, error) {
	path := "/v1/groups/" + url.PathEscape(group) + "/photo"
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxGroupPhotoBytes+1))
	if err != nil {
		return nil, fmt.Errorf("localapi: GET %s: %w", path, err)
	}
	return b, nil
}

// JoinGroup is POST /v1/groups/{group}/join, or POST /v1/join for an
// invite link.
func (c *Client) JoinGroup(ctx context.Context, groupOrLink string) (chat.Group, error) {
	var g chat.Group
	var err error
	if strings.Contains(groupOrLink, "://") || strings.HasPrefix(groupOrLink, "@") {
		err = c.do(ctx, http.MethodPost, "/v1/join", LinkRequest{Link: groupOrLink}, &g, http.StatusOK)
	} else {
		err = c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(groupOrLink)+"/join", struct{}{}, &g, http.StatusOK)
	}
	return g, err
}

// DeclineGroup is POST /v1/groups/{group}/decline.
func (c *Client) DeclineGroup(ctx context.Context, group string) error {
	return c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/decline", struct{}{}, nil, http.StatusNoContent)
}

// CreateChannel is POST /v1/channels.
func (c *Client) CreateChannel(ctx context.Context, title string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/channels", CreateChannelRequest{Title: title}, &g, http.StatusCreated)
	return g, err
}

// PublishChannelName is POST /v1/groups/{group}/public-name.
func (c *Client) PublishChannelName(ctx context.Context, group, name string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/public-name", NameRequest{Name: name}, &g, http.StatusOK)
	return g, err
}

// ForwardGroupMessage is POST /v1/groups/{group}/messages/{message}/forward.
func (c *Client) ForwardGroupMessage(ctx context.Context, group, message, to string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/messages/"+url.PathEscape(message)+"/forward", ForwardRequest{To: to}, &out, http.StatusCreated)
	return out.ID, err
}

// CreateInvite is POST /v1/groups/{group}/invites.
func (c *Client) CreateInvite(ctx context.Context, group string, expiresIn time.Duration) (chat.Invite, error) {
	var inv chat.Invite
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/invites", InviteRequest{ExpiresInSeconds: int64(expiresIn / time.Second)}, &inv, http.StatusCreated)
	return inv, err
}

// RevokeInvite is POST /v1/groups/{group}/invites/revoke.
func (c *Client) RevokeInvite(ctx context.Context, group, link string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/invites/revoke", LinkRequest{Link: link}, &g, http.StatusOK)
	return g, err
}

// LeaveGroup is POST /v1/groups/{group}/leave.
func (c *Client) LeaveGroup(ctx context.Context, group string) (chat.Group, error) {
	var g chat.Group
	err := c.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/leave", struct{}{}, &g, http.StatusOK)
	return g, err
}

// Contacts lists the contacts.
func (c *Client) Contacts(ctx context.Context) ([]chat.Contact, error) {
	var cs []chat.Contact
	err := c.do(ctx, http.MethodGet, "/v1/contacts", nil, &cs, http.StatusOK)
	return cs, err
}

// RenameContact is POST /v1/contacts/{contact}/rename.
func (c *Client) RenameContact(ctx context.Context, contact, name string) (chat.Contact, error) {
	var out chat.Contact
	err := c.do(ctx, http.MethodPost, "/v1/contacts/"+url.PathEscape(contact)+"/rename", RenameRequest{Name: name}, &out, http.StatusOK)
	return out, err
}

// RemoveContact is DELETE /v1/contacts/{contact}.
func (c *Client) RemoveContact(ctx context.Context, contact string) error {
	return c.do(ctx, http.MethodDelete, "/v1/contacts/"+url.PathEscape(contact), nil, nil, http.StatusNoContent)
}

// Requests is GET /v1/requests.
func (c *Client) Requests(ctx context.Context) ([]chat.Contact, error) {
	var out []chat.Contact
	err := c.do(ctx, http.MethodGet, "/v1/requests", nil, &out, http.StatusOK)
	return out, err
}

// AcceptRequest is POST /v1/requests/{account}/accept.
func (c *Client) AcceptRequest(ctx context.Context, account, name string) (chat.Contact, error) {
	var out chat.Contact
	err := c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(account)+"/accept", AcceptRequest{Name: name}, &out, http.StatusOK)
	return out, err
}

// IgnoreRequest is POST /v1/requests/{account}/ignore.
func (c *Client) IgnoreRequest(ctx context.Context, account string) error {
	return c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(account)+"/ignore", nil, nil, http.StatusNoContent)
}

// Send queues text to contact (alias or account ID); it returns once the
// daemon has stored the message in its outbox.
func (c *Client) Send(ctx context.Context, contact, text string) (chat.Message, error) {
	var m chat.Message
	err := c.do(ctx, http.MethodPost, "/v1/messages", SendRequest{Contact: contact, Text: text}, &m, http.StatusCreated)
	return m, err
}

// SendFile sends a file; see Backend.SendFile. It waits as long as ctx
// lets it (a large file takes a while to encrypt).
func (c *Client) SendFile(ctx context.Context, req chat.FileSend) (chat.Message, error) {
	var m chat.Message
	err := c.do(ctx, http.MethodPost, "/v1/files", req, &m, http.StatusCreated)
	return m, err
}

// Files lists the files of the chat with contact, oldest first.
func (c *Client) Files(ctx context.Context, contact string) ([]chat.File, error) {
	var fs []chat.File
	err := c.do(ctx, http.MethodGet, "/v1/chats/"+url.PathEscape(contact)+"/files", nil, &fs, http.StatusOK)
	return fs, err
}

// Download fetches a received file; see Backend.Download. It returns
// when the file is complete, or when ctx ends (the download resumes when
// asked again).
func (c *Client) Download(ctx context.Context, id, out string) (chat.File, error) {
	var f chat.File
	err := c.do(ctx, http.MethodPost, "/v1/files/"+url.PathEscape(id)+"/download", DownloadRequest{Out: out}, &f, http.StatusOK)
	return f, err
}

// DeleteFile deletes a file; see Backend.DeleteFile.
func (c *Client) DeleteFile(ctx context.Context, id string, everyone bool) error {
	return c.do(ctx, http.MethodDelete, "/v1/files/"+url.PathEscape(id)+"?everyone="+strconv.FormatBool(everyone), nil, nil, http.StatusNoContent)
}

// Messages lists the chat with contact, oldest first; markRead marks the
// incoming messages read.
func (c *Client) Messages(ctx context.Context, contact string, markRead bool) ([]chat.Message, error) {
	var ms []chat.Message
	path := "/v1/chats/" + url.PathEscape(contact) + "/messages?mark_read=" + strconv.FormatBool(markRead)
	err := c.do(ctx, http.MethodGet, path, nil, &ms, http.StatusOK)
	return ms, err
}

// MarkRead marks messages of the chat with contact read.
func (c *Client) MarkRead(ctx context.Context, contact string, ids []chat.MessageID) error {
	req := MarkReadRequest{IDs: make([]string, len(ids))}
	for i, id := range ids {
		req.IDs[i] = id.String()
	}
	return c.do(ctx, http.MethodPost, "/v1/chats/"+url.PathEscape(contact)+"/read", req, nil, http.StatusNoContent)
}

// Events subscribes to the event stream. Events arrive in order on the
// returned channel, which is closed when ctx is done or the stream ends
// (daemon stopped, malformed event). Events published after Events returns
// are not missed.
func (c *Client) Events(ctx context.Context) (<-chan chat.Event, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("localapi: events: content type %q, want text/event-stream", mt)
	}
	ch := make(chan chat.Event, eventBuffer)
	go readEvents(ctx, resp.Body, ch)
	return ch, nil
}

// readEvents parses the stream until it ends, then closes body and ch. It
// follows the SSE rules the server uses: "data:" lines accumulate, a blank
// line dispatches, lines starting with ":" are comments, other fields are
// ignored.
func readEvents(ctx context.Context, body io.ReadCloser, ch chan<- chat.Event) {
	defer close(ch)
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), maxEventBytes)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 {
			if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				if len(data) > 0 {
					data = append(data, '\n')
				}
				data = append(data, bytes.TrimPrefix(v, []byte(" "))...)
			}
			continue
		}
		if len(data) == 0 {
			continue
		}
		var ev chat.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		data = data[:0]
		select {
		case ch <- ev:
		case <-ctx.Done():
			return
		}
	}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("localapi: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return readError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
		return fmt.Errorf("localapi: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("localapi: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("localapi: %s %s: %w", method, path, err)
	}
	return resp, nil
}

// readError turns an error answer into *Error.
func readError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var body errorBody
	if json.Unmarshal(b, &body) == nil && body.Code != "" {
		e.Code, e.Message = body.Code, body.Error
		return e
	}
	// Not our JSON: something else answers on this port.
	if len(b) > 200 {
		b = b[:200]
	}
	e.Message = fmt.Sprintf("HTTP %d from %s: %q", resp.StatusCode, resp.Request.URL.Host, strings.TrimSpace(string(b)))
	return e
}

// WebLogin asks for a one-time login link to the daemon's web client.
func (c *Client) WebLogin(ctx context.Context) (LoginLink, error) {
	var l LoginLink
	err := c.do(ctx, http.MethodPost, "/v1/web/login", nil, &l, http.StatusCreated)
	return l, err
}
