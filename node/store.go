package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/storage"
)

// store names the node's keyspaces and encodes its records. Keys:
//
//	meta:     "account" "device" "cert" "list" "prekeys" "p2p" "name" "chat-seq-base",
//	          sequences "chat" and "outbox" (storage.Sequence); homes made before
//	          them also hold "seq/<account>" and "outbox-seq"
//	contacts: account(32) → contactRecord (JSON)
//	sessions: see sessions.go
//	messages: account(32) || messageID(16) → messageRecord (storedMessage; binary, see records.go, or JSON if older)
//	msgstatus: account(32) || messageID(16) → status (text): a status changed after the
//	          record was written (a status change writes this, not the record)
//	outbox.q: recipient account(32) || seq(8) → job (binary, see records.go, or JSON if older)
//	outbox.sealed: job key(40) || device ID (text) → identity key(32) || envelope
//	outbox:   seq(8) → job (JSON): the layout before outbox.q, migrated at start
//	seen:     sender account(32) || messageID(16) → empty, with a TTL past the relay TTL
//	groups.log: group ID(32) || seq(8) → a crypto/groupstate entry (its encoding)
//	groups.sk:  see groupchat.go (Sender Keys chains: this device's, and other members')
//	groups.msg: group ID(32) || sent(8) || envelope hash(8) → groupMessage (JSON)
//	groups.pend: group messages held until their sender's chain arrives (groupchat.go), with a TTL
type store struct {
	db       *storage.DB
	meta     storage.Keyspace
	contacts storage.Keyspace
	sessions storage.Keyspace
	messages storage.Keyspace
	outbox   storage.Keyspace
	seen     storage.Keyspace

	sealed       storage.Keyspace
	status       storage.Keyspace
	legacyOutbox storage.Keyspace
	groupLog     storage.Keyspace
	groupKeys    storage.Keyspace
	groupMsgs    storage.Keyspace
	groupPend    storage.Keyspace
	groupSeen    storage.Keyspace // group(32) | envelope hash(32) → nothing: messages held
	groupCur     storage.Keyspace // group(32) | relay peer ID → u64: history cursor; 'S' | relay peer ID → u64: the relay's store ID
	groupInv     storage.Keyspace // group(32), or group(32) ‖ inviter(32) for a long log's end → invitation (JSON)
	groupInvFrom storage.Keyspace // sender(32) ‖ groups.inv key → nothing: whose deliveries hold the invitations; "claim" (groupinvite.go)
	groupDecl    storage.Keyspace // group(32) ‖ add entry hash(32) → nothing: adds of this account declined (DeclineGroup)
	groupUnconf  storage.Keyspace // group(32) | envelope hash(32) → posted:u64 | envelope: own posts not every home relay has confirmed
	// groupUnconfAt marks the home relays that hold an own post of
	// groupUnconf: group(32) | envelope hash(32) | relay peer ID → ().
	groupUnconfAt storage.Keyspace
	groupEpoch    storage.Keyspace // epoch keys and their grants (groupepoch.go)
	groupEpend    storage.Keyspace // group(32) | device(32) | epoch(8) | envelope hash(8) → pendingMessage: held for its epoch's key
	files         storage.Keyspace // message ID → fileRecord (files.go)
	calls         storage.Keyspace // call ID → calls.Call (JSON), its last state (calls.go)

	self identity.AccountID // the node's account, set once the keys are loaded
}

// seenTTL outlives any envelope a relay may still hold (30 days).
const seenTTL = 60 * 24 * time.Hour

func newStore(db *storage.DB) *store {
	return &store{
		db: db, meta: db.Keyspace("meta"), contacts: db.Keyspace("contacts"),
		sessions: db.Keyspace("sessions"), messages: db.Keyspace("messages"),
		outbox: db.Keyspace("outbox.q"), seen: db.Keyspace("seen"),
		sealed: db.Keyspace("outbox.sealed"), status: db.Keyspace("msgstatus"), legacyOutbox: db.Keyspace("outbox"),
		groupLog: db.Keyspace("groups.log"), groupKeys: db.Keyspace("groups.sk"), groupMsgs: db.Keyspace("groups.msg"), groupPend: db.Keyspace("groups.pend"),
		groupSeen: db.Keyspace("groups.seen"), groupCur: db.Keyspace("groups.cur"),
		groupInv: db.Keyspace("groups.inv"), groupInvFrom: db.Keyspace("groups.invfrom"), groupDecl: db.Keyspace("groups.declined"), groupUnconf: db.Keyspace("groups.unconf"), groupUnconfAt: db.Keyspace("groups.unconfat"),
		groupEpoch: db.Keyspace("groups.ek"), groupEpend: db.Keyspace("groups.epend"),
		files: db.Keyspace("files.rec"), calls: db.Keyspace("calls"),
	}
}

