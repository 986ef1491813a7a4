package chat

import "time"

// Group is a group as the API shows it.
type Group struct {
	ID      string        `json:"group_id"` // 64 hex digits: the hash of the group's creation entry
	Title   string        `json:"title"`
	Role    string        `json:"role"` // this account's: owner, admin, member
	Members []GroupMember `json:"members"`
}

// GroupMember is one member of a group.
type GroupMember struct {
	AccountID string `json:"account_id"`
	Name      string `json:"name"` // the local alias of a contact, else empty
	Role      string `json:"role"` // owner, admin, member
}

// GroupMessage is a message of a group as the API shows it.
type GroupMessage struct {
	ID       string    `json:"id"`    // hex of the hash of its signed envelope
	Group    string    `json:"group"` // the group's ID
	From     string    `json:"from"`  // sender account ID
	FromName string    `json:"from_name,omitempty"`
	Outgoing bool      `json:"outgoing"`
	Text     string    `json:"text"`
	SentAt   time.Time `json:"sent_at"` // sender's clock
}
