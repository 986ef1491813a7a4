package chat

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/peergram/peergram/calls"
)

// MessageID names a message end to end (the sealed envelope's message ID).
// It is given its own type so that API signatures say what they take.
type MessageID [16]byte

// String is the lowercase hex form used in the API.
func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// ParseMessageID parses String's form.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("chat: bad message ID %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// Status is a message's delivery state. Values only move forward:
// pending → sent → delivered → read. Append-only.
type Status string

// Delivery states.
const (
	StatusPending   Status = "pending"   // stored in the outbox, not yet handed to a peer or relay
	StatusSent      Status = "sent"      // accepted by the recipient device or a relay mailbox
	StatusDelivered Status = "delivered" // the recipient device acknowledged it (signed receipt)
	StatusRead      Status = "read"      // the recipient user has seen it (signed receipt)
	StatusReceived  Status = "received"  // an incoming message not yet seen by the local user
	StatusSeen      Status = "seen"      // an incoming message the local user has seen
	StatusFailed    Status = "failed"    // an outgoing message that can never be delivered (see Message.Error)
)

var rank = map[Status]int{StatusPending: 0, StatusSent: 1, StatusDelivered: 2, StatusRead: 3, StatusReceived: 0, StatusSeen: 1, StatusFailed: 1}

// WarnTimestamp is Message.Warning for an incoming message whose sender
// timestamp was outside the accepted window (10 minutes ahead, 45 days
// behind the local clock): one of the two clocks is wrong, or the message
// was held back. The message is kept and shown, flagged.
const WarnTimestamp = "timestamp outside the accepted window: the sender's clock or ours may be wrong"

// Advance returns the later of two statuses, so that a late or repeated
// receipt never moves a message backwards.
func Advance(cur, next Status) Status {
	if rank[next] > rank[cur] {
		return next
	}
	return cur
}

// Contact is a person the user can write to (or, in the request list,
// one who wrote first).
type Contact struct {
	AccountID string    `json:"account_id"`
	Name      string    `json:"name"`         // local alias
	Display   string    `json:"display_name"` // the name the account gives itself (signed, from its directory)
	Link      string    `json:"link"`
	Devices   int       `json:"devices"` // devices known from the contact's signed device list
	Safety    string    `json:"safety_number"`
	Added     time.Time `json:"added_at"`
}

// Message is one message of a 1:1 chat, as the API shows it.
type Message struct {
	ID       string    `json:"id"`
	Chat     string    `json:"chat"` // the contact's account ID
	From     string    `json:"from"` // sender account ID
	Outgoing bool      `json:"outgoing"`
	Text     string    `json:"text"`
	SentAt   time.Time `json:"sent_at"`     // sender's clock
	Received time.Time `json:"received_at"` // local clock; zero for outgoing
	Status   Status    `json:"status"`
	Seq      uint64    `json:"seq"` // sender's per-chat sequence number, for ordering
	// FromName is the sender's alias, or for a sender who is not a contact
	// the name it gives itself; FromContact says which.
	FromName    string `json:"from_name,omitempty"`
	FromContact bool   `json:"from_contact"`
	Warning     string `json:"warning,omitempty"` // see WarnTimestamp
	Error       string `json:"error,omitempty"`   // why a failed message failed
	// File is set on a message that carries a file (Text is its caption).
	File *FileInfo `json:"file,omitempty"`
	// Forwarded is set on a forward: a copy of another chat's message,
	// its origin as the forwarding account states it (Text is the copy).
	Forwarded *Forward `json:"forwarded,omitempty"`
	// Call is set on a call's entry in the chat's history (ID is the
	// call's, Text says what happened: "Outgoing call · 0:42",
	// "Missed call"). Entries are this device's call history, not
	// messages: nothing is sent for them.
	Call *calls.Call `json:"call,omitempty"`
}

// FileInfo is what a message says of the file it carries.
type FileInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Mime string `json:"mime"`
	// Kind is photo, video, audio, voice, sticker, document, archive or
	// file; Width and Height (pixels) and Duration (seconds) are set when
	// known; HasThumb when the message carries a thumbnail (see File).
	Kind     string  `json:"kind"`
	Width    int     `json:"width,omitempty"`
	Height   int     `json:"height,omitempty"`
	Duration float64 `json:"duration,omitempty"`
	HasThumb bool    `json:"has_thumb,omitempty"`
}

// File states.
const (
	FileUploading   = "uploading"   // sent: its chunks wait for the recipient or a relay
	FileUploaded    = "uploaded"    // sent: every chunk is on a relay or was fetched by the recipient
	FileAvailable   = "available"   // received: not downloaded yet
	FileDownloading = "downloading" // received: a download is under way (or was cut and resumes)
	FileDownloaded  = "downloaded"  // received: complete and verified
	FileFailed      = "failed"
	FileDeleted     = "deleted" // only in events: the file is gone from the chat
)