// keyring is the device's secret material.
type keyring struct {
	account *identity.AccountKey
	device  *identity.DeviceKey
	cert    *identity.DeviceCert
	list    *identity.DeviceList
	prekeys *pqxdh.PrekeySet
	p2p     crypto.PrivKey
	name    string
	// listChecked is when a directory last showed the node its own
	// account's list (zero: never since start).
	listChecked time.Time
}

func (s *store) putKeys(tx *storage.Txn, k *keyring) error {
	acct, err := k.account.MarshalBinary()
	if err != nil {
		return err
	}
	dev, err := k.device.MarshalBinary()
	if err != nil {
		return err
	}
	cert, err := k.cert.MarshalBinary()
	if err != nil {
		return err
	}
	list, err := k.list.MarshalBinary()
	if err != nil {
		return err
	}
	p2p, err := crypto.MarshalPrivateKey(k.p2p)
	if err != nil {
		return err
	}
	for key, val := range map[string][]byte{"account": acct, "device": dev, "cert": cert, "list": list, "p2p": p2p, "name": []byte(k.name)} {
		if err := tx.Set(s.meta, []byte(key), val); err != nil {
			return err
		}
	}
	return s.putPrekeys(tx, k.prekeys)
}

func (s *store) putPrekeys(tx *storage.Txn, p *pqxdh.PrekeySet) error {
	raw, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	return tx.Set(s.meta, []byte("prekeys"), raw)
}

func (s *store) loadKeys(tx *storage.Txn) (*keyring, error) {
	var err error
	get := func(key string) []byte {
		if err != nil {
			return nil
		}
		var v []byte
		v, err = tx.Get(s.meta, []byte(key))
		if err != nil {
			err = fmt.Errorf("node: load %s: %w", key, err)
		}
		return v
	}
	acct, dev, cert, list, pre, p2p, name := get("account"), get("device"), get("cert"), get("list"), get("prekeys"), get("p2p"), get("name")
	if err != nil {
		return nil, err
	}
	k := &keyring{name: string(name)}
	if k.account, err = identity.UnmarshalAccountKey(acct); err != nil {
		return nil, err
	}
	if k.device, err = identity.UnmarshalDeviceKey(dev); err != nil {
		return nil, err
	}
	if k.cert, err = identity.ParseDeviceCert(cert); err != nil {
		return nil, err
	}
	if k.list, err = identity.ParseDeviceList(list); err != nil {
		return nil, err
	}
	if k.prekeys, err = pqxdh.UnmarshalPrekeySet(pre); err != nil {
		return nil, err
	}
	if k.p2p, err = crypto.UnmarshalPrivateKey(p2p); err != nil {
		return nil, err
	}
	return k, nil
}

// Contact states. A record without a state predates them: a contact,
// unless it was marked unsolicited.
const (
	stateContact = "contact" // added by the user, or a request the user accepted
	stateRequest = "request" // wrote first and was not added: a message request
	stateIgnored = "ignored" // a request the user ignored: later messages are dropped
	stateNone    = "none"    // removed from the contacts; the chat stays
)

// contactRecord is an account the node knows — a contact, a message
// request, or a removed contact whose chat remains — and what the node
// knows of its devices.
type contactRecord struct {
	Account identity.AccountID `json:"account"`
	Name    string             `json:"name"`
	Added   time.Time          `json:"added"`
	State   string             `json:"state,omitempty"`
	// List is the account's signed device list (marshalled), nil until
	// fetched from a directory; ListChecked is when a directory last
	// confirmed it.
	List        []byte    `json:"list,omitempty"`
	ListChecked time.Time `json:"list_checked,omitzero"`
	// Devices holds, per device, its directory record and an unused
	// prekey bundle for starting a session.
	Devices map[string]deviceInfo `json:"devices,omitempty"`
	// Unsolicited is the state of records written before State existed.
	Unsolicited bool `json:"unsolicited,omitempty"`
}

