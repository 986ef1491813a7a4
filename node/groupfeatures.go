package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// What a group message can be besides text, as Telegram has it: a reply,
// @mentions (the mentioned member's node raises an event), a poll, a vote
// (a member's latest vote counts; an empty one takes it back) and a poll's
// close (by its creator). Polls, votes and closes are group messages like
// any other — sealed, gossiped, kept by relays — and each node counts the
// votes it holds while the poll is open. A close carries the creator's
// final count, and that is what every member shows once it holds the
// close: a vote's time is its sender's word, so counting "votes sent
// before the close" would let a member vote after it with its clock set
// back (an outside review did), and members that missed a vote would show
// other results. Pins are entries of the group's log (groupstate.KindPin),
// so every member sees the same pins.

// pollBody is a poll; voteBody a vote (option indexes, from 0).
type pollBody struct {
	Question string   `json:"q"`
	Options  []string `json:"o"`
	Multiple bool     `json:"m,omitempty"`
}

type voteBody struct {
	Poll    string `json:"p"`
	Options []int  `json:"o"`
}

// pollResult is a closed poll's final count: votes per option, and how
// many accounts voted.
type pollResult struct {
	Votes  []int `json:"v"`
	Voters int   `json:"n"`
}

// maxVoters bounds a result's counts (a group's members, and then some).
const maxVoters = 1 << 24

// fits reports whether r is a count of a poll with options options
// (single choice: the votes add up to the voters).
func (r *pollResult) fits(options int, multiple bool) bool {
	if len(r.Votes) != options || r.Voters < 0 || r.Voters > maxVoters {
		return false
	}
	sum := 0
	for _, v := range r.Votes {
		if v < 0 || v > r.Voters {
			return false
		}
		sum += v
	}
	return multiple || sum == r.Voters
}

const maxMentions = 50

func isMessageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// check bounds a body, whoever made it: exactly one of text, poll, vote,
// close; sizes and counts within the chat package's bounds.
func (b *groupBody) check() error {
	kinds := 0
	for _, set := range []bool{b.Text != "" || b.File != nil, b.Poll != nil, b.Vote != nil, b.Close != "", b.DeleteFile != "", b.Call != nil, b.Info != nil} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		return errors.New("a group message is one of a text, a poll, a vote or a close")
	case len(b.Text) > maxGroupText:
		return fmt.Errorf("a group message is 1 to %d bytes", maxGroupText)
	case b.ReplyTo != "" && !isMessageID(b.ReplyTo):
		return errors.New("reply_to is a message ID (64 hex digits)")
	case len(b.Mentions) > maxMentions:
		return fmt.Errorf("at most %d mentions", maxMentions)
	case b.Close != "" && !isMessageID(b.Close):
		return errors.New("a close names a poll's message ID")
	case b.Fwd != nil && (b.Text == "" || b.Fwd.check() != nil):
		return errors.New("a forward is a text with its origin")
	case b.Result != nil && (b.Close == "" || len(b.Result.Votes) > chat.MaxPollOptions || !b.Result.fits(len(b.Result.Votes), true)):
		return errors.New("a result is a close's count: at most 10 options, none above the voters")
	case b.DeleteFile != "" && !isMessageID(b.DeleteFile):
		return errors.New("a file deletion names a message ID")
	case b.File != nil:
		if _, err := b.File.check(); err != nil {
			return err
		}
	case b.Call != nil:
		if err := b.Call.check(); err != nil {
			return err
		}
	case b.Info != nil && len(b.Info.Key) != chacha20poly1305.KeySize:
		return errors.New("an info key is 32 bytes")
	}
	for _, m := range b.Mentions {
		if _, err := identity.ParseAccountID(m); err != nil {
			return fmt.Errorf("a mention is not an account ID: %w", err)
		}
	}
	if p := b.Poll; p != nil {
		if q := strings.TrimSpace(p.Question); q == "" || len(p.Question) > chat.MaxPollQuestion {
			return fmt.Errorf("a poll's question is 1 to %d bytes", chat.MaxPollQuestion)
		}
		if len(p.Options) < 2 || len(p.Options) > chat.MaxPollOptions {
			return fmt.Errorf("a poll has 2 to %d options", chat.MaxPollOptions)
		}
		for _, o := range p.Options {
			if strings.TrimSpace(o) == "" || len(o) > chat.MaxPollOption {
				return fmt.Errorf("a poll's option is 1 to %d bytes", chat.MaxPollOption)
			}
		}
	}
	if v := b.Vote; v != nil {
		if !isMessageID(v.Poll) {
			return errors.New("a vote names a poll's message ID")
		}
		if len(v.Options) > chat.MaxPollOptions {
			return fmt.Errorf("a vote picks at most %d options", chat.MaxPollOptions)
		}
		seen := map[int]bool{}
		for _, o := range v.Options {
			if o < 0 || o >= chat.MaxPollOptions || seen[o] {
				return errors.New("a vote's options are distinct indexes")
			}
			seen[o] = true
		}
	}
	return nil
}

