// Package filecrypt encrypts a file as a sequence of content-addressed
// chunks and describes it in a manifest that travels inside an end-to-end
// message.
//
// Why chunks named by their ciphertext: a file of up to 2 GiB moves in
// pieces that can be fetched from anyone who holds them — the sender's
// node, a relay's blob store — and checked one by one before a byte is
// decrypted. A chunk that is corrupted, or belongs to another file, fails
// its hash and is fetched again; a transfer resumes from the last chunk
// that checked. Every file has its own random key, so equal files make
// unequal chunks: a relay cannot tell that two users hold the same file,
// and nothing it stores is readable without the manifest, which only the
// message's recipients hold.
//
// Chunk i of a file of size bytes is AES-256-GCM under the file's key,
// nonce = 0^4 || i (u64, big-endian) — each index is sealed once under a
// fresh key — with associated data label || size u64 || i u32 || count
// u32, so a chunk cannot be moved to another position, another file size,
// or passed off as the last one. Its name is SHA-256 of the ciphertext.
//
// Manifest encoding (crypto/internal/wire):
//
//	version(1)=2 || key[32] || size u64 ||
//	name Var (≤ 255 bytes of UTF-8) || mime Var (≤ 127) || count u32 ||
//	count × hash[32]
//
// count is ChunkCount(size): 2,048 hashes (64 KiB) for a 2 GiB file.
package filecrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	version    = 2
	labelChunk = "peergram/file/chunk/v1"

	// ChunkSize is the plaintext size of every chunk but the last.
	ChunkSize = 1 << 20
	// MaxFileSize is the largest file (2 GiB, Telegram's limit).
	MaxFileSize = 2 << 30
	// MaxChunks is the most chunks of a file.
	MaxChunks = MaxFileSize / ChunkSize
	// Overhead is what sealing adds to a chunk.
	Overhead = 16
	// MaxChunkCiphertext bounds a chunk's ciphertext.
	MaxChunkCiphertext = ChunkSize + Overhead
	// MaxName and MaxMime bound a manifest's name and type.
	MaxName = 255
	MaxMime = 127
)

// Errors.
var (
	ErrTooLarge  = errors.New("filecrypt: file larger than 2 GiB")
	ErrMalformed = errors.New("filecrypt: malformed")
	ErrCorrupt   = errors.New("filecrypt: chunk does not match its hash")
	ErrAuth      = errors.New("filecrypt: chunk does not decrypt")
	ErrChanged   = errors.New("filecrypt: the file changed while it was read")
)

// Key is a file's key.
type Key [32]byte

// Hash names a chunk: SHA-256 of its ciphertext.
type Hash [32]byte

// NewKey draws a file key.
func NewKey(rand io.Reader) (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return Key{}, fmt.Errorf("filecrypt: %w", err)
	}
	return k, nil
}

// HashOf names a chunk's ciphertext.
func HashOf(ct []byte) Hash { return sha256.Sum256(ct) }

// ChunkCount is the number of chunks of a file of size bytes (an empty
// file has one, empty).
func ChunkCount(size int64) int {
	if size <= 0 {
		return 1
	}
	return int((size + ChunkSize - 1) / ChunkSize)
}

// ChunkLen is the plaintext length of chunk index of a file of size
// bytes, or -1 if there is no such chunk.
func ChunkLen(size int64, index int) int {
	n := ChunkCount(size)
	switch {
	case size < 0 || size > MaxFileSize || index < 0 || index >= n:
		return -1
	case index < n-1:
		return ChunkSize
	}
	return int(size - int64(n-1)*ChunkSize)
}

func chunkCipher(k Key, size int64, index int) (cipher.AEAD, []byte, []byte, error) {
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("filecrypt: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("filecrypt: %w", err)
	}
	nonce := binary.BigEndian.AppendUint64(make([]byte, 4, 12), uint64(index))
	ad := make([]byte, 0, len(labelChunk)+16)
	ad = append(ad, labelChunk...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(size))
	ad = binary.BigEndian.AppendUint32(ad, uint32(index))
	ad = binary.BigEndian.AppendUint32(ad, uint32(ChunkCount(size)))
	return aead, nonce, ad, nil
}

// SealChunk encrypts chunk index of a file of size bytes and names it.
// dst, if it has room, receives the ciphertext.
func SealChunk(dst []byte, k Key, size int64, index int, plaintext []byte) ([]byte, Hash, error) {
	if size > MaxFileSize {
		return nil, Hash{}, ErrTooLarge
	}
	if want := ChunkLen(size, index); want < 0 || len(plaintext) != want {
		return nil, Hash{}, fmt.Errorf("%w: chunk %d of %d bytes in a file of %d", ErrMalformed, index, len(plaintext), size)
	}
	aead, nonce, ad, err := chunkCipher(k, size, index)
	if err != nil {
		return nil, Hash{}, err
	}
	ct := aead.Seal(dst[:0], nonce, plaintext, ad)
	return ct, HashOf(ct), nil
}

