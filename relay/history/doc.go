// Package history keeps groups' encrypted messages on relays for members
// who were offline, and lets a member that comes back (or that noticed a
// gap in what gossip brought it) ask for what it missed, page by page from
// a cursor, as Waku's Store protocol does. The package keeps the wire
// codec, the Server (relay side) and the Client (node side) together,
// like net/http.
//
// Why relays: gossipsub delivers only to members online at the moment a
// message spreads, and its validators drop envelopes older than a few
// minutes. A relay that serves a member joins the gossip topic of each
// group the member registers, as a full mesh peer (it validates and
// forwards like any member, which also carries gossip to members behind
// NAT whose only direct connection is their relay), and stores every
// envelope it accepts: ciphertext under the group's keys, which it never
// holds.
//
// # What the relay checks
//
// A Register carries the group's whole signed state log and the signed
// device lists of the members the registering device knows. The relay
// verifies both (crypto/groupstate, crypto/identity) and from them checks
// each envelope exactly as a member's validators do, except the content:
// signature by a device of a member with the right to publish, group,
// time, per-device rate. A newer registration (a longer log that
// verifies) replaces the older; members register again after every
// change they see. The relay stores only envelopes its validators
// accepted, once each (keyed by the envelope's hash).
//
// Who may read a group's history: anyone who names the group's ID. The
// ID is known to members (and to those they tell); the gossip topic's
// name is a hash of it, so watching topics does not reveal it. A
// non-member that knows the ID could as well subscribe to the topic and
// read the ciphertext live; history adds the past ciphertext and its
// timing, never content.
//
// # Streams
//
// One request per stream; the client half-closes after its frame, the
// relay answers with one frame and closes.
//
//	Register{group, entry..., list...}   ──▶  verify; store; join the topic
//	                                     ◀──  Status{code, text}
//	Query{group, after, limit, idsOnly}  ──▶
//	                                     ◀──  Page{item..., first, head, more} | Status
//	Get{group, seq...}                   ──▶
//	                                     ◀──  Page{item...(those still held), first, head} | Status
//	Heads{(group, seq)..., wait}         ──▶  waits up to wait (≤ 30 s) for a group's head to pass seq
//	                                     ◀──  Heads{(group, head)...}: the groups whose head
//	                                          passed, or every known one once the wait ends
//
// A member that starts asks Heads with its cursors and no wait, then
// Query (IDs only) after each cursor, fetches with Get the items it does
// not hold, and processes them in sequence order. While online it keeps
// one Heads request waiting: the answer tells it that the relay stored
// something new; it waits a moment for gossip, then repairs any gap the
// same way. So every message reaches a member once (it skips IDs it
// holds), in the relay's order, with no gap: a cursor below the relay's
// First means messages expired or were trimmed, which the member can see.
//
// # Frames
//
//	frame = length:u32 | type:u8 | body       (body: protobuf wire format;
//	                                           unknown fields are skipped)
//	Register 0x01  1: group (32 bytes), 2: entry (repeated), 3: device list (repeated)   ≤ 8 MiB
//	Query    0x02  1: group, 2: after, 3: limit (≤ 1,000), 4: ids only                    ≤ 64 KiB
//	Get      0x03  1: group, 2: seq (repeated, ≤ 1,000)                                   ≤ 64 KiB
//	Heads    0x04  1: head {1: group, 2: seq} (repeated, ≤ 1,000), 2: wait ms            ≤ 64 KiB
//	Page     0x05  1: item {1: seq, 2: id, 3: stored ms, 4: envelope} (repeated),
//	               2: first, 3: head, 4: more                                           ≤ 4 MiB
//	Status   0x06  1: code, 2: text (≤ 512)                                              ≤ 64 KiB
//
// # Limits
//
// The operator sets how long envelopes are kept (Config.Retention, 30
// days) and a per-group quota (Config.MaxGroupMessages, 100,000;
// MaxGroupBytes, 256 MiB): over it, the oldest go first. Registrations
// expire (Config.RegistrationTTL, 30 days) unless renewed; a relay keeps
// at most Config.MaxGroups groups (10,000), and one peer registers at
// most Config.MaxGroupsPerPeer (256) a day. Requests are rate limited
// per peer.
//
// # Storage
//
//	history.reg  group[32]             → expires:u64 | Register body
//	history.msg  group[32] | seq:u64   → stored:u64 (Unix ms) | id[32] | envelope
//	history.id   group[32] | id[32]    → seq:u64
//
// Envelopes carry a storage TTL of Config.Retention. One committer writes
// every accepted envelope, many per transaction.
package history
