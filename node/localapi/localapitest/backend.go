package localapitest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

// MaxText is the longest text Send accepts; longer is chat.ErrTooLarge.
const MaxText = 4096

// Backend is a fake localapi.Backend: contacts and chats in memory, events
// delivered to every subscriber in order. Account IDs are taken as given
// (any non-empty string without spaces); a "peergram://" prefix is
// stripped. Safe for concurrent use.
type Backend struct {
	epoch time.Time // message timestamps are epoch + a second per message

	mu       sync.Mutex // guards the fields below
	identity localapi.Identity
	contacts []chat.Contact
	chats    map[string][]chat.Message // by contact account ID, oldest first
	subs     map[chan chat.Event]context.Context
	fail     error
	seq      uint64
	marked   []chat.MessageID
	requests []chat.Contact // accounts that wrote first (AddRequest)
	ignored  map[string]bool
	groups   []chat.Group
	gmsgs    map[string][]chat.GroupMessage // by group ID
	files    []chat.File
	webData  map[string][]byte
	photos   map[string][]byte // group photos, by group ID
}

// New returns a Backend answering Identity with id.
func New(id localapi.Identity) *Backend {
	return &Backend{
		epoch:    time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		identity: id,
		chats:    make(map[string][]chat.Message),
		subs:     make(map[chan chat.Event]context.Context),
	}
}

// FailWith makes every later call (but Subscribe) return err; nil heals.
func (b *Backend) FailWith(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = err
}

// Identity returns the identity given to New.
func (b *Backend) Identity(context.Context) (localapi.Identity, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return localapi.Identity{}, b.fail
	}
	id := b.identity
	id.Addrs = append([]string(nil), id.Addrs...)
	return id, nil
}

// Status reports one relay, ready.
func (b *Backend) Status(context.Context) (localapi.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return localapi.Status{}, b.fail
	}
	return localapi.Status{Relays: []localapi.RelayStatus{{Peer: "12D3KooWRelay", Ready: true}}}, nil
}

// AddContact adds a contact (accepting its request, if any); the alias
// defaults to the first 8 characters of the account ID. Adding an existing
// contact under another name is chat.ErrExists.
func (b *Backend) AddContact(_ context.Context, idOrLink, name string) (chat.Contact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Contact{}, b.fail
	}
	id := strings.TrimPrefix(idOrLink, "peergram://")
	if id == "" || strings.ContainsAny(id, " \t\r\n/") {
		return chat.Contact{}, fmt.Errorf("localapitest: add contact: bad account ID %q: %w", idOrLink, chat.ErrInvalid)
	}
	for _, c := range b.contacts {
		if c.AccountID == id {
			if name != "" && name != c.Name {
				return chat.Contact{}, fmt.Errorf("localapitest: %s is already a contact named %q: %w", id, c.Name, chat.ErrExists)
			}
			return c, nil
		}
	}
	if name == "" {
		name = id[:min(8, len(id))]
	}
	for i, r := range b.requests {
		if r.AccountID == id {
			b.requests = append(b.requests[:i], b.requests[i+1:]...)
			break
		}
	}
	delete(b.ignored, id)
	c := chat.Contact{AccountID: id, Name: name, Link: "peergram://" + id, Devices: 1, Safety: "12345 67890", Added: b.epoch}
	b.contacts = append(b.contacts, c)
	return c, nil
}

// Contacts lists the contacts in the order they were added.
func (b *Backend) Contacts(context.Context) ([]chat.Contact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	return append([]chat.Contact(nil), b.contacts...), nil
}