func (gm *groupMessage) setBody(b *groupBody) {
	gm.Text, gm.ReplyTo, gm.Mentions, gm.Poll, gm.Vote, gm.Close, gm.Deletes = b.Text, b.ReplyTo, b.Mentions, b.Poll, b.Vote, b.Close, b.DeleteFile
	gm.Result, gm.Fwd = b.Result, b.Fwd
	if b.File != nil {
		if m, err := b.File.check(); err == nil {
			gm.File = b.File.info(m)
		}
	}
	gm.notKept = b.Info != nil
	if b.Call != nil {
		gm.notKept = b.Call.Action != callStart
		if !gm.notKept {
			gm.CallID = b.Call.ID
		}
	}
}

// shown reports whether a message is listed (texts and polls; votes and
// closes only change a poll's results).
func (gm *groupMessage) shown() bool {
	return gm.Vote == nil && gm.Close == "" && gm.Deletes == "" && !gm.notKept
}

// PostGroup posts text to a group, optionally as a reply; @alias in the
// text mentions a member by the name this node knows it by.
func (n *Node) PostGroup(ctx context.Context, group string, post chat.GroupPost) (chat.GroupMessage, error) {
	if post.Text == "" || len(post.Text) > maxGroupText {
		return chat.GroupMessage{}, fmt.Errorf("%w: a group message is 1 to %d bytes", chat.ErrInvalid, maxGroupText)
	}
	body := groupBody{Text: post.Text, ReplyTo: strings.ToLower(post.ReplyTo)}
	return n.postGroup(ctx, group, &body, func(tx *storage.Txn, st *groupstate.State) error {
		if body.ReplyTo != "" {
			if ok, err := n.holdsGroupMessage(tx, st.Group, body.ReplyTo); err != nil || !ok {
				if err != nil {
					return err
				}
				return fmt.Errorf("%w: no message %s in this group", chat.ErrInvalid, body.ReplyTo)
			}
		}
		m, err := n.mentions(tx, st, post.Text)
		body.Mentions = m
		return err
	})
}

// holdsGroupMessage reports whether the node holds a group message.
func (n *Node) holdsGroupMessage(tx *storage.Txn, gid groupstate.GroupID, id string) (bool, error) {
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 32 {
		return false, nil
	}
	return tx.Has(n.st.groupSeen, groupSeenKey(gid, raw))
}

// mentions resolves the @names of text among a group's members: this
// account's name and the aliases of the members it knows.
func (n *Node) mentions(tx *storage.Txn, st *groupstate.State, text string) ([]string, error) {
	names := map[string]identity.AccountID{}
	self := n.keys.account.ID()
	for a := range st.Members {
		if a == self {
			names[strings.ToLower(n.keys.name)] = a
			continue
		}
		c, err := n.st.getContact(tx, a)
		if errors.Is(err, chat.ErrUnknownContact) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c.Name != "" {
			names[strings.ToLower(c.Name)] = a
		}
	}
	var out []string
	for _, word := range strings.FieldsFunc(text, unicode.IsSpace) {
		if !strings.HasPrefix(word, "@") {
			continue
		}
		name := strings.ToLower(strings.TrimRightFunc(word[1:], func(r rune) bool { return unicode.IsPunct(r) }))
		if a, ok := names[name]; ok && !slices.Contains(out, a.String()) && len(out) < maxMentions {
			out = append(out, a.String())
		}
	}
	return out, nil
}

