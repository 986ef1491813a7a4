// Package directory is Peergram's key directory protocol: devices publish
// their account's signed device list, their PQXDH prekey bundle and a
// signed record of how to reach them to their home relays, and anyone
// fetches them from there while the owner is offline. The package keeps
// the wire codec, the Server (relay side) and the Client (device side)
// together, like net/http.
//
// Relays are untrusted, so the directory only ever stores and serves
// objects signed by their owners: the device list by the account key
// (crypto/identity), prekeys and records by the device key. Anyone may
// publish anything that verifies; a Client verifies everything it fetches
// and never depends on the relay's honesty for more than availability. What
// a relay can still do is withhold: serve an older list than it has (a
// Client that remembers its newest list uses FetchSince to notice), hand
// out no one-time prekeys, or hand one out twice; the last costs the
// forward secrecy of that one-time prekey only, as in Signal's design
// (https://signal.org/docs/specifications/pqxdh/#one-time-prekeys).
//
// # Message sequence
//
// One request per stream; the client half-closes after its frame.
//
//	device                                          relay
//	Publish{list, bundle?, record?}  ──▶  verify signatures; CheckUpdate
//	                                      against the stored list; apply
//	                                      all of it in one transaction
//	                                 ◀──  Status{code, text}, close
//
//	anyone                                          relay
//	Fetch{account}                   ──▶  in one transaction: read the
//	                                      list; per listed device take (and
//	                                      delete) the lowest one-time
//	                                      prekey of each kind, if the rate
//	                                      limits allow
//	                                 ◀──  Entries{list, entry...}, close
//	                                 ◀──  or Status{NotFound, text}, close
//
//	device                                          relay
//	Stock{device}                    ──▶  the stream's peer must be the one
//	                                      the device's record names
//	                                 ◀──  Status{OK, text, x25519, mlkem}, close
//	                                 ◀──  or Status{Forbidden|NotFound, text}
//
// Before reading a request's body the relay applies its per-peer rates
// (Config.PublishRate; Config.FetchRate for Fetch and Stock): a request
// over them is answered Status{RateLimited, "retry in …"}.
//
// The relay's rules for a Publish, in order; the first that fails refuses
// the whole request and changes nothing:
//
//   - The list verifies under its own account; it is then checked against
//     the stored list with identity.DeviceList.CheckUpdate: an older
//     version is CodeRollback, a contradicting one CodeFork, a skipped
//     version CodeGap; the identical list is accepted again.
//   - A bundle's device is on the list (else CodeUnlisted) and the bundle
//     verifies against its certificate (else CodeBadSignature). Its signed
//     and last-resort prekeys replace the stored ones unless their IDs are
//     lower (CodeRollback: bundles are public, so anyone can replay an old
//     one). Its one-time prekeys are added, lowest ID first, if their ID is
//     above the highest ID ever stored for the device and kind, while the
//     device holds fewer than Config.MaxOneTime of the kind (100) and the
//     account's objects stay within Config.AccountQuota (1 MiB, counted at
//     their encoded sizes: list, bundles, records, one-time prekeys);
//     prekeys left out are not an error (the Status says how many were
//     added, and the device's stock). So a prekey already handed out is
//     never stored again, and republishing a whole PrekeySet.Bundle adds
//     only the new keys. pqxdh allocates IDs in increasing order; a device
//     that loses its prekey set must link a new device key.
//   - A record's device is on the list and the record's signature
//     verifies; a record with an older Issued time than the stored one is
//     CodeRollback (an equal time only for the identical record).
//   - A new list that drops a device deletes that device's bundle, record
//     and one-time prekeys. The relay remembers the device's cursor and
//     signed prekey IDs for a year (directory.mark): listed again, its old
//     bundle brings back only prekeys never handed out, and no older
//     signed prekey.
//
// A Fetch answers one entry per listed device that has a bundle or a
// record, the bundle carrying at most one one-time prekey of each kind
// (pqxdh.Bundle.Take). A prekey handed out is deleted in the transaction
// that builds the answer, so it is handed out once, across restarts too;
// if the answer is then lost, the prekey is lost, never repeated. Once a
// device's one-time prekeys run out, initiators fall back to its signed
// X25519 prekey and last-resort ML-KEM prekey.
//
// Anyone can fetch, so anyone could drain a device's one-time prekeys by
// fetching again and again. The relay hands out one-time prekeys (a
// device's pair of X25519 and ML-KEM keys counting once) at two rates:
// Config.OneTimePerPeer to one requesting peer across all devices (50,
// then 1 a minute) and Config.OneTimePerDevice for one device to all
// peers together (10, then 6 an hour), which peer IDs made at will cannot
// get around. Past them the bundle is served without one-time prekeys,
// as for a drained device, so sessions still start. The device watches
// its stock with Stock (or in the answer to its Publish) and refills.
//
// Stock tells a device how many one-time prekeys of each kind the relay
// holds for it. The count tells how many sessions others start with the
// device, so the relay answers only the peer the device's stored Record
// names (the record is signed by the device key; the stream's peer is
// authenticated by libp2p), and refuses others with CodeForbidden. A
// Publish carrying a bundle is answered with the same counts, for the
// same peer only.
//
// # Expiry
//
// An account nobody publishes to for Config.Expiry (30 days) is deleted
// with all its devices' entries; a listed device whose bundle and record
// are not published for that long loses them (and its one-time prekeys)
// while its account lives on. A node publishes each time it connects to
// its relay. The Server deletes what expired at Start and every
// Config.ExpiryInterval (1 hour), each account under its publish lock
// after checking its time again, so a publish racing the pass wins.
//
// # Frames
//
// Integers are big-endian; [n] is n raw bytes; var = len:u32 | bytes.
//
//	frame    = length:u32 | type:u8 | body         length = 1 + len(body)
//	Publish  0x01  list:var | bundle:var | record:var    (empty var = none)
//	Fetch    0x02  account[32]
//	Status   0x03  code:u8 | len:u16 | text (≤512 bytes, UTF-8) [ | x25519:u32 | mlkem:u32 ]
//	Entries  0x04  list:var | n:u16 (≤64) | n × ( device[32] | bundle:var | record:var )
//	Stock    0x05  device[32]
//	History  0x06  account[32] | from:u64 | to:u64
//	Lists    0x07  n:u16 (≤ MaxHistoryLists) | n × (len:u32 | device list)
//
// History asks for an account's lists with versions from..to; Lists
// answers with those the relay keeps (the newest 256 versions), oldest
// first, at most MaxHistoryLists, so a client that knows an old list can
// check every link to the newest.
//
// A Status that answers a Stock, or a Publish with a bundle sent by the
// device's own peer, carries the stock (and, answering a Stock, the
// hand-out cursor: every one-time prekey below it was handed out): the one-time prekeys of each kind
// the relay holds for the device. The counts are fields appended to the
// Status of the first release, so a receiver that does not know them
// ignores them, and a Status without them (a refusal, an older relay)
// ends after its text.
//
// list is identity.DeviceList.MarshalBinary, bundle pqxdh.Bundle.MarshalBinary,
// record Record.MarshalBinary. Body bounds: MaxPublishSize (2 MiB) for
// Publish, because a valid request with a full list and a bundle of
// pqxdh.MaxOneTime one-time prekeys of each kind is ~1.37 MB and must fit
// one frame and one storage transaction; MaxFetchResponseSize (512 KiB) for
// Entries (at most ~341 KB: 64 devices with a taken bundle and a record
// each); 4 KiB for Fetch, Stock and Status. A frame over its bound is refused
// with CodeTooLarge before its body is read; one that does not decode
// with CodeMalformed. Codes are listed with Code; types and codes are
// append-only. The major version is in ProtocolID; within it, receivers
// ignore bytes after the body fields they know, so fields may be appended.
// Every stream has a deadline (one minute for the whole request on the
// relay; the context's, or one minute, on the client).
//
// # Record
//
//	0x01 | device[32] | issued:u64 (unix s) | peerID:var (≤64, a multihash)
//	     | n:u32 (≤8) | n × relay:var (≤256, canonical multiaddr ending /p2p/<id>)
//	     | sig[64]
//	sig = Ed25519(device, "peergram/directory/record/v1" || 0x00 || all bytes before sig)
//
// # Storage
//
// Through github.com/peergram/peergram/storage:
//
//	directory.list    account[32]                              → DeviceList bytes
//	directory.head    account[32] | device[32]                 → 0x01 | hwm x25519:u32 | hwm mlkem:u32 | bundle without one-time prekeys
//	directory.otk     account[32] | device[32] | kind:u8 | id:u32 → pub | sig
//	directory.next    account[32] | device[32]                 → next x25519:u32 | next mlkem:u32
//	directory.record  account[32] | device[32]                 → Record bytes
//	directory.gone    account[32] | device[32]                 → (empty) one-time prekeys still to delete
//	directory.touched account[32]                              → last publish to the account: unix s:u64
//	directory.touched account[32] | device[32]                 → last publish of the device's bundle or record
//	directory.owner   device[32] | account[32]                 → (empty) the account lists the device with a bundle or record
//	directory.mark    account[32] | device[32]                 → next x25519:u32 | next mlkem:u32 | signed id:u32 | last-resort id:u32, of a deleted device (TTL 1 year)
//	directory.meta    "schema"                                 → 2 (Start adds touched and owner entries to older stores)
//
// directory.next is one above the last one-time prekey ID handed out per
// kind: every stored prekey is at or above it (new ones must be above the
// high-water mark), so a fetch seeks there instead of walking the
// deletion markers that Badger keeps for the prekeys handed out before.
//
// Keys include the account because any account may certify any device
// key: another account listing a device must not touch its entries under
// its own account. A dropped device can have up to 2,000 one-time
// prekeys, too many for the transaction that stores the new list, so that
// transaction deletes the head and record and sets a gone mark; the
// prekeys are then deleted in chunks, under the account's publish lock,
// before the publish answers (and by Start after a crash). Fetch never
// reads prekeys of a device without a head.
//
// The owner index lets Stock, which names only a device, find the
// accounts that list it.
//
// # Concurrency
//
// Server and Client are safe for concurrent use. Publishes (and expiry)
// of one account are serialized; fetches race through Badger's conflict
// detection, the loser retrying with the next prekey. Rate limits live in
// memory (a restart refills every bucket), keyed by peer ID and by
// account and device, at most 65,536 keys each (relay/internal/ratelimit).
// Streams are tracked, given their deadline and attached to the
// resource-manager service ServiceName by relay/internal/serve.
package directory