// RenameContact changes a contact's alias.
func (b *Backend) RenameContact(_ context.Context, contact, name string) (chat.Contact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Contact{}, b.fail
	}
	if name == "" {
		return chat.Contact{}, fmt.Errorf("localapitest: empty name: %w", chat.ErrInvalid)
	}
	c, err := b.lookupLocked(contact)
	if err != nil {
		return chat.Contact{}, err
	}
	for i := range b.contacts {
		if b.contacts[i].Name == name && b.contacts[i].AccountID != c.AccountID {
			return chat.Contact{}, fmt.Errorf("localapitest: name %q taken: %w", name, chat.ErrExists)
		}
	}
	for i := range b.contacts {
		if b.contacts[i].AccountID == c.AccountID {
			b.contacts[i].Name = name
			return b.contacts[i], nil
		}
	}
	return chat.Contact{}, fmt.Errorf("localapitest: unknown contact %q: %w", contact, chat.ErrUnknownContact)
}

// RemoveContact removes a contact; its chat stays.
func (b *Backend) RemoveContact(_ context.Context, contact string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	c, err := b.lookupLocked(contact)
	if err != nil {
		return err
	}
	for i := range b.contacts {
		if b.contacts[i].AccountID == c.AccountID {
			b.contacts = append(b.contacts[:i], b.contacts[i+1:]...)
			break
		}
	}
	return nil
}

// AddRequest records an account that wrote first, as a request.
func (b *Backend) AddRequest(id, display string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, chat.Contact{AccountID: id, Display: display, Link: "peergram://" + id, Devices: 1, Added: b.epoch})
}

// Requests lists the requests in the order they arrived.
func (b *Backend) Requests(context.Context) ([]chat.Contact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	return append([]chat.Contact(nil), b.requests...), nil
}

// IgnoreRequest drops a request.
func (b *Backend) IgnoreRequest(_ context.Context, account string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	for i, r := range b.requests {
		if r.AccountID == account {
			b.requests = append(b.requests[:i], b.requests[i+1:]...)
			if b.ignored == nil {
				b.ignored = map[string]bool{}
			}
			b.ignored[account] = true
			return nil
		}
	}
	return fmt.Errorf("localapitest: no request from %q: %w", account, chat.ErrUnknownContact)
}

// Send stores an outgoing message with status pending and publishes it.
func (b *Backend) Send(ctx context.Context, contact, text string) (chat.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Message{}, b.fail
	}
	c, err := b.lookupLocked(contact)
	if err != nil {
		return chat.Message{}, err
	}
	switch {
	case text == "":
		return chat.Message{}, fmt.Errorf("localapitest: send: empty text: %w", chat.ErrInvalid)
	case len(text) > MaxText:
		return chat.Message{}, fmt.Errorf("localapitest: send: text of %d bytes: %w", len(text), chat.ErrTooLarge)
	}
	m := b.newMessageLocked(c.AccountID, b.identity.AccountID, text)
	m.Outgoing = true
	m.Status = chat.StatusPending
	b.chats[c.AccountID] = append(b.chats[c.AccountID], m)
	b.publishLocked(chat.Event{Type: chat.EventMessage, Message: m})
	return m, nil
}

// Receive stores an incoming message from a contact (alias or account ID)
// and publishes it, as if it had arrived from the network.
func (b *Backend) Receive(contact, text string) (chat.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.lookupLocked(contact)
	if err != nil {
		return chat.Message{}, err
	}
	m := b.newMessageLocked(c.AccountID, c.AccountID, text)
	m.Received = m.SentAt
	m.Status = chat.StatusReceived
	m.FromName, m.FromContact = c.Name, true
	b.chats[c.AccountID] = append(b.chats[c.AccountID], m)
	b.publishLocked(chat.Event{Type: chat.EventMessage, Message: m})
	return m, nil
}

// Messages lists a chat oldest first; markRead marks incoming messages seen.
func (b *Backend) Messages(_ context.Context, contact string, markRead bool) ([]chat.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	c, err := b.lookupLocked(contact)
	if err != nil {
		return nil, err
	}
	ms := b.chats[c.AccountID]
	out := append([]chat.Message(nil), ms...)
	if markRead {
		for i := range ms {
			if !ms[i].Outgoing && ms[i].Status == chat.StatusReceived {
				ms[i].Status = chat.StatusSeen
				id, _ := chat.ParseMessageID(ms[i].ID)
				b.marked = append(b.marked, id)
			}
		}
	}
	return out, nil
}