// CreatePoll posts a poll.
func (n *Node) CreatePoll(ctx context.Context, group string, spec chat.PollSpec) (chat.GroupMessage, error) {
	body := groupBody{Poll: &pollBody{Question: strings.TrimSpace(spec.Question), Options: spec.Options, Multiple: spec.Multiple}}
	m, err := n.postGroup(ctx, group, &body, nil)
	if err != nil {
		return m, err
	}
	return m, nil
}

// VotePoll votes in a poll (options by index, from 0; none takes the vote
// back); ClosePoll closes one (its creator only).
func (n *Node) VotePoll(ctx context.Context, group, poll string, options []int) (chat.Poll, error) {
	poll = strings.ToLower(poll)
	body := groupBody{Vote: &voteBody{Poll: poll, Options: options}}
	return n.pollAction(ctx, group, poll, &body, func(p *chat.Poll, _ bool) error {
		if p.Closed {
			return fmt.Errorf("%w: the poll is closed", chat.ErrInvalid)
		}
		if !p.Multiple && len(options) > 1 {
			return fmt.Errorf("%w: this poll takes one option", chat.ErrInvalid)
		}
		for _, o := range options {
			if o < 0 || o >= len(p.Options) {
				return fmt.Errorf("%w: the poll has options 0 to %d", chat.ErrInvalid, len(p.Options)-1)
			}
		}
		return nil
	})
}

// ClosePoll closes a poll this account created, with its count as this
// node holds it: the results every member shows from then on.
func (n *Node) ClosePoll(ctx context.Context, group, poll string) (chat.Poll, error) {
	poll = strings.ToLower(poll)
	body := groupBody{Close: poll}
	return n.pollAction(ctx, group, poll, &body, func(p *chat.Poll, mine bool) error {
		switch {
		case !mine:
			return fmt.Errorf("%w: only the poll's creator closes it", chat.ErrInvalid)
		case p.Closed:
			return fmt.Errorf("%w: the poll is closed already", chat.ErrInvalid)
		}
		body.Result = &pollResult{Voters: p.Voters}
		for _, o := range p.Options {
			body.Result.Votes = append(body.Result.Votes, o.Votes)
		}
		return nil
	})
}

// pollAction posts body (sealed after check, which may complete it)
// about poll, if check passes on the poll as this node holds it.
func (n *Node) pollAction(ctx context.Context, group, poll string, body *groupBody, check func(*chat.Poll, bool) error) (chat.Poll, error) {
	_, err := n.postGroup(ctx, group, body, func(tx *storage.Txn, st *groupstate.State) error {
		p, creator, err := n.pollView(tx, st.Group, poll)
		if err != nil {
			return err
		}
		return check(p, creator == n.keys.account.ID())
	})
	if err != nil {
		return chat.Poll{}, err
	}
	return n.GroupPoll(ctx, group, poll)
}

// GroupPoll returns a poll with its results.
func (n *Node) GroupPoll(_ context.Context, group, poll string) (chat.Poll, error) {
	var out chat.Poll
	err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		p, _, err := n.pollView(tx, l.Group(), strings.ToLower(poll))
		if err != nil {
			return err
		}
		out = *p
		return nil
	})
	return out, err
}

// pollView counts a poll's votes from the group's messages.
func (n *Node) pollView(tx *storage.Txn, gid groupstate.GroupID, poll string) (*chat.Poll, identity.AccountID, error) {
	t := newTally()
	if err := n.eachGroupMessage(tx, gid, func(gm *groupMessage) { t.add(gm) }); err != nil {
		return nil, identity.AccountID{}, err
	}
	ps := t.polls[poll]
	if ps == nil || ps.body == nil {
		return nil, identity.AccountID{}, fmt.Errorf("%w: no poll %s in this group", chat.ErrInvalid, poll)
	}
	return t.view(poll, n.keys.account.ID()), ps.creator, nil
}

