// Package mailbox is Peergram's store-and-forward protocol: anyone may
// deposit an opaque sealed envelope for a device's mailbox on a relay, and
// the device, proving it holds the mailbox key, fetches and acknowledges
// them. It exists because circuit relay v2 limits relayed connections to
// minutes and kilobytes: messages for offline devices need their own
// protocol. The package keeps the wire codec, the Server (relay side) and
// the Client (node side) together, like net/http.
//
// Relays are untrusted. They see the recipient address, sizes, timing and
// peer IDs, never plaintext: envelopes are sealed before they are
// deposited. What a relay must not be able to do is hand one device's
// envelopes to another, so reading needs a signature by the mailbox key
// over a fresh challenge bound to the relay's peer ID.
//
// Relays are also public: anyone may deposit. What strangers must not be
// able to do is lock a relay or fill it (see "Limits").
//
// # Streams
//
// Both stream kinds use ProtocolID; the client's first frame says which.
//
// Deposit stream (long-lived, pipelined; a Client opens up to 4 per relay
// when busy, one when quiet):
//
//	client                                  relay
//	Deposit{to, id, envelope[, token, flags]} ...  ──▶   (group commit: one synced txn)
//	                               ◀──      Result{id, code, text} ... in order, or as decided if the
//	                                        first Deposit's flags allow it (unordered)
//	                               ◀──      Error{code, text}, close   (fatal only; after every other answer)
//
// Subscribe stream:
//
//	Subscribe{}                      ──▶
//	                                 ◀──    Challenge{nonce, window, maxEnvelope}
//	Auth{address, sig}               ──▶    sig = Ed25519(address key, authMessage)
//	                                 ◀──    Error{Unauthorized}, close (bad sig)
//	Tokens{tokens} (optional)        ──▶    replaces the mailbox's delivery tokens
//	                                 ◀──    Delivery{id, deposited, envelope} ... stored, in deposit order
//	                                 ◀──    Drained{}   (backlog sent; later deliveries are live pushes)
//	Ack{ids} / Nack{ids}             ──▶    at most `window` deliveries unacked at once
//	Ack{} (empty, keepalive)         ──▶
//	CloseWrite                       ──▶    relay commits pending acks, then closes
//
//	authMessage = u8(len(label)) | label | u16(len(relayID)) | relayID | nonce[32] | address[32]
//	label       = "peergram/mailbox/auth/v1"
//
// A stream must send its first frame, and a subscribe stream its Auth,
// within Config.AuthTimeout (5 s) of being opened, else the relay closes
// it; until then the relay holds a goroutine and a 512-byte buffer for it,
// nothing else. A mailbox has one subscription: a new authenticated one
// ends the one before (its unacked deliveries come again).
//
// The relay deletes an envelope only when its owner acks it; unacked and
// nacked envelopes are delivered again on the next subscription
// (at-least-once; the node dedups by message ID). An ack names envelopes
// delivered in the same subscription; other IDs are ignored. Envelopes
// also expire (see "Limits").
//
// Hand-off (live.go): a deposit for a subscribed owner that has read its
// backlog goes to the owner straight from memory; the depositor's Result
// waits for the owner's ack. The depositor's stream never waits for the
// owner: the hand-off joins the subscription's queue, and one that is not
// written within 500 ms or acked within 3 s is stored instead.
//
// # Frames
//
// Integers are big-endian; [n] is n raw bytes.
//
//	frame     = length:u32 | type:u8 | body        length = 1 + len(body)
//	Deposit   0x01  to[32] | id[16] | len:u32 | envelope [| token[16] | flags:u8]
//	Result    0x02  id[16] | code:u8 | len:u16 | text (≤512 bytes)
//	Subscribe 0x03  (empty)
//	Challenge 0x04  nonce[32] | window:u32 | maxEnvelope:u32
//	Auth      0x05  address[32] | signature[64]
//	Delivery  0x06  id[16] | deposited:u64 (unix ns) | len:u32 | envelope
//	Ack       0x07  n:u16 (≤1024) | id[16] × n
//	Nack      0x08  n:u16 (≤1024) | id[16] × n
//	Drained   0x09  (empty)
//	Error     0x0a  code:u8 | len:u16 | text (≤512 bytes)
//	Tokens    0x80  n:u8 (≤4) | token[16] × n          (optional frame)
//
// Deposit's token and flags were appended within 1.0.0: a zero token is
// none; flags bit 0 (read from the first Deposit of a stream) allows
// Results in any order, which the Client matches by ID. A 1.0.0 relay
// ignores both and answers in order; a 1.0.0 client sends neither and is
// answered in order. Tokens is an optional frame: a 1.0.0 relay skips it
// (and then knows no tokens).
//
// A frame's body is bounded: MaxEnvelopeSize + 1024 for Deposit and
// Delivery, 17 KiB for everything else. Codes are listed with Code.
//
// Version tolerance: the major version is in ProtocolID. Within it,
// receivers ignore bytes after the body fields they know (new fields are
// appended), skip unknown frame types at or above 0x80 (optional
// extensions), and treat unknown types below 0x80 as a protocol error.
// Frame types, flags and codes are append-only.
//
// A relay answers a malformed or oversized frame with an Error frame and
// closes that stream only. A Deposit frame over the limit but below a
// drain bound is skipped and answered with Result{TooLarge} so the stream
// lives on. Every read and write has a deadline, so a stuck peer cannot
// hold a stream forever; an idle subscriber sends an empty Ack as a
// keepalive.
//
// # Limits
//
// Delivery tokens, like Signal's sealed-sender access keys: an owner
// registers up to 4 random 16-byte tokens (Tokens frame; the relay keeps
// only their SHA-256 hashes) and hands them to its contacts inside the
// end-to-end session. A deposit carrying one of them is a contact's: it
// may use the mailbox's whole quota (100,000 envelopes, 256 MiB). All
// other deposits are strangers' and share Config.StrangerPercent (10 %)
// of it (CodeStrangerQuota), so a stranger cannot push out contacts.
//
// Every deposit is charged to token buckets of its remote peer and its IP
// address (/64 for IPv6), strangers' to a second, smaller pair
// (Config.DepositBudgets, StrangerBudgets; CodeRateLimited). The creation
// of a mailbox's owner record (at its first authentication) is charged
// like one small envelope.
//
// All mailboxes together hold at most Config.MaxStoreBytes (4 GiB) of
// envelopes (CodeRelayFull), the last 5 % for contacts only. A relay at
// its cap, or below its disk's free-space reserve (storage refuses writes,
// CodeUnavailable), still delivers and deletes on ack.
//
// An envelope lives Config.TTL (30 days) in a known mailbox, one whose
// owner has authenticated (the relay keeps that for 3×TTL after the last
// authentication), and Config.UnknownTTL (7 days) in any other.
//
// # Storage
//
// Through github.com/peergram/peergram/storage, two keys per envelope,
// written in one transaction, and one record per known mailbox:
//
//	mailbox.env    address[32] | seq:u64  →  v2 | id[16] | deposited:u64 | class:u8 | envelope
//	mailbox.idx    address[32] | id[16]   →  v2 | seq:u64 | size:u32 | deposited:u64 | class:u8
//	mailbox.owner  address[32]            →  v1 | lastAuth:u64 | n:u8 | sha256(token)[32] × n
//
// class is 0 for a contact's envelope, 1 for a stranger's. Values start
// with a version byte; readers accept every version. Version 1 (relays
// before delivery tokens) had no class (read as contact's) and no deposit
// time in the index (read from the envelope), and kept per-mailbox
// counters in mailbox.meta, which is no longer read or written (its
// entries expire by their TTL). A relay upgraded in place counts and
// serves v1 entries as they are; downgrading is not supported (an older
// relay skips v2 envelopes as unreadable).
//
// seq comes from one storage.Sequence, so iteration of mailbox.env under
// an address is deposit order. One committer owns every write: a builder
// goroutine takes whatever deposits, acks, expiries and owner records are
// pending (from all streams), does the reads (duplicate check, a
// mailbox's counters on first use) in one snapshot, and hands a batch of
// blind writes to a worker that commits one synced transaction. Blind
// writes never conflict; batches in flight never share an index key; and
// since batches may commit out of order, subscribers read only below the
// lowest seq still in flight, so none is skipped.
//
// Counters live in memory only: the store's total is counted at Start
// (one scan of mailbox.idx), a mailbox's when first needed, and every
// change passes through the committer, expiry too: a sweep (sweep.go)
// finds expired envelopes and the committer deletes them. Keys carry a
// storage TTL one day longer than the longest lifetime, a backstop for a
// relay that was down; the count at the next Start makes counters exact
// again. An ack deletes what its subscription loaded without reading it
// again, unless an expiry batch ran since the load (then it looks it up).
//
// # Concurrency
//
// Server and Client are safe for concurrent use.
package mailbox