// FileSend is a request to send a file.
type FileSend struct {
	Chat    string `json:"chat"` // a contact (alias or account ID)
	Path    string `json:"path"` // absolute path on the daemon's machine
	Caption string `json:"caption,omitempty"`
	// AsFile sends the original bytes: no photo compression, no sticker
	// or voice message.
	AsFile bool `json:"as_file,omitempty"`
	// ID, if set (32 hex digits), is the new message's ID: a client that
	// draws it can follow the file's progress events before the answer.
	ID string `json:"id,omitempty"`
}

// File is a file of a chat (sent or received), as `peergram files` lists
// it.
type File struct {
	ID       string    `json:"id"` // the message's ID
	Chat     string    `json:"chat"`
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Mime     string    `json:"mime"`
	Kind     string    `json:"kind"`
	From     string    `json:"from"`
	Outgoing bool      `json:"outgoing"`
	SentAt   time.Time `json:"sent_at"`
	State    string    `json:"state"`
	// Thumb is a small JPEG (photos, stickers, videos with ffmpeg).
	Thumb []byte `json:"thumb,omitempty"`
	// Width, Height, Duration as in FileInfo.
	Width    int     `json:"width,omitempty"`
	Height   int     `json:"height,omitempty"`
	Duration float64 `json:"duration,omitempty"`
	Done     int64   `json:"done"`           // bytes verified (a download) or handed on (an upload)
	Path     string  `json:"path,omitempty"` // where a downloaded file was written
	Error    string  `json:"error,omitempty"`
}

// Less orders a chat: by sender timestamp, then sender sequence, then ID.
func Less(a, b Message) bool {
	if !a.SentAt.Equal(b.SentAt) {
		return a.SentAt.Before(b.SentAt)
	}
	if a.Seq != b.Seq {
		return a.Seq < b.Seq
	}
	return a.ID < b.ID
}

// EventType names an event on the API's event stream. Append-only.
type EventType string

// Event types.
const (
	EventMessage EventType = "message" // a new incoming or outgoing message
	EventStatus  EventType = "status"  // a message's status changed
	// EventFile: a file's state or progress changed (File set).
	EventFile EventType = "file"
	// EventCall: a call rings (incoming) or changes state (Call set).
	EventCall EventType = "call"
	// EventGroupCall: a call started in a group, or the call this
	// device is in changed (joined, roster, speakers, mute, left).
	EventGroupCall EventType = "group_call"
	// EventCallSignal: the peer's signal for a call whose media runs in
	// the web client (Signal set): an answer, an ICE candidate, a
	// renegotiation.
	EventCallSignal EventType = "call_signal"
	// EventGroupCallOffer: a new offer on the bridge of the group call
	// the web client takes part in (BridgeOffer set): a participant's
	// track came or went; the client answers it.
	EventGroupCallOffer EventType = "group_call_offer"
	// EventPrefs: the web client's shared preferences changed (GET
	// /v1/web/prefs has them): another browser pinned or archived a chat.
	EventPrefs EventType = "prefs"
	// EventGroup: a group's state changed (members, roles, title, pins,
	// invite links; this node joined or left it). GroupID names it; GET
	// /v1/groups/{group} has the new state.
	EventGroup EventType = "group"
	// EventGroupGone: a group is no longer listed (GroupID): an
	// invitation declined. Nothing of it is left to GET.
	EventGroupGone EventType = "group_gone"
	// EventGroupMessage is a new message in a group (Event.Group).
	EventGroupMessage EventType = "group_message"
	// EventGroupMention is a new group message that mentions this
	// account (Event.Group; it comes in addition to group_message).
	EventGroupMention EventType = "group_mention"
	// EventGroupPoll is a vote or a poll's close: Event.Group is the
	// poll's message with the new results.
	EventGroupPoll EventType = "group_poll"
)

// Event is one entry of the event stream.
type Event struct {
	Type    EventType     `json:"type"`
	Message Message       `json:"message,omitzero"` // EventMessage, EventStatus
	Group   *GroupMessage `json:"group_message,omitempty"`
	File    *File         `json:"file,omitempty"` // EventFile
	Call    *calls.Call   `json:"call,omitempty"` // EventCall
	// GroupCall is set on EventGroupCall.
	GroupCall *calls.GroupCall `json:"group_call,omitempty"`
	// GroupID is set on EventGroup and EventGroupGone.
	GroupID string `json:"group_id,omitempty"`
	// Signal is set on EventCallSignal.
	Signal *calls.Signal `json:"signal,omitempty"`
	// BridgeOffer is set on EventGroupCallOffer.
	BridgeOffer *calls.BridgeOffer `json:"bridge_offer,omitempty"`
}
