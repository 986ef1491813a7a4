package identity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// seeded returns a deterministic io.Reader for reproducible keys.
func seeded(seed byte) *rand.ChaCha8 {
	return rand.NewChaCha8([32]byte{seed, 'p', 'g'})
}

func mustAccount(t testing.TB, seed byte) *AccountKey {
	t.Helper()
	k, err := NewAccountKey(seeded(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAccountIDText(t *testing.T) {
	id := mustAccount(t, 1).ID()
	s := id.String()
	if len(s) != 62 || !strings.HasPrefix(s, "pg") || strings.ToLower(s) != s {
		t.Fatalf("String() = %q, want pg + 60 lower-case characters", s)
	}
	if l := id.Link(); l != "peergram://account/"+s {
		t.Fatalf("Link() = %q", l)
	}
	for _, in := range []string{s, id.Link(), "  " + s + "\n", "\t" + id.Link() + " ", strings.ToUpper(s)} {
		got, err := ParseAccountID(in)
		if err != nil {
			t.Fatalf("ParseAccountID(%q): %v", in, err)
		}
		if got != id {
			t.Fatalf("ParseAccountID(%q) = %s, want %s", in, got, id)
		}
	}
	if !bytes.Equal(id.PublicKey(), id[:]) {
		t.Fatal("PublicKey differs from ID bytes")
	}
}

// encodeAccountRaw spells arbitrary raw bytes the way String does.
func encodeAccountRaw(raw []byte) string { return "pg" + lowerBase32.EncodeToString(raw) }

func TestParseAccountIDRejects(t *testing.T) {
	id := mustAccount(t, 1).ID()
	good := id.String()
	body := good[2:]

	raw, err := lowerBase32.DecodeString(body)
	if err != nil {
		t.Fatal(err)
	}
	badSum := bytes.Clone(raw)
	badSum[len(badSum)-1] ^= 1
	otherType := bytes.Clone(raw)
	otherType[0] = 0x02
	sum := sha256.Sum256(otherType[:33])
	copy(otherType[33:], sum[:4])

	// Flip a padding bit in the last character: same bytes, second spelling.
	last := strings.IndexByte("abcdefghijklmnopqrstuvwxyz234567", body[len(body)-1])
	nonCanon := good[:len(good)-1] + string("abcdefghijklmnopqrstuvwxyz234567"[last^1])

	// A changed character in the key part breaks the checksum.
	flipped := []byte(good)
	flipped[10] = map[bool]byte{true: 'b', false: 'a'}[flipped[10] == 'a']

	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"no prefix", body},
		{"wrong prefix", "px" + body},
		{"wrong link", "peergram://device/" + good},
		{"short", good[:len(good)-1]},
		{"long", good + "a"},
		{"bad alphabet", good[:20] + "1" + good[21:]},
		{"bad checksum", encodeAccountRaw(badSum)},
		{"changed character", string(flipped)},
		{"unknown key type", encodeAccountRaw(otherType)},
		{"non-canonical padding bits", nonCanon},
		{"non-ASCII", good[:30] + "é" + good[32:]},
		{"inner space", good[:30] + " " + good[31:]},
		{"device ID", DeviceID(id).String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseAccountID(tt.in); !errors.Is(err, ErrBadAccountID) {
				t.Fatalf("ParseAccountID(%q) = %v, want ErrBadAccountID", tt.in, err)
			}
		})
	}
}

func TestAccountKeyRoundTrip(t *testing.T) {
	k := mustAccount(t, 2)
	b, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 33 || b[0] != formatV1 {
		t.Fatalf("marshalled key: %d bytes, first %#x", len(b), b[0])
	}
	k2, err := UnmarshalAccountKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID() != k.ID() {
		t.Fatal("ID changed in round trip")
	}
	msg := []byte("hello")
	if !Verify(k.ID().PublicKey(), "test/label", msg, k2.Sign("test/label", msg)) {
		t.Fatal("unmarshalled key signs differently")
	}
}