// MarkRead marks the listed incoming messages seen; unknown IDs are
// chat.ErrInvalid.
func (b *Backend) MarkRead(_ context.Context, contact string, ids []chat.MessageID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	c, err := b.lookupLocked(contact)
	if err != nil {
		return err
	}
	ms := b.chats[c.AccountID]
next:
	for _, id := range ids {
		for i := range ms {
			if ms[i].ID == id.String() {
				if !ms[i].Outgoing {
					ms[i].Status = chat.Advance(ms[i].Status, chat.StatusSeen)
				}
				b.marked = append(b.marked, id)
				continue next
			}
		}
		return fmt.Errorf("localapitest: mark read: no message %s: %w", id, chat.ErrInvalid)
	}
	return nil
}

// Marked returns the IDs marked read so far, by MarkRead or Messages.
func (b *Backend) Marked() []chat.MessageID {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chat.MessageID(nil), b.marked...)
}

// Subscribe returns a channel of every event published from now on. The
// channel is closed when ctx is done. A subscriber that does not read holds
// up publishers until its ctx is done.
func (b *Backend) Subscribe(ctx context.Context) <-chan chat.Event {
	ch := make(chan chat.Event, 8)
	b.mu.Lock()
	b.subs[ch] = ctx
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
		close(ch)
	}()
	return ch
}

// Subscribers returns the number of open subscriptions.
func (b *Backend) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish delivers ev to every subscriber.
func (b *Backend) Publish(ev chat.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publishLocked(ev)
}

func (b *Backend) publishLocked(ev chat.Event) {
	for ch, ctx := range b.subs {
		select {
		case ch <- ev:
		case <-ctx.Done():
		}
	}
}

func (b *Backend) lookupLocked(contact string) (chat.Contact, error) {
	for _, c := range b.contacts {
		if c.Name == contact || c.AccountID == contact {
			return c, nil
		}
	}
	return chat.Contact{}, fmt.Errorf("localapitest: unknown contact %q: %w", contact, chat.ErrUnknownContact)
}

func (b *Backend) newMessageLocked(chatID, from, text string) chat.Message {
	b.seq++
	var id chat.MessageID
	binary.BigEndian.PutUint64(id[8:], b.seq)
	return chat.Message{
		ID:     id.String(),
		Chat:   chatID,
		From:   from,
		Text:   text,
		SentAt: b.epoch.Add(time.Duration(b.seq) * time.Second),
		Seq:    b.seq,
	}
}

// CreateGroup adds a group owned by the identity's account, with an ID
// made from its position.
func (b *Backend) CreateGroup(_ context.Context, title string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	title = strings.TrimSpace(title)
	if title == "" {
		return chat.Group{}, fmt.Errorf("%w: empty title", chat.ErrInvalid)
	}
	g := chat.Group{ID: fmt.Sprintf("%064x", len(b.groups)+1), Title: title, Role: "owner",
		Members: []chat.GroupMember{{AccountID: b.identity.AccountID, Name: b.identity.Name, Role: "owner"}}}
	b.groups = append(b.groups, g)
	return g, nil
}