// state returns the record's contact state.
func (c *contactRecord) state() string {
	switch {
	case c.State != "":
		return c.State
	case c.Unsolicited:
		return stateRequest
	}
	return stateContact
}

// accepted reports whether the user wants this account's messages with
// receipts: a contact.
func (c *contactRecord) accepted() bool { return c.state() == stateContact }

type deviceInfo struct {
	Record []byte `json:"record,omitempty"` // directory.Record, marshalled
	Bundle []byte `json:"bundle,omitempty"` // pqxdh.Bundle taken from a directory; cleared once used
	// Token is the device's delivery token, as it sent it inside the
	// session: deposits to its mailbox carry it (mailbox.DepositWithToken).
	Token string `json:"token,omitempty"`
}

func (c *contactRecord) deviceList() (*identity.DeviceList, error) {
	if c.List == nil {
		return nil, nil
	}
	return identity.ParseDeviceList(c.List)
}

// displayName is the name the account gives itself: the name in the
// certificate of its oldest listed device (signed by the account and
// published in its directory). Empty when unknown.
// shownName is how c is named to the user: its alias if it is an
// accepted contact with one (contact true), else the name it gives itself.
func (c *contactRecord) shownName() (name string, contact bool) {
	if c.accepted() && c.Name != "" {
		return c.Name, true
	}
	return c.displayName(), c.accepted()
}

func (c *contactRecord) displayName() string {
	l, err := c.deviceList()
	if err != nil || l == nil || len(l.Devices) == 0 {
		return ""
	}
	first := l.Devices[0]
	for _, d := range l.Devices[1:] {
		if d.Created < first.Created {
			first = d
		}
	}
	return first.Name
}

func (c *contactRecord) record(dev identity.DeviceID) *directory.Record {
	d, ok := c.Devices[dev.String()]
	if !ok || d.Record == nil {
		return nil
	}
	r, err := directory.ParseRecord(d.Record)
	if err != nil {
		return nil
	}
	return r
}

func (s *store) getContact(tx *storage.Txn, a identity.AccountID) (*contactRecord, error) {
	raw, err := tx.Get(s.contacts, a[:])
	if errors.Is(err, storage.ErrNotFound) {
		return nil, chat.ErrUnknownContact
	}
	if err != nil {
		return nil, err
	}
	var c contactRecord
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("node: contact record: %w", err)
	}
	return &c, nil
}

func (s *store) putContact(tx *storage.Txn, c *contactRecord) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return tx.Set(s.contacts, c.Account[:], raw)
}

func (s *store) allContacts(tx *storage.Txn) ([]*contactRecord, error) {
	var out []*contactRecord
	err := tx.Iterate(s.contacts, nil, func(_, val []byte) error {
		var c contactRecord
		if err := json.Unmarshal(val, &c); err != nil {
			return err
		}
		out = append(out, &c)
		return nil
	})
	return out, err
}

// messageRecord is a stored message.
type messageRecord struct {
	chat.Message
	// Pending lists devices whose copy is not yet accepted (outgoing).
	Pending []string `json:"pending,omitempty"`
}

func messageKey(a identity.AccountID, id chat.MessageID) []byte {
	return append(append(make([]byte, 0, 48), a[:]...), id[:]...)
}

// storedMessage is a message record as stored: what the key says (the
// chat's account) and what the node knows (its own account, the sender of
// outgoing messages) left out, zero values omitted. Records written
// before it, with every field, read the same.
type storedMessage struct {
	ID          string      `json:"id"`
	Chat        string      `json:"chat,omitempty"`
	From        string      `json:"from,omitempty"`
	Outgoing    bool        `json:"outgoing,omitempty"`
	Text        string      `json:"text"`
	SentAt      time.Time   `json:"sent_at"`
	Received    time.Time   `json:"received_at,omitzero"`
	Status      chat.Status `json:"status"`
	Seq         uint64      `json:"seq,omitempty"`
	FromName    string      `json:"from_name,omitempty"`
	FromContact bool        `json:"from_contact,omitempty"`
	Warning     string      `json:"warning,omitempty"`
	Error       string      `json:"error,omitempty"`
	Pending     []string    `json:"pending,omitempty"`
	// File is what the message says of the file it carries.
	File *chat.FileInfo `json:"file,omitempty"`
	// Forwarded: a forward's origin.
	Forwarded *chat.Forward `json:"forwarded,omitempty"`
}

