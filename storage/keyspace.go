package storage

import "encoding/binary"

// Key tags: the first byte of every Badger key this package writes. Append-only.
const (
	tagUser     byte = 0x01 // keys in a Keyspace
	tagSequence byte = 0x02 // Sequence state
)

// Keyspace is an isolated range of keys named by a string; see the package doc
// for the encoding. It is a small immutable value, safe to copy and share. The
// zero Keyspace is the keyspace named "".
type Keyspace struct {
	name   string
	prefix string // tagUser | uvarint(len(name)) | name; "" for the zero value
}

// Keyspace returns the keyspace called name. Distinct names never share keys.
func (db *DB) Keyspace(name string) Keyspace {
	return Keyspace{name: name, prefix: string(spacePrefix(tagUser, name))}
}

// Name returns the keyspace's name.
func (ks Keyspace) Name() string { return ks.name }

func spacePrefix(tag byte, name string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(name))
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(name)))
	return append(b, name...)
}

func (ks Keyspace) pfx() string {
	if ks.prefix == "" {
		return string(spacePrefix(tagUser, ""))
	}
	return ks.prefix
}

// key returns a new slice holding the keyspace prefix followed by parts.
func (ks Keyspace) key(parts ...[]byte) []byte {
	p := ks.pfx()
	n := len(p)
	for _, part := range parts {
		n += len(part)
	}
	b := make([]byte, 0, n)
	b = append(b, p...)
	for _, part := range parts {
		b = append(b, part...)
	}
	return b
}

// sequenceKey is where the Sequence called name in ks keeps its state.
func sequenceKey(ks Keyspace, name string) []byte {
	b := spacePrefix(tagSequence, ks.name)
	b = binary.AppendUvarint(b, uint64(len(name)))
	return append(b, name...)
}