// CreateChannel creates a channel owned by the identity.
func (b *Backend) CreateChannel(ctx context.Context, title string) (chat.Group, error) {
	g, err := b.CreateGroup(ctx, title)
	if err != nil {
		return g, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.groups[len(b.groups)-1].Channel, b.groups[len(b.groups)-1].Subscribers = true, 1
	return b.groups[len(b.groups)-1], nil
}

// PublishChannelName records a public name (the fake checks only its
// form).
func (b *Backend) PublishChannelName(_ context.Context, group, name string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	name = strings.ToLower(strings.TrimPrefix(name, "@"))
	if len(name) < 5 || len(name) > 32 || strings.ContainsAny(name, " !-.") {
		return chat.Group{}, fmt.Errorf("%w: not a public name", chat.ErrInvalid)
	}
	for i, g := range b.groups {
		if g.ID == group || g.Title == group {
			b.groups[i].PublicName = name
			return b.groups[i], nil
		}
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// ForwardGroupMessage copies a group message into another group of the
// fake (or refuses a contact it does not know).
func (b *Backend) ForwardGroupMessage(ctx context.Context, group, message, to string) (string, error) {
	b.mu.Lock()
	g, err := b.findGroupLocked(group)
	var text string
	var fwd *chat.Forward
	if err == nil {
		m := b.groupMessageLocked(g.ID, message)
		if m == nil {
			err = fmt.Errorf("%w: no message %s", chat.ErrInvalid, message)
		} else {
			text = m.Text
			fwd = &chat.Forward{From: g.Title, SentAt: m.SentAt}
		}
	}
	b.mu.Unlock()
	if err != nil {
		return "", err
	}
	if m, err := b.PostGroup(ctx, to, chat.GroupPost{Text: text}); err == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		if p := b.groupMessageLocked(m.Group, m.ID); p != nil {
			p.Forwarded = fwd
		}
		return m.ID, nil
	}
	m, err := b.Send(ctx, to, text)
	return m.ID, err
}

// Groups lists the groups in the order they were created.
func (b *Backend) Groups(context.Context) ([]chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	return append([]chat.Group(nil), b.groups...), nil
}

// Group finds a group by ID or unique title.
func (b *Backend) Group(_ context.Context, idOrTitle string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	var found []chat.Group
	for _, g := range b.groups {
		if g.ID == idOrTitle {
			return g, nil
		}
		if g.Title == idOrTitle {
			found = append(found, g)
		}
	}
	if len(found) != 1 {
		return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, idOrTitle)
	}
	return found[0], nil
}

// AddGroupMembers adds contacts of the Backend (by name or account ID) to
// a group as members.
func (b *Backend) AddGroupMembers(_ context.Context, group string, contacts []string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	gi := -1
	for i, g := range b.groups {
		if g.ID == group || g.Title == group {
			gi = i
		}
	}
	if gi < 0 {
		return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
	}
	for _, name := range contacts {
		var found *chat.Contact
		for i := range b.contacts {
			if b.contacts[i].Name == name || b.contacts[i].AccountID == name {
				found = &b.contacts[i]
			}
		}
		if found == nil {
			return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownContact, name)
		}
		for _, m := range b.groups[gi].Members {
			if m.AccountID == found.AccountID {
				return chat.Group{}, fmt.Errorf("%w: %s is already a member", chat.ErrInvalid, name)
			}
		}
		b.groups[gi].Members = append(b.groups[gi].Members, chat.GroupMember{AccountID: found.AccountID, Name: found.Name, Role: "member"})
	}
	return b.groups[gi], nil
}

// PostGroup appends a message from the identity's account to a group.
func (b *Backend) PostGroup(_ context.Context, group string, post chat.GroupPost) (chat.GroupMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.GroupMessage{}, b.fail
	}
	g, err := b.findGroupLocked(group)
	if err != nil {
		return chat.GroupMessage{}, err
	}
	if post.ReplyTo != "" && b.groupMessageLocked(g.ID, post.ReplyTo) == nil {
		return chat.GroupMessage{}, fmt.Errorf("%w: no message %s in this group", chat.ErrInvalid, post.ReplyTo)
	}
	return b.appendGroupLocked(g.ID, chat.GroupMessage{Text: post.Text, ReplyTo: post.ReplyTo}), nil
}

