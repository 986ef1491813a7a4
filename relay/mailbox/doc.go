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
// # Streams
//
// Both stream kinds use ProtocolID; the client's first frame says which.
//
// Deposit stream (long-lived, pipelined; one per relay in a Client):
//
//	client                                  relay
//	Deposit{to, id, envelope} ...  ──▶      (group commit: one synced txn)
//	                               ◀──      Result{id, code, text} ... in order
//	                               ◀──      Error{code, text}, close   (fatal only)
//
// Subscribe stream:
//
//	Subscribe{}                      ──▶
//	                                 ◀──    Challenge{nonce, window, maxEnvelope}
//	Auth{address, sig}               ──▶    sig = Ed25519(address key, authMessage)
//	                                 ◀──    Error{Unauthorized}, close (bad sig)
//	                                 ◀──    Delivery{id, deposited, envelope} ... stored, in deposit order
//	                                 ◀──    Drained{}   (backlog sent; later deliveries are live pushes)
//	Ack{ids} / Nack{ids}             ──▶    at most `window` deliveries unacked at once
//	Ack{} (empty, keepalive)         ──▶
//	CloseWrite                       ──▶    relay commits pending acks, then closes
//
//	authMessage = u8(len(label)) | label | u16(len(relayID)) | relayID | nonce[32] | address[32]
//	label       = "peergram/mailbox/auth/v1"
//
// The relay deletes an envelope only when its owner acks it; unacked and
// nacked envelopes are delivered again on the next subscription
// (at-least-once; the node dedups by message ID). Envelopes also expire
// after Config.TTL.
//
// # Frames
//
// Integers are big-endian; [n] is n raw bytes.
//
//	frame     = length:u32 | type:u8 | body        length = 1 + len(body)
//	Deposit   0x01  to[32] | id[16] | len:u32 | envelope
//	Result    0x02  id[16] | code:u8 | len:u16 | text (≤512 bytes)
//	Subscribe 0x03  (empty)
//	Challenge 0x04  nonce[32] | window:u32 | maxEnvelope:u32
//	Auth      0x05  address[32] | signature[64]
//	Delivery  0x06  id[16] | deposited:u64 (unix ns) | len:u32 | envelope
//	Ack       0x07  n:u16 (≤1024) | id[16] × n
//	Nack      0x08  n:u16 (≤1024) | id[16] × n
//	Drained   0x09  (empty)
//	Error     0x0a  code:u8 | len:u16 | text (≤512 bytes)
//
// A frame's body is bounded: MaxEnvelopeSize + 1024 for Deposit and
// Delivery, 17 KiB for everything else. Codes are listed with Code.
//
// Version tolerance: the major version is in ProtocolID. Within it,
// receivers ignore bytes after the body fields they know (new fields are
// appended), skip unknown frame types at or above 0x80 (optional
// extensions), and treat unknown types below 0x80 as a protocol error.
// Frame types and codes are append-only.
//
// A relay answers a malformed or oversized frame with an Error frame and
// closes that stream only. A Deposit frame over the limit but below a
// drain bound is skipped and answered with Result{TooLarge} so the stream
// lives on. Every read and write has a deadline, so a stuck peer cannot
// hold a stream forever; an idle subscriber sends an empty Ack as a
// keepalive.
//
// # Storage
//
// Through github.com/peergram/peergram/storage, three keyspaces written in
// one transaction, all entries of a deposit with the same TTL:
//
//	mailbox.env   address[32] | seq:u64  →  v1 | id[16] | deposited:u64 | envelope
//	mailbox.idx   address[32] | id[16]   →  v1 | seq:u64 | size:u32
//	mailbox.meta  address[32]            →  v1 | count:u64 | bytes:u64
//
// seq comes from one storage.Sequence, so iteration of mailbox.env under
// an address is deposit order. One committer owns every write: a builder
// goroutine takes whatever deposits and acks are pending (from all
// streams), does the reads (duplicate check, counters, the seq of acked
// envelopes) in one snapshot, and hands a batch of blind writes to one of
// a few workers, each committing one synced transaction. Blind writes
// never conflict; batches in flight never share an index key; and since
// batches may commit out of order, subscribers read only below the lowest
// seq still in flight, so none is skipped. mailbox.meta is an upper bound
// once entries expire by TTL; a deposit it would refuse triggers an exact
// recount (at most once a minute per mailbox).
//
// # Concurrency
//
// Server and Client are safe for concurrent use.
package mailbox