func (n *Node) eachGroupMessage(tx *storage.Txn, gid groupstate.GroupID, fn func(*groupMessage)) error {
	return tx.Iterate(n.st.groupMsgs, gid[:], func(_, v []byte) error {
		var gm groupMessage
		if err := json.Unmarshal(v, &gm); err != nil {
			return err
		}
		fn(&gm)
		return nil
	})
}

// tally counts polls' votes: while a poll is open, each account's latest
// vote (by its sending time); once closed, the close's result (a close
// without one, from before results: the votes sent before it).
type tally struct {
	polls map[string]*pollState
}

type pollState struct {
	body     *pollBody
	creator  identity.AccountID
	closedAt int64 // 0: open
	closes   []closeRec
	votes    map[identity.AccountID]vote
}

type vote struct {
	at      int64
	options []int
}

func newTally() *tally { return &tally{polls: map[string]*pollState{}} }

func (t *tally) state(id string) *pollState {
	ps := t.polls[id]
	if ps == nil {
		ps = &pollState{votes: map[identity.AccountID]vote{}}
		t.polls[id] = ps
	}
	return ps
}

func (t *tally) add(gm *groupMessage) {
	switch {
	case gm.Poll != nil:
		ps := t.state(gm.ID)
		ps.body, ps.creator = gm.Poll, gm.From
	case gm.Vote != nil:
		ps := t.state(gm.Vote.Poll)
		if v, ok := ps.votes[gm.From]; !ok || gm.SentAt >= v.at {
			ps.votes[gm.From] = vote{gm.SentAt, gm.Vote.Options}
		}
	case gm.Close != "":
		ps := t.state(gm.Close)
		// Only the creator's close counts; which account that is is
		// known once the poll is, so closes are kept per sender.
		ps.closes = append(ps.closes, closeRec{gm.From, gm.SentAt, gm.Result})
	}
}

type closeRec struct {
	from   identity.AccountID
	at     int64
	result *pollResult
}

func (t *tally) view(id string, self identity.AccountID) *chat.Poll {
	ps := t.polls[id]
	if ps == nil || ps.body == nil {
		return nil
	}
	p := &chat.Poll{ID: id, Question: ps.body.Question, Multiple: ps.body.Multiple, MyVotes: []int{}}
	var result *pollResult
	for _, c := range ps.closes {
		if c.from == ps.creator && (ps.closedAt == 0 || c.at < ps.closedAt) {
			ps.closedAt, result = c.at, c.result
		}
	}
	p.Closed = ps.closedAt != 0
	for _, o := range ps.body.Options {
		p.Options = append(p.Options, chat.PollOption{Text: o})
	}
	final := result != nil && result.fits(len(p.Options), ps.body.Multiple)
	if final {
		p.Voters = result.Voters
		for i, v := range result.Votes {
			p.Options[i].Votes = v
		}
	}
	for a, v := range ps.votes {
		if p.Closed && v.at > ps.closedAt {
			continue
		}
		if len(v.options) == 0 || (!ps.body.Multiple && len(v.options) > 1) {
			continue
		}
		valid := true
		for _, o := range v.options {
			valid = valid && o < len(p.Options)
		}
		if !valid {
			continue
		}
		if a == self {
			p.MyVotes = slices.Clone(v.options)
		}
		if final {
			continue
		}
		p.Voters++
		for _, o := range v.options {
			p.Options[o].Votes++
		}
	}
	return p
}