func (b *Backend) appendGroupLocked(group string, m chat.GroupMessage) chat.GroupMessage {
	if b.gmsgs == nil {
		b.gmsgs = map[string][]chat.GroupMessage{}
	}
	b.seq++
	m.ID, m.Group, m.From, m.FromName, m.Outgoing = fmt.Sprintf("%064x", b.seq), group, b.identity.AccountID, b.identity.Name, true
	m.SentAt = b.epoch.Add(time.Duration(b.seq) * time.Second)
	b.gmsgs[group] = append(b.gmsgs[group], m)
	return m
}

func (b *Backend) groupMessageLocked(group, id string) *chat.GroupMessage {
	for i, m := range b.gmsgs[group] {
		if m.ID == id {
			return &b.gmsgs[group][i]
		}
	}
	return nil
}

// CreatePoll posts a poll.
func (b *Backend) CreatePoll(_ context.Context, group string, spec chat.PollSpec) (chat.GroupMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.GroupMessage{}, b.fail
	}
	g, err := b.findGroupLocked(group)
	if err != nil {
		return chat.GroupMessage{}, err
	}
	if spec.Question == "" || len(spec.Options) < 2 || len(spec.Options) > chat.MaxPollOptions {
		return chat.GroupMessage{}, fmt.Errorf("%w: a poll has a question and 2 to %d options", chat.ErrInvalid, chat.MaxPollOptions)
	}
	p := &chat.Poll{Question: spec.Question, Multiple: spec.Multiple, MyVotes: []int{}}
	for _, o := range spec.Options {
		p.Options = append(p.Options, chat.PollOption{Text: o})
	}
	m := b.appendGroupLocked(g.ID, chat.GroupMessage{Text: spec.Question, Poll: p})
	stored := b.groupMessageLocked(g.ID, m.ID)
	stored.Poll.ID = m.ID
	m.Poll = clonePoll(stored.Poll)
	return m, nil
}

func clonePoll(p *chat.Poll) *chat.Poll {
	c := *p
	c.Options = append([]chat.PollOption(nil), p.Options...)
	c.MyVotes = append([]int{}, p.MyVotes...)
	return &c
}

func (b *Backend) pollLocked(group, poll string) (*chat.Poll, error) {
	if b.fail != nil {
		return nil, b.fail
	}
	g, err := b.findGroupLocked(group)
	if err != nil {
		return nil, err
	}
	m := b.groupMessageLocked(g.ID, poll)
	if m == nil || m.Poll == nil {
		return nil, fmt.Errorf("%w: no poll %s in this group", chat.ErrInvalid, poll)
	}
	return m.Poll, nil
}

// VotePoll records the identity's vote.
func (b *Backend) VotePoll(_ context.Context, group, poll string, options []int) (chat.Poll, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, err := b.pollLocked(group, poll)
	if err != nil {
		return chat.Poll{}, err
	}
	if p.Closed || (!p.Multiple && len(options) > 1) {
		return chat.Poll{}, fmt.Errorf("%w: not a vote this poll takes", chat.ErrInvalid)
	}
	for _, o := range options {
		if o < 0 || o >= len(p.Options) {
			return chat.Poll{}, fmt.Errorf("%w: the poll has options 0 to %d", chat.ErrInvalid, len(p.Options)-1)
		}
	}
	for _, o := range p.MyVotes {
		p.Options[o].Votes--
	}
	if len(p.MyVotes) > 0 {
		p.Voters--
	}
	p.MyVotes = append([]int{}, options...)
	for _, o := range options {
		p.Options[o].Votes++
	}
	if len(options) > 0 {
		p.Voters++
	}
	return *clonePoll(p), nil
}

// ClosePoll closes a poll.
func (b *Backend) ClosePoll(_ context.Context, group, poll string) (chat.Poll, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, err := b.pollLocked(group, poll)
	if err != nil {
		return chat.Poll{}, err
	}
	if p.Closed {
		return chat.Poll{}, fmt.Errorf("%w: the poll is closed already", chat.ErrInvalid)
	}
	p.Closed = true
	return *clonePoll(p), nil
}

