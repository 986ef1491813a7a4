package groupmsg

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

func newDevice(t testing.TB) (*identity.DeviceKey, *identity.DeviceCert) {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "d", 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return dev, cert
}

func TestRoundTrip(t *testing.T) {
	dev, cert := newDevice(t)
	group := [32]byte{1}
	raw, err := Seal(dev, cert, group, KindSenderKey, 1_800_000_000_000, []byte("ciphertext"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if e.Group != group || e.Kind != KindSenderKey || e.Time != 1_800_000_000_000 || string(e.Payload) != "ciphertext" || e.Sender() != cert.Account {
		t.Fatalf("%+v", e)
	}
	if ID(raw) == ID(append(bytes.Clone(raw[:len(raw)-1]), raw[len(raw)-1]^1)) {
		t.Fatal("two envelopes share an ID")
	}
	topic := Topic(group)
	if !strings.HasPrefix(topic, TopicPrefix) || strings.Contains(topic, string(group[:])) || topic == Topic([32]byte{2}) {
		t.Fatalf("topic %q", topic)
	}
}

// TestForgeries: an envelope claiming another account, edited bytes,
// oversized and malformed ones are refused.
func TestForgeries(t *testing.T) {
	dev, cert := newDevice(t)
	_, victim := newDevice(t)
	fake := *cert
	fake.Account = victim.Account // the victim's account, the forger's device
	raw, err := Seal(dev, &fake, [32]byte{}, KindEpoch, 1, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(raw); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged certificate: %v", err)
	}
	if _, err := Seal(dev, victim, [32]byte{}, KindEpoch, 1, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("sealing with another device's certificate: %v", err)
	}
	good, err := Seal(dev, cert, [32]byte{}, KindState, 1, []byte("entry"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x08
		if _, err := Open(bad); err == nil {
			t.Fatalf("byte %d flipped: opened", i)
		}
	}
	for name, b := range map[string][]byte{
		"empty": nil, "truncated": good[:len(good)-1], "trailing": append(bytes.Clone(good), 0),
		"oversized": make([]byte, MaxSize+1),
	} {
		if _, err := Open(b); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := Seal(dev, cert, [32]byte{}, KindEpoch, 1, make([]byte, MaxPayload+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized payload: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	dev, cert := newDevice(f)
	raw, err := Seal(dev, cert, [32]byte{9}, KindGrants, 5, []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Open(b)
		if err == nil && (e.Kind == 0 || e.Kind > maxKind || len(e.Payload) > MaxPayload) {
			t.Fatalf("accepted %+v", e)
		}
	})
}
