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
// A Register carries the group's whole signed state log, the signed
// device lists of the members the registering device knows, and that
// device's signature over (RegisterLabel, the relay's peer ID, the group,
// a time within 10 minutes): the relay keeps groups for their members
// only, and a registration cannot be replayed to another relay. The relay
// verifies log and lists (crypto/groupstate, crypto/identity; of the
// lists only members' are verified and kept, the newest per account) and
// from them checks each envelope exactly as a member's validators do,
// except the content: signature by a device of a member with the right
// to publish, group, time, per-device rate. A registration of a group the
// relay holds is merged into its log entry by entry by groupstate's fork
// rule (Log.Add), never replacing it: a removed member that registers a
// longer fork from before its removal loses the fork to the removal.
// Members register again after every change they see, and every 12
// hours. A log or lists larger than a frame go in pages on one stream,
// answered once after the last page; a member that registered a group at
// a relay sends only what follows (from a fork's reach before it), so a
// large group's renewal costs a frame. The relay stores each entry and
// list apart and writes what a registration changed. The relay stores only envelopes its validators accepted, once
// each (keyed by the envelope's hash).
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
//	Store{group, envelope}               ──▶  a member's own envelope gossip did not carry: checked as
//	                                          the validators do but for its age; kept once
//	                                     ◀──  Status
//	Name{name, group, link, time, device, sig}  ──▶  a public name for a group: signed by an admin's
//	                                          device; the link's invite must be in the group's log;
//	                                          first come, first served (30 days, renewed)
//	                                     ◀──  Status
//	Lookup{name}                         ──▶
//	                                     ◀──  NameRecord{name, group, link} | Status
//	GetLog{group}                        ──▶
//	                                     ◀──  Log{group, entry..., list...} | Status   (for a device that
//	                                          joins by an invite link; the caller verifies)
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
//	Register 0x01  1: group (32 bytes), 2: entry (repeated), 3: device list (repeated),
//	               4: time (Unix ms), 5: device (32 bytes), 6: signature                ≤ 2 MiB
//	Query    0x02  1: group, 2: after, 3: limit (≤ 1,000), 4: ids only                    ≤ 64 KiB
//	Get      0x03  1: group, 2: seq (repeated, ≤ 1,000)                                   ≤ 64 KiB
//	Heads    0x04  1: head {1: group, 2: seq} (repeated, ≤ 1,000), 2: wait ms            ≤ 64 KiB
//	Page     0x05  1: item {1: seq, 2: id, 3: stored ms, 4: envelope} (repeated),
//	               2: first, 3: head, 4: more                                           ≤ 4 MiB
//	Status   0x06  1: code, 2: text (≤ 512)                                              ≤ 64 KiB
//	GetLog   0x07  1: group                                                              ≤ 64 KiB
//	Log      0x08  as Register, without the signature fields                            ≤ 2 MiB
//	Store    0x09  1: group, 4: envelope                                                 ≤ 257 KiB
//	Name     0x0a  1: name, 2: group, 3: link, 4: time, 5: device, 6: signature          ≤ 64 KiB
//	Lookup   0x0b  1: name                                                               ≤ 64 KiB
//	NameRec  0x0c  1: name, 2: group, 3: link, 4-6: time, device, signature as published  ≤ 64 KiB
//
// # Limits
//
// The operator sets how long envelopes are kept (Config.Retention, 30
// days) and a per-group quota (Config.MaxGroupMessages, 100,000;
// MaxGroupBytes, 256 MiB): over it, the oldest go first. Registrations
// expire (Config.RegistrationTTL, 30 days) unless renewed; a relay keeps
// at most Config.MaxGroups groups (10,000), and one account registers at
// most Config.MaxGroupsPerPeer (256) new groups a day. Requests are rate
// limited per peer. Sequence numbers are given as envelopes are accepted
// and reported (Heads, a page's head) only once committed; a number
// whose envelope expired or whose write failed is passed by clients
// (a page without More covers everything up to its head).
//
// # Storage
//
//	history.reg   group[32]              → expires:u64 (a relay before paged logs: | the whole Register body, rewritten at start)
//	history.log   group[32] | seq:u64    → a state-log entry
//	history.lists group[32] | account[32] → a member's signed device list
//	history.msg  group[32] | seq:u64   → stored:u64 (Unix ms) | id[32] | envelope
//	history.id   group[32] | id[32]    → seq:u64
//	history.name name                  → expires:u64 | Name body as signed
//
// Envelopes carry a storage TTL of Config.Retention. One committer writes
// every accepted envelope, many per transaction.
package history