// decodeMessage reads a record of chat a.
func (s *store) decodeMessage(a identity.AccountID, raw []byte) (*messageRecord, error) {
	sm, err := decodeStoredMessage(raw)
	if err != nil {
		return nil, err
	}
	m := &messageRecord{Message: chat.Message{
		ID: sm.ID, Chat: sm.Chat, From: sm.From, Outgoing: sm.Outgoing, Text: sm.Text, SentAt: sm.SentAt,
		Received: sm.Received, Status: sm.Status, Seq: sm.Seq, FromName: sm.FromName, FromContact: sm.FromContact,
		Warning: sm.Warning, Error: sm.Error, File: sm.File, Forwarded: sm.Forwarded,
	}, Pending: sm.Pending}
	if m.Chat == "" {
		m.Chat = a.String()
	}
	if m.From == "" && m.Outgoing {
		m.From = s.self.String()
	}
	return m, nil
}

func (s *store) getMessage(tx *storage.Txn, a identity.AccountID, id chat.MessageID) (*messageRecord, error) {
	key := messageKey(a, id)
	raw, err := tx.Get(s.messages, key)
	if err != nil {
		return nil, err
	}
	m, err := s.decodeMessage(a, raw)
	if err != nil {
		return nil, err
	}
	switch st, err := tx.Get(s.status, key); {
	case err == nil:
		m.Status = chat.Status(st)
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}
	return m, nil
}

// currentStatus returns the status of message id of chat a: its status
// record if it has one (a send writes it with the message, so this is one
// lookup), else the message record's. storage.ErrNotFound if there is no
// such message.
func (s *store) currentStatus(tx *storage.Txn, a identity.AccountID, id chat.MessageID) (chat.Status, error) {
	key := messageKey(a, id)
	st, err := tx.Get(s.status, key)
	if err == nil {
		return chat.Status(st), nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	raw, err := tx.Get(s.messages, key)
	if err != nil {
		return "", err
	}
	sm, err := decodeStoredMessage(raw)
	if err != nil {
		return "", err
	}
	return sm.Status, nil
}

// setStatus stores the status of message id of chat a.
func (s *store) setStatus(tx *storage.Txn, a identity.AccountID, id chat.MessageID, st chat.Status) error {
	return tx.Set(s.status, messageKey(a, id), []byte(st))
}

// putStatus stores m's status alone: a status change (sent, delivered,
// read, seen) writes a few bytes instead of the whole record.
func (s *store) putStatus(tx *storage.Txn, a identity.AccountID, m *messageRecord) error {
	id, err := chat.ParseMessageID(m.ID)
	if err != nil {
		return err
	}
	return tx.Set(s.status, messageKey(a, id), []byte(m.Status))
}

func (s *store) putMessage(tx *storage.Txn, a identity.AccountID, m *messageRecord) error {
	id, err := chat.ParseMessageID(m.ID)
	if err != nil {
		return err
	}
	sm := storedMessage{
		ID: m.ID, From: m.From, Outgoing: m.Outgoing, Text: m.Text, SentAt: m.SentAt, Received: m.Received,
		Status: m.Status, Seq: m.Seq, FromName: m.FromName, FromContact: m.FromContact, Warning: m.Warning,
		Error: m.Error, Pending: m.Pending, File: m.File, Forwarded: m.Forwarded,
	}
	if m.Chat != a.String() {
		sm.Chat = m.Chat
	}
	if m.Outgoing && m.From == s.self.String() {
		sm.From = ""
	}
	return tx.Set(s.messages, messageKey(a, id), encodeMessage(&sm))
}

func (s *store) chatMessages(tx *storage.Txn, a identity.AccountID) ([]*messageRecord, error) {
	status := map[string]chat.Status{} // by message key
	if err := tx.Iterate(s.status, a[:], func(k, v []byte) error {
		status[string(k)] = chat.Status(v)
		return nil
	}); err != nil {
		return nil, err
	}
	var out []*messageRecord
	err := tx.Iterate(s.messages, a[:], func(k, val []byte) error {
		m, err := s.decodeMessage(a, val)
		if err != nil {
			return err
		}
		if st, ok := status[string(k)]; ok {
			m.Status = st
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// nextChatSeq returns the next sequence number of our messages in the chat
// with a.
