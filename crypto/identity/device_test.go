package identity

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustDevice(t testing.TB, seed byte) *DeviceKey {
	t.Helper()
	k, err := NewDeviceKey(seeded(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDeviceIDText(t *testing.T) {
	id := mustDevice(t, 1).ID()
	s := id.String()
	if len(s) != 52 || strings.ToLower(s) != s {
		t.Fatalf("String() = %q", s)
	}
	for _, in := range []string{s, " " + s + "\n", strings.ToUpper(s)} {
		got, err := ParseDeviceID(in)
		if err != nil || got != id {
			t.Fatalf("ParseDeviceID(%q) = %s, %v", in, got, err)
		}
	}
	if !bytes.Equal(id.PublicKey(), id[:]) {
		t.Fatal("PublicKey differs from ID bytes")
	}
}

func TestParseDeviceIDRejects(t *testing.T) {
	s := mustDevice(t, 1).ID().String()
	last := strings.IndexByte("abcdefghijklmnopqrstuvwxyz234567", s[len(s)-1])
	nonCanon := s[:len(s)-1] + string("abcdefghijklmnopqrstuvwxyz234567"[last^1])
	for _, in := range []string{"", s[1:], s + "a", s[:10] + "0" + s[11:], nonCanon, s[:10] + "é" + s[12:], "pg" + s} {
		if _, err := ParseDeviceID(in); !errors.Is(err, ErrBadDeviceID) {
			t.Errorf("ParseDeviceID(%q) = %v, want ErrBadDeviceID", in, err)
		}
	}
}

func TestDeviceKeyRoundTrip(t *testing.T) {
	k := mustDevice(t, 2)
	b, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 65 || b[0] != formatV1 {
		t.Fatalf("marshalled key: %d bytes, first %#x", len(b), b[0])
	}
	k2, err := UnmarshalDeviceKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID() != k.ID() || !k2.DH().Equal(k.DH()) || !k2.SigningKey().Equal(k.SigningKey()) {
		t.Fatal("key changed in round trip")
	}
	msg := []byte("hi")
	if !Verify(k.ID().PublicKey(), "peergram/test/v1", msg, k2.Sign("peergram/test/v1", msg)) {
		t.Fatal("device signature does not verify")
	}
	// The X25519 key agrees with a peer.
	peer, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s1, err := k2.DH().ECDH(peer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	s2, err := peer.ECDH(k.DH().PublicKey())
	if err != nil || !bytes.Equal(s1, s2) {
		t.Fatalf("ECDH mismatch: %v", err)
	}
}

func TestDeviceKeyDeterministic(t *testing.T) {
	a, b := mustDevice(t, 3), mustDevice(t, 3)
	if a.ID() != b.ID() || !a.DH().Equal(b.DH()) {
		t.Fatal("same seed, different keys")
	}
	if c := mustDevice(t, 4); c.ID() == a.ID() || c.DH().Equal(a.DH()) {
		t.Fatal("different seeds, same key")
	}
	if _, err := NewDeviceKey(bytes.NewReader(make([]byte, 63))); err == nil {
		t.Fatal("short reader accepted")
	}
}

func TestSigningKeyIsCopy(t *testing.T) {
	k := mustDevice(t, 5)
	sk := k.SigningKey()
	clear(sk)
	msg := []byte("x")
	if !Verify(k.ID().PublicKey(), "peergram/test/v1", msg, k.Sign("peergram/test/v1", msg)) {
		t.Fatal("clearing the returned key damaged the device key")
	}
}

func TestUnmarshalDeviceKeyRejects(t *testing.T) {
	b, err := mustDevice(t, 2).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short", b[:64], ErrMalformed},
		{"long", append(bytes.Clone(b), 0), ErrMalformed},
		{"account key", b[:33], ErrMalformed},
		{"unknown version", append([]byte{0}, b[1:]...), ErrUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := UnmarshalDeviceKey(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIDsAsJSON(t *testing.T) {
	type rec struct {
		Account AccountID
		Devices map[DeviceID]int
	}
	in := rec{Account: mustAccount(t, 1).ID(), Devices: map[DeviceID]int{mustDevice(t, 2).ID(): 7}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"`+in.Account.String()+`"`) {
		t.Fatalf("account not in text form: %s", b)
	}
	var out rec
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Account != in.Account || out.Devices[mustDevice(t, 2).ID()] != 7 {
		t.Fatalf("round trip: %+v", out)
	}
	if err := json.Unmarshal([]byte(`{"Account":"pgnope"}`), &out); !errors.Is(err, ErrBadAccountID) {
		t.Fatalf("bad ID: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"Devices":{"nope":1}}`), &out); !errors.Is(err, ErrBadDeviceID) {
		t.Fatalf("bad device ID: %v", err)
	}
}