// PinGroupMessage pins (or unpins) a message: an entry in the group's
// log, with the right to pin (groupstate.PermPin; admins always).
func (n *Node) PinGroupMessage(_ context.Context, group, message string, pin bool) (chat.Group, error) {
	message = strings.ToLower(message)
	if !isMessageID(message) {
		return chat.Group{}, fmt.Errorf("%w: a message ID is 64 hex digits", chat.ErrInvalid)
	}
	var ref [32]byte
	_, _ = hex.Decode(ref[:], []byte(message))
	return n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		pinned := slices.Contains(l.State().Pins, ref)
		switch {
		case pin && pinned:
			return nil, fmt.Errorf("%w: the message is pinned already", chat.ErrInvalid)
		case !pin && !pinned:
			return nil, fmt.Errorf("%w: the message is not pinned", chat.ErrInvalid)
		case pin:
			ok, err := n.holdsGroupMessage(tx, l.Group(), message)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("%w: no message %s in this group", chat.ErrInvalid, message)
			}
			return []groupstate.Change{{Kind: groupstate.KindPin, Ref: ref}}, nil
		}
		return []groupstate.Change{{Kind: groupstate.KindUnpin, Ref: ref}}, nil
	})
}

// groupMessageEvents returns the events of a message just taken: the
// message (or, for a vote or a close, its poll with new results) and a
// mention of this account.
func (n *Node) groupMessageEvents(gid groupstate.GroupID, gm groupMessage) []chat.Event {
	if gm.Deletes != "" {
		return gm.events
	}
	if !gm.shown() {
		poll := gm.Close
		if gm.Vote != nil {
			poll = gm.Vote.Poll
		}
		var ev []chat.Event
		_ = n.db.View(func(tx *storage.Txn) error {
			var pm *groupMessage
			t := newTally()
			err := n.eachGroupMessage(tx, gid, func(m *groupMessage) {
				t.add(m)
				if m.ID == poll {
					c := *m
					pm = &c
				}
			})
			if err == nil && pm != nil {
				ev = append(ev, chat.Event{Type: chat.EventGroupPoll, Group: ptr(n.groupMessageView(gid, *pm, t))})
			}
			return err
		})
		return ev
	}
	v := n.groupMessageView(gid, gm, nil)
	out := []chat.Event{{Type: chat.EventGroupMessage, Group: &v}}
	if v.MentionsMe {
		out = append(out, chat.Event{Type: chat.EventGroupMention, Group: &v})
	}
	return out
}

// GroupMessages lists a group's messages (texts and polls, with their
// results), oldest first.
func (n *Node) GroupMessages(_ context.Context, group string) ([]chat.GroupMessage, error) {
	out := []chat.GroupMessage{}
	err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		gid := l.Group()
		var shown []groupMessage
		t := newTally()
		if err := n.eachGroupMessage(tx, gid, func(gm *groupMessage) {
			t.add(gm)
			if gm.shown() {
				shown = append(shown, *gm)
			}
		}); err != nil {
			return err
		}
		for _, gm := range shown {
			out = append(out, n.groupMessageView(gid, gm, t))
		}
		return nil
	})
	return out, err
}

func (n *Node) groupMessageView(gid groupstate.GroupID, gm groupMessage, t *tally) chat.GroupMessage {
	self := n.keys.account.ID()
	v := chat.GroupMessage{ID: gm.ID, Group: hex.EncodeToString(gid[:]), From: gm.From.String(), Text: gm.Text,
		SentAt: time.UnixMilli(gm.SentAt).UTC(), Outgoing: gm.From == self, ReplyTo: gm.ReplyTo, Mentions: gm.Mentions, File: gm.File,
		CallID: gm.CallID, Forwarded: gm.Fwd.view()}
	v.MentionsMe = !v.Outgoing && slices.Contains(gm.Mentions, self.String())
	if v.Outgoing {
		v.FromName, v.FromContact = n.keys.name, true
	} else if c, err := n.knownAccount(gm.From); err == nil && c != nil {
		v.FromName, v.FromContact = c.shownName()
	}
	if gm.Poll != nil {
		if t == nil {
			t = newTally()
			t.add(&gm)
		}
		v.Poll = t.view(gm.ID, self)
		v.Text = gm.Poll.Question
	}
	return v
}