// OpenChunk checks ct against its name, want (the manifest's), and
// decrypts it as chunk index into dst (if it has room); the associated
// data binds position, size and count. It fails with
// ErrCorrupt if it is not the chunk named (corrupted, or another file's:
// fetch it again elsewhere), ErrAuth if it is and does not open (the
// manifest lies: no source can help). The name is checked first, for
// every chunk: the file's key is not the sender's alone — every
// recipient of the message holds it (every member of a group, whoever
// it is forwarded to), so a chunk that opens under it may have been
// sealed by any of them; the names, in the message the sender signed,
// are what binds the chunks to the sender.
func OpenChunk(dst []byte, k Key, size int64, index int, want Hash, ct []byte) ([]byte, error) {
	n := ChunkLen(size, index)
	if n < 0 {
		return nil, fmt.Errorf("%w: no chunk %d in a file of %d bytes", ErrMalformed, index, size)
	}
	if len(ct) != n+Overhead {
		return nil, fmt.Errorf("%w: chunk %d is %d bytes, not %d", ErrCorrupt, index, len(ct), n+Overhead)
	}
	if HashOf(ct) != want {
		return nil, fmt.Errorf("%w: chunk %d", ErrCorrupt, index)
	}
	aead, nonce, ad, err := chunkCipher(k, size, index)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(dst[:0], nonce, ct, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %d", ErrAuth, index)
	}
	return pt, nil
}

// Manifest describes an encrypted file: its key, its chunks' names, the
// plaintext's size, and its name and media type. It carries no hash of
// the whole plaintext (version 1 did): the chunks' names commit to every
// byte (each chunk is checked against its name before it is opened), so
// a second hash of the same bytes by the same sender adds nothing.
type Manifest struct {
	Key    Key
	Size   int64
	Name   string
	Mime   string
	Chunks []Hash
}

// MarshalBinary encodes m.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	w := wire.NewWriter(1 + 32 + 8 + 8 + len(m.Name) + len(m.Mime) + 4 + 32*len(m.Chunks))
	w.Byte(version)
	w.Fixed(m.Key[:])
	w.Uint64(uint64(m.Size))
	w.Var([]byte(m.Name))
	w.Var([]byte(m.Mime))
	w.Uint32(uint32(len(m.Chunks)))
	for _, h := range m.Chunks {
		w.Fixed(h[:])
	}
	return w.Bytes(), nil
}

func (m *Manifest) check() error {
	switch {
	case m.Size < 0:
		return fmt.Errorf("%w: size %d", ErrMalformed, m.Size)
	case m.Size > MaxFileSize:
		return ErrTooLarge
	case len(m.Chunks) != ChunkCount(m.Size):
		return fmt.Errorf("%w: %d chunks for %d bytes", ErrMalformed, len(m.Chunks), m.Size)
	case len(m.Name) > MaxName || !utf8.ValidString(m.Name):
		return fmt.Errorf("%w: name", ErrMalformed)
	case len(m.Mime) > MaxMime || !utf8.ValidString(m.Mime):
		return fmt.Errorf("%w: media type", ErrMalformed)
	}
	return nil
}

// ParseManifest decodes a manifest and checks that it is well formed.
func ParseManifest(b []byte) (*Manifest, error) {
	r := wire.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	m := &Manifest{}
	r.FixedInto(m.Key[:])
	size := r.Uint64()
	m.Name = string(r.Var(MaxName))
	m.Mime = string(r.Var(MaxMime))
	n := r.Count(MaxChunks, 32)
	m.Chunks = make([]Hash, n)
	for i := range m.Chunks {
		r.FixedInto(m.Chunks[i][:])
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if size > MaxFileSize {
		return nil, ErrTooLarge
	}
	m.Size = int64(size)
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// Encrypt reads exactly size bytes from r, one chunk at a time (memory:
// two chunks, whatever the size), seals each under a new key and hands it
// to put in order; it returns the manifest (without name and type). A
// file over MaxFileSize is refused before anything is read; one that
// yields more or fewer bytes than size fails with ErrChanged.
func Encrypt(rand io.Reader, r io.Reader, size int64, put func(index int, h Hash, ct []byte) error) (*Manifest, error) {
	if size > MaxFileSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, size)
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: size %d", ErrMalformed, size)
	}
	k, err := NewKey(rand)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Key: k, Size: size, Chunks: make([]Hash, 0, ChunkCount(size))}
	buf := make([]byte, ChunkSize)
	ct := make([]byte, 0, MaxChunkCiphertext)
	for i := range ChunkCount(size) {
		pt := buf[:ChunkLen(size, i)]
		if _, err := io.ReadFull(r, pt); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: shorter than %d bytes", ErrChanged, size)
			}
			return nil, fmt.Errorf("filecrypt: read: %w", err)
		}
		var h Hash
		if ct, h, err = SealChunk(ct, k, size, i, pt); err != nil {
			return nil, err
		}
		if err := put(i, h, ct); err != nil {
			return nil, err
		}
		m.Chunks = append(m.Chunks, h)
	}
	if n, _ := io.ReadFull(r, buf[:1]); n > 0 {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrChanged, size)
	}
	return m, nil
}