func TestUnmarshalAccountKeyRejects(t *testing.T) {
	b, err := mustAccount(t, 2).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short", b[:32], ErrMalformed},
		{"long", append(bytes.Clone(b), 0), ErrMalformed},
		{"unknown version", append([]byte{2}, b[1:]...), ErrUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := UnmarshalAccountKey(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewAccountKeyDeterministic(t *testing.T) {
	k1, k2 := mustAccount(t, 3), mustAccount(t, 3)
	if k1.ID() != k2.ID() {
		t.Fatal("same seed, different keys")
	}
	if k1.ID() == mustAccount(t, 4).ID() {
		t.Fatal("different seeds, same key")
	}
	if _, err := NewAccountKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatal("short reader accepted")
	}
	a, err := NewAccountKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewAccountKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() == b.ID() {
		t.Fatal("crypto/rand gave the same key twice")
	}
}

func TestSignVerify(t *testing.T) {
	k := mustAccount(t, 5)
	other := mustAccount(t, 6)
	msg := []byte("message")
	sig := k.Sign("peergram/test/v1", msg)
	tests := []struct {
		name  string
		pub   []byte
		label string
		msg   []byte
		sig   []byte
		want  bool
	}{
		{"valid", k.ID().PublicKey(), "peergram/test/v1", msg, sig, true},
		{"other label", k.ID().PublicKey(), "peergram/test/v2", msg, sig, false},
		{"other message", k.ID().PublicKey(), "peergram/test/v1", []byte("massage"), sig, false},
		{"other key", other.ID().PublicKey(), "peergram/test/v1", msg, sig, false},
		// label||0||msg must not collide when bytes move across the NUL.
		{"shifted boundary", k.ID().PublicKey(), "peergram/test/v", append([]byte("1\x00"), msg...), sig, false},
		{"short sig", k.ID().PublicKey(), "peergram/test/v1", msg, sig[:63], false},
		{"short key", k.ID().PublicKey()[:31], "peergram/test/v1", msg, sig, false},
		{"empty label", k.ID().PublicKey(), "", msg, k.Sign("", msg), false},
		{"NUL label", k.ID().PublicKey(), "a\x00b", msg, k.Sign("a\x00b", msg), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.pub, tt.label, tt.msg, tt.sig); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
	if k.Sign("a\x00b", msg) != nil || k.Sign("", msg) != nil {
		t.Fatal("invalid label signed")
	}
}

// TestVerifyParts: a message given in parts verifies as the same message
// given whole, below and above the size VerifyParts keeps on the stack,
// wherever the parts split; one changed byte in any part fails it.
func TestVerifyParts(t *testing.T) {
	k := mustAccount(t, 7)
	const label = "peergram/test/v1"
	pub := k.ID().PublicKey()
	for _, n := range []int{0, 1, stackMsg - len(label) - 2, stackMsg - len(label) - 1, stackMsg - len(label), stackMsg, 70_000} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i*7 + 3)
		}
		sig := k.Sign(label, msg)
		for _, cut := range []int{0, n / 3, n} {
			a, b := msg[:cut], msg[cut:]
			if !VerifyParts(pub, label, sig, a, b) || !Verify(pub, label, msg, sig) {
				t.Fatalf("%d bytes cut at %d: refused", n, cut)
			}
			if n == 0 {
				continue
			}
			bad := bytes.Clone(msg)
			bad[n-1] ^= 1
			if VerifyParts(pub, label, sig, bad[:cut], bad[cut:]) {
				t.Fatalf("%d bytes cut at %d: a changed byte verified", n, cut)
			}
		}
		if VerifyParts(pub, label+"x", sig, msg) || VerifyParts(pub, "", sig, msg) || VerifyParts(pub, label, sig[:63], msg) {
			t.Fatalf("%d bytes: wrong label or short signature verified", n)
		}
	}
}