// GroupPoll returns a poll.
func (b *Backend) GroupPoll(_ context.Context, group, poll string) (chat.Poll, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, err := b.pollLocked(group, poll)
	if err != nil {
		return chat.Poll{}, err
	}
	return *clonePoll(p), nil
}

// BanGroupMember bans (removing a member) or unbans an account.
func (b *Backend) BanGroupMember(_ context.Context, group, member string, ban bool) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		acct := member
		for _, c := range b.contacts {
			if c.Name == member {
				acct = c.AccountID
			}
		}
		banned := slices.Contains(g.Banned, acct)
		switch {
		case ban && banned, !ban && !banned:
			return chat.Group{}, fmt.Errorf("%w: %s is %s", chat.ErrInvalid, member, map[bool]string{true: "banned already", false: "not banned"}[banned])
		case ban:
			b.groups[i].Banned = append(b.groups[i].Banned, acct)
			b.groups[i].Members = slices.DeleteFunc(b.groups[i].Members, func(m chat.GroupMember) bool { return m.AccountID == acct && m.Role != "owner" })
		default:
			b.groups[i].Banned = slices.DeleteFunc(b.groups[i].Banned, func(a string) bool { return a == acct })
		}
		return b.groups[i], nil
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// PinGroupMessage pins or unpins a message.
func (b *Backend) PinGroupMessage(_ context.Context, group, message string, pin bool) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		at := -1
		for k, p := range g.Pinned {
			if p == message {
				at = k
			}
		}
		switch {
		case pin && at >= 0:
			return chat.Group{}, fmt.Errorf("%w: the message is pinned already", chat.ErrInvalid)
		case !pin && at < 0:
			return chat.Group{}, fmt.Errorf("%w: the message is not pinned", chat.ErrInvalid)
		case pin:
			if b.groupMessageLocked(g.ID, message) == nil {
				return chat.Group{}, fmt.Errorf("%w: no message %s in this group", chat.ErrInvalid, message)
			}
			b.groups[i].Pinned = append(b.groups[i].Pinned, message)
		default:
			b.groups[i].Pinned = append(g.Pinned[:at:at], g.Pinned[at+1:]...)
		}
		return b.groups[i], nil
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// GroupMessages lists a group's messages in the order they were sent.
func (b *Backend) GroupMessages(_ context.Context, group string) ([]chat.GroupMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	g, err := b.findGroupLocked(group)
	if err != nil {
		return nil, err
	}
	return append([]chat.GroupMessage(nil), b.gmsgs[g.ID]...), nil
}

func (b *Backend) findGroupLocked(group string) (chat.Group, error) {
	var found []chat.Group
	for _, g := range b.groups {
		if g.ID == group {
			return g, nil
		}
		if g.Title == group {
			found = append(found, g)
		}
	}
	if len(found) != 1 {
		return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
	}
	return found[0], nil
}

