package blobs

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
)

// TestReview2OthersBlobs: Mallory cannot read Alice's blob with her own
// token (even after uploading the same bytes under it she only reads
// what she had), cannot delete Alice's reference, cannot make a blob's
// name say other bytes, and a zero-length Get range is the whole blob,
// never past it.
func TestReview2OthersBlobs(t *testing.T) {
	r := startRelay(t, nil)
	alice, mal := newUser(t, r), newUser(t, r)
	ctx := context.Background()
	at, mt := token(t), token(t)
	data := blob(1000)
	if err := alice.put(t, r, at, data); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	if _, _, err := mal.c.Get(ctx, r.h.ID(), mt, h, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ATTACK WORKS: another token read Alice's blob: %v", err)
	}
	if have, err := mal.c.Has(ctx, r.h.ID(), mt, [][32]byte{h}); err != nil || have[0] {
		t.Fatalf("ATTACK WORKS: Has tells another token Alice's blob exists: %v %v", have, err)
	}
	if err := mal.c.Delete(ctx, r.h.ID(), mal.dev, mal.cert, [][32]byte{h}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.c.Get(ctx, r.h.ID(), at, h, 0, 0); err != nil {
		t.Fatalf("ATTACK WORKS: Mallory's Delete removed Alice's blob: %v", err)
	}
	// Mallory's Put naming Alice's hash with other bytes.
	m := &putMsg{Hash: h, TokenHash: mt.hash(), Time: r.srv.cfg.Now().UnixMilli(), Data: blob(1000)}
	m.Cert, _ = mal.cert.MarshalBinary()
	m.Sig = mal.dev.Sign(PutLabel, putSigned(string(r.h.ID()), m.Hash, m.TokenHash, m.Time))
	if _, err := mal.c.roundTrip(ctx, r.h.ID(), typePut, m.appendBody(nil), typeStatus); err == nil {
		t.Fatal("ATTACK WORKS: a Put whose bytes are not its name was stored")
	}
	got, _, err := alice.c.Get(ctx, r.h.ID(), at, h, 0, 0)
	if err != nil || sha256.Sum256(got) != h {
		t.Fatalf("ATTACK WORKS: Alice's blob changed: %v", err)
	}
	if _, _, err := alice.c.Get(ctx, r.h.ID(), at, h, 1<<62, 1<<62); err == nil {
		t.Fatal("ATTACK WORKS: offset past the end answered")
	}
}
