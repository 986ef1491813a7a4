// Package storage is Peergram's embedded key-value store: a small layer over
// Badger (github.com/dgraph-io/badger/v4) shared by the node daemon and the relay.
//
// Why a layer at all: every caller gets the same durability defaults (a commit
// returns once it is on disk, and concurrent commits share one sync: group
// commit, done here because Badger v4 syncs once per transaction; see
// groupsync.go), the same memory budget (a desktop node and a relay both open
// several stores, and Badger's defaults reserve hundreds of MiB), encryption at
// rest with Badger's AES support, and errors mapped to a few sentinels (see
// errors.go) instead of Badger's strings.
//
// # Key layout
//
// Callers never see raw Badger keys. Each key lives in a Keyspace, an isolated
// prefix derived from a name:
//
//	user key:      0x01 | uvarint(len(space)) | space | key
//	sequence key:  0x02 | uvarint(len(space)) | space | uvarint(len(name)) | name
//
// The length prefix makes the encoding prefix-free: two distinct keyspace names
// never produce overlapping key ranges ("a" and "ab" are disjoint), and the
// leading tag byte keeps our keys away from Badger's reserved "!badger!" prefix
// and keeps sequences out of every keyspace's iteration. Tags are append-only.
//
// # Concurrency
//
// DB, Keyspace, Sequence are safe for concurrent use. A Txn and a Batch are not:
// use each from one goroutine. Close waits for in-flight transactions, cancels
// unflushed batches, releases sequences, and makes every later call return
// ErrClosed.
package storage