// SetGroupInfo sets a group's title and description.
func (b *Backend) SetGroupInfo(_ context.Context, group string, ch chat.GroupInfoChange) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	if ch.Title == nil && ch.Description == nil {
		return chat.Group{}, fmt.Errorf("%w: nothing to change", chat.ErrInvalid)
	}
	if ch.Title != nil && strings.TrimSpace(*ch.Title) == "" {
		return chat.Group{}, fmt.Errorf("%w: an empty title", chat.ErrInvalid)
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		if ch.Title != nil {
			b.groups[i].Title = strings.TrimSpace(*ch.Title)
		}
		if ch.Description != nil {
			b.groups[i].Description = strings.TrimSpace(*ch.Description)
		}
		return b.groups[i], nil
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// SetGroupPhoto keeps image as the group's photo as it is (nil removes
// it); its name is the image's SHA-256.
func (b *Backend) SetGroupPhoto(_ context.Context, group string, image []byte) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		if image == nil && b.groups[i].Photo == "" {
			return chat.Group{}, fmt.Errorf("%w: the group has no photo", chat.ErrInvalid)
		}
		if b.photos == nil {
			b.photos = map[string][]byte{}
		}
		b.photos[g.ID] = image
		b.groups[i].Photo = ""
		if image != nil {
			sum := sha256.Sum256(image)
			b.groups[i].Photo = hex.EncodeToString(sum[:])
		}
		return b.groups[i], nil
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// GroupPhoto returns the image SetGroupPhoto kept (nil if none).
func (b *Backend) GroupPhoto(_ context.Context, group string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	for _, g := range b.groups {
		if g.ID == group || g.Title == group {
			return b.photos[g.ID], nil
		}
	}
	return nil, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// SetGroupRole sets a member's role ("admin" or "member").
func (b *Backend) SetGroupRole(_ context.Context, group, member, role string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	if role != "admin" && role != "member" {
		return chat.Group{}, fmt.Errorf("%w: role %q", chat.ErrInvalid, role)
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		for k, m := range g.Members {
			if m.Name == member || m.AccountID == member {
				if m.Role == "owner" || m.Role == role {
					return chat.Group{}, fmt.Errorf("%w: %s is the group's %s", chat.ErrInvalid, member, m.Role)
				}
				b.groups[i].Members[k].Role = role
				return b.groups[i], nil
			}
		}
		return chat.Group{}, fmt.Errorf("%w: %s is not a member", chat.ErrInvalid, member)
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// RemoveGroupMember removes a member by name or account ID.
func (b *Backend) RemoveGroupMember(_ context.Context, group, member string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		for k, m := range g.Members {
			if m.Name == member || m.AccountID == member {
				if m.Role == "owner" {
					return chat.Group{}, fmt.Errorf("%w: the owner cannot be removed", chat.ErrInvalid)
				}
				b.groups[i].Members = append(g.Members[:k:k], g.Members[k+1:]...)
				return b.groups[i], nil
			}
		}
		return chat.Group{}, fmt.Errorf("%w: %s is not a member", chat.ErrInvalid, member)
	}
	return chat.Group{}, fmt.Errorf("%w: %q", chat.ErrUnknownGroup, group)
}

// Invite adds a group the fake's account is invited to (role
// "invited"), for tests of join.
func (b *Backend) Invite(g chat.Group) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g.Role = "invited"
	b.groups = append(b.groups, g)
}

// CreateInvite returns a link the fake's JoinGroup takes.
func (b *Backend) CreateInvite(_ context.Context, group string, expiresIn time.Duration) (chat.Invite, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, err := b.findGroupLocked(group)
	if err != nil {
		return chat.Invite{}, err
	}
	b.seq++
	inv := chat.Invite{Link: fmt.Sprintf("peergram://join/%s/key%d", g.ID, b.seq), Group: g.ID}
	if expiresIn > 0 {
		exp := b.epoch.Add(expiresIn)
		inv.Expires = &exp
	}
	return inv, nil
}

// RevokeInvite accepts any link of the group.
func (b *Backend) RevokeInvite(_ context.Context, group, link string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g, err := b.findGroupLocked(group)
	if err != nil {
		return chat.Group{}, err
	}
	if !strings.HasPrefix(link, "peergram://join/"+g.ID+"/") {
		return chat.Group{}, fmt.Errorf("%w: not a link of this group", chat.ErrInvalid)
	}
	return g, nil
}

// JoinGroup accepts an invitation by ID or title, or an invite link to
// an invited group (by its ID in the link).
func (b *Backend) JoinGroup(_ context.Context, group string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return chat.Group{}, b.fail
	}
	if rest, ok := strings.CutPrefix(group, "peergram://join/"); ok {
		group, _, _ = strings.Cut(rest, "/")
	} else if strings.Contains(group, "://") {
		return chat.Group{}, fmt.Errorf("%w: not an invite link", chat.ErrInvalid)
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		if g.Role != "invited" {
			return chat.Group{}, fmt.Errorf("%w: you are a member of %q already", chat.ErrInvalid, group)
		}
		b.groups[i].Role = "member"
		return b.groups[i], nil
	}
	return chat.Group{}, fmt.Errorf("%w: no invitation to %q", chat.ErrUnknownGroup, group)
}

// DeclineGroup drops an invitation by ID or title.
func (b *Backend) DeclineGroup(_ context.Context, group string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	for i, g := range b.groups {
		if g.ID != group && g.Title != group {
			continue
		}
		if g.Role != "invited" {
			return fmt.Errorf("%w: you are a member of %q already", chat.ErrInvalid, group)
		}
		b.groups = append(b.groups[:i], b.groups[i+1:]...)
		return nil
	}
	return fmt.Errorf("%w: no invitation to %q", chat.ErrUnknownGroup, group)
}

// LeaveGroup refuses: the fake's account owns every group it created.
func (b *Backend) LeaveGroup(_ context.Context, group string) (chat.Group, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.findGroupLocked(group); err != nil {
		return chat.Group{}, err
	}
	return chat.Group{}, fmt.Errorf("%w: the owner does not leave", chat.ErrInvalid)
}

// SendFile records a file sent (its size from the path) as a message.
func (b *Backend) SendFile(ctx context.Context, req chat.FileSend) (chat.Message, error) {
	fi, err := os.Stat(req.Path)
	if err != nil {
		return chat.Message{}, fmt.Errorf("localapitest: %w: %w", chat.ErrInvalid, err)
	}
	m, err := b.Send(ctx, req.Chat, "file "+filepath.Base(req.Path))
	if err != nil {
		return chat.Message{}, err
	}
	m.Text = req.Caption
	m.File = &chat.FileInfo{Name: filepath.Base(req.Path), Size: fi.Size(), Mime: "application/octet-stream"}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files = append(b.files, chat.File{ID: m.ID, Chat: m.Chat, Name: m.File.Name, Size: fi.Size(), Mime: m.File.Mime,
		From: m.From, Outgoing: true, SentAt: m.SentAt, State: chat.FileUploading})
	return m, nil
}

// Files lists the files recorded for a contact.
func (b *Backend) Files(_ context.Context, contact string) ([]chat.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.lookupLocked(contact)
	if err != nil {
		return nil, err
	}
	var out []chat.File
	for _, f := range b.files {
		if f.Chat == c.AccountID {
			out = append(out, f)
		}
	}
	return out, nil
}

// Download answers a recorded file as downloaded to out.
func (b *Backend) Download(_ context.Context, id, out string) (chat.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, f := range b.files {
		if f.ID == id {
			b.files[i].State, b.files[i].Path = chat.FileDownloaded, out
			return b.files[i], nil
		}
	}
	return chat.File{}, fmt.Errorf("localapitest: no file %q: %w", id, chat.ErrInvalid)
}

// DeleteFile forgets a recorded file.
func (b *Backend) DeleteFile(_ context.Context, id string, everyone bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, f := range b.files {
		if f.ID == id {
			if everyone && !f.Outgoing {
				return fmt.Errorf("localapitest: not the sender: %w", chat.ErrInvalid)
			}
			b.files = append(b.files[:i], b.files[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("localapitest: no file %q: %w", id, chat.ErrInvalid)
}

// WebData returns the web client's entry name, as KeepWebData left it.
func (b *Backend) WebData(_ context.Context, name string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return nil, b.fail
	}
	return bytes.Clone(b.webData[name]), nil
}

// KeepWebData keeps the web client's entry name.
func (b *Backend) KeepWebData(_ context.Context, name string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	if b.webData == nil {
		b.webData = map[string][]byte{}
	}
	b.webData[name] = bytes.Clone(data)
	return nil
}
