package chat

import "time"

// Group is a group as the API shows it.
type Group struct {
	ID    string `json:"group_id"` // 64 hex digits: the hash of the group's creation entry
	Title string `json:"title"`
	// Description is the group's description, empty if it has none.
	Description string `json:"description,omitempty"`
	// Photo names the group's photo (its content hash, 64 hex digits)
	// once it is on this device (fetched by the node unasked); empty if
	// the group has none this node can read. GET
	// /v1/groups/{group}/photo has the image.
	Photo   string        `json:"photo,omitempty"`
	Role    string        `json:"role"` // this account's: owner, admin, member; "invited" for an invitation
	Members []GroupMember `json:"members"`
	Pinned  []string      `json:"pinned,omitempty"` // IDs of pinned messages, oldest pin first
	Banned  []string      `json:"banned,omitempty"` // accounts banned from the group
	// Channel: only admins post; Subscribers counts its members.
	Channel     bool `json:"channel,omitempty"`
	Subscribers int  `json:"subscribers,omitempty"`
	// PublicName is the name this node published for it (join with @name).
	PublicName string `json:"public_name,omitempty"`
	// InvitedMembers: for an invitation to a group whose log is long
	// (kept as its end until accepted, so Members has only the inviter),
	// how many members the inviter said it has.
	InvitedMembers int `json:"invited_members,omitempty"`
	// CallID is the call running in the group, as this node knows
	// (GET /v1/groups/{group}/call has it).
	CallID string `json:"call_id,omitempty"`
}

// GroupInfoChange is the body of POST /v1/groups/{group}/info: a field
// left out (null) stays as it is; an empty description removes it.
type GroupInfoChange struct {
	Title       *string `json:"title,omitempty"`
	Description *string `json:"description,omitempty"`
}

// GroupMember is one member of a group.
type GroupMember struct {
	AccountID string `json:"account_id"`
	// Name is a contact's local alias, else the name the account gives
	// itself (its device list's; Contact false: not checked by anyone).
	Name    string `json:"name"`
	Contact bool   `json:"contact"` // an accepted contact (or this account)
	Role    string `json:"role"`    // owner, admin, member
}

// GroupMessage is a message of a group as the API shows it.
type GroupMessage struct {
	ID       string `json:"id"`                  // hex of the hash of its signed envelope
	Group    string `json:"group"`               // the group's ID
	From     string `json:"from"`                // sender account ID
	FromName string `json:"from_name,omitempty"` // as Member.Name
	// FromContact: the sender is an accepted contact (or this account);
	// else FromName is the name it gives itself.
	FromContact bool      `json:"from_contact"`
	Outgoing    bool      `json:"outgoing"`
	Text        string    `json:"text"`
	SentAt      time.Time `json:"sent_at"` // sender's clock
	// ReplyTo is the ID of the message this one answers.
	ReplyTo string `json:"reply_to,omitempty"`
	// Mentions are the accounts the text names with @alias;
	// MentionsMe is set when this account is one of them.
	Mentions   []string `json:"mentions,omitempty"`
	MentionsMe bool     `json:"mentions_me,omitempty"`
	// Poll is set for a poll (Text is then its question).
	Poll *Poll `json:"poll,omitempty"`
	// File is set on a message that carries a file (Text is its caption).
	File *FileInfo `json:"file,omitempty"`
	// CallID is set on a message that started a group call.
	CallID string `json:"call_id,omitempty"`
	// Forwarded is set on a forward (see Message.Forwarded).
	Forwarded *Forward `json:"forwarded,omitempty"`
}

// Forward is where a forwarded message came from, as the account that
// forwarded it states it: nothing else vouches for it (the copy is that
// account's message, signed by it; the original's signature is not
// carried). A client shows it as a forward, apart from the text, so
// that typed words are never taken for one.
//
// It names no group or message ID: a group's ID lets anyone fetch its
// log (every member) from a relay, and a message's ID lets anyone who
// has the group's ID find which device sent it (an outside review did
// both from a forward).
type Forward struct {
	From   string    `json:"from"`             // the source chat's title (a group's or channel's)
	Author string    `json:"author,omitempty"` // the original's sender (account ID): a group's post only
	SentAt time.Time `json:"sent_at,omitzero"` // the original's sending time
}

// MaxForwardFrom bounds a Forward's From, in bytes.
const MaxForwardFrom = 256

// Invite is an invite link to a group.
type Invite struct {
	Link    string     `json:"link"` // peergram://join/…
	Group   string     `json:"group_id"`
	Expires *time.Time `json:"expires,omitempty"`
}

// GroupPost is what a member posts: text, optionally a reply.
type GroupPost struct {
	Text    string `json:"text"`
	ReplyTo string `json:"reply_to,omitempty"`
}

// PollSpec is a new poll.
type PollSpec struct {
	Question string   `json:"question"`
	Options  []string `json:"options"`
	Multiple bool     `json:"multiple,omitempty"` // voters may pick several options
}

// Poll is a poll with its results as this node has counted them.
type Poll struct {
	ID       string       `json:"id"` // the poll message's ID
	Question string       `json:"question"`
	Options  []PollOption `json:"options"`
	Multiple bool         `json:"multiple"`
	Closed   bool         `json:"closed"`
	Voters   int          `json:"voters"`
	MyVotes  []int        `json:"my_votes"` // this account's choice (option indexes, from 0)
}

// PollOption is one answer and its votes.
type PollOption struct {
	Text  string `json:"text"`
	Votes int    `json:"votes"`
}

// Poll bounds.
const (
	MaxPollQuestion = 300
	MaxPollOptions  = 10
	MaxPollOption   = 100
)
