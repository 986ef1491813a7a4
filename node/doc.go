// Package node is the Peergram client daemon: it owns a device's keys and
// encrypted sessions, its Badger store, its libp2p host, and the delivery of
// end-to-end encrypted messages — directly to an online peer device, or
// through the peer's home relay mailboxes when it is offline — and serves
// all of it to the local API (node/localapi), which the CLI and UI use.
//
// Life cycle: Init creates a home directory (keys, token, public identity
// file); New loads it and validates the configuration, starting nothing;
// Run opens the store, starts the host, the API and the delivery loops,
// publishes the device's keys to its relays' directories, and blocks until
// its context ends.
//
// Delivery is at least once with idempotent receipt: an accepted message is
// first stored in a persistent outbox; a worker seals it for every device of
// the recipient (and the sender's own other devices), persisting the
// ratchet before anything leaves, and retries with backoff until each
// device's copy is accepted by that device or by one of its relays.
// Receivers drop message IDs they have already stored.
package node
