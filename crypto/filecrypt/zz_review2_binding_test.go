package filecrypt

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// TestReview2ChunkNameNotChecked: OpenChunk accepts, for chunk i, a
// ciphertext that is not the one the manifest names, as long as it opens
// under the file's key. The key is not the sender's alone: every
// recipient of the message (every member of a group, anyone a manifest
// is forwarded to) holds it, so any of them — or a relay operator who is
// one of them — can seal other bytes at index i and have them accepted
// as the sender's file. With the manifest's hashes checked (or v1's
// whole-file SHA-256) this was refused.
func TestReview2ChunkNameNotChecked(t *testing.T) {
	data := make([]byte, 2*ChunkSize+100)
	rand.Read(data)
	m, chunks := encrypt(t, data) // the sender's file and manifest
	// A key holder (recipient) seals other bytes at chunk 0.
	evil := bytes.Repeat([]byte("EVIL"), ChunkSize/4)
	ct, h, err := SealChunk(nil, m.Key, m.Size, 0, evil)
	if err != nil {
		t.Fatal(err)
	}
	if h == m.Chunks[0] {
		t.Fatal("same name")
	}
	pt, err := OpenChunk(nil, m.Key, m.Size, 0, m.Chunks[0], ct)
	if err == nil && bytes.Equal(pt, evil) {
		_ = chunks
		t.Fatalf("ATTACK WORKS: chunk 0 named %x… opened from a different ciphertext (%x…) sealed by a key holder other than the sender; the plaintext accepted is %q…, not the sender's", m.Chunks[0][:4], h[:4], pt[:8])
	}
}

// TestReview2SpliceReorderTruncate: without the key, chunks cannot be
// reordered, truncated, extended, spliced from another file, or moved
// to another size (these are refused).
func TestReview2SpliceReorderTruncate(t *testing.T) {
	a := make([]byte, 3*ChunkSize+7)
	rand.Read(a)
	ma, ca := encrypt(t, a)
	b := make([]byte, 3*ChunkSize+7)
	rand.Read(b)
	_, cb := encrypt(t, b)
	// reorder
	if _, err := OpenChunk(nil, ma.Key, ma.Size, 0, ma.Chunks[0], ca[1].ct); err == nil {
		t.Fatal("ATTACK WORKS: reorder")
	}
	// splice from another file (same index, same size)
	if _, err := OpenChunk(nil, ma.Key, ma.Size, 1, ma.Chunks[1], cb[1].ct); err == nil {
		t.Fatal("ATTACK WORKS: splice")
	}
	// truncate: the last full chunk passed off as the last one of a
	// shorter file (size in AD)
	short := int64(2 * ChunkSize)
	if _, err := OpenChunk(nil, ma.Key, short, 1, ma.Chunks[1], ca[1].ct); err == nil {
		t.Fatal("ATTACK WORKS: truncation")
	}
	// extend: same chunks under a larger size
	if _, err := OpenChunk(nil, ma.Key, ma.Size+ChunkSize, 2, ma.Chunks[2], ca[2].ct); err == nil {
		t.Fatal("ATTACK WORKS: extension")
	}
	// a manifest whose count disagrees with its size
	bad := *ma
	bad.Chunks = bad.Chunks[:2]
	if _, err := bad.MarshalBinary(); err == nil {
		t.Fatal("ATTACK WORKS: count/size mismatch encoded")
	}
	// zero-length file: one empty chunk, 16 bytes, bound to size 0
	m0, c0 := encrypt(t, nil)
	if len(c0) != 1 || len(c0[0].ct) != Overhead {
		t.Fatalf("empty file: %d chunks", len(c0))
	}
	if _, err := OpenChunk(nil, m0.Key, 1, 0, m0.Chunks[0], c0[0].ct); err == nil {
		t.Fatal("ATTACK WORKS: empty chunk as 1-byte file")
	}
	// malformed manifests don't panic
	for _, raw := range [][]byte{nil, {2}, append([]byte{2}, make([]byte, 60)...), {1, 2, 3}} {
		_, _ = ParseManifest(raw)
	}
	// index out of range
	if _, err := OpenChunk(nil, ma.Key, ma.Size, 99, ma.Chunks[0], ca[0].ct); err == nil {
		t.Fatal("ATTACK WORKS: index 99")
	}
	if _, err := OpenChunk(nil, ma.Key, ma.Size, -1, ma.Chunks[0], ca[0].ct); err == nil {
		t.Fatal("ATTACK WORKS: index -1")
	}
}
