package identity

import (
	"bytes"
	"strings"
	"testing"
)

// Each target checks that decoding never panics and that whatever decodes
// re-encodes to the same bytes (the formats are canonical). Seeds live in
// testdata/fuzz; regenerate them with go test -run TestGolden -update.

func FuzzParseDeviceList(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseDeviceList(b)
		if err != nil {
			return
		}
		out, err := l.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed list does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("non-canonical: %x became %x", b, out)
		}
		_ = l.Verify(l.Account)
		_ = l.CheckUpdate(l)
		_ = l.Hash()
		for i := range l.Devices {
			if _, err := l.Lookup(l.Devices[i].Device); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzParseDeviceCert(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseDeviceCert(b)
		if err != nil {
			return
		}
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed cert does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("non-canonical: %x became %x", b, out)
		}
		_ = c.Verify()
		_, _ = c.DHPublic()
	})
}

func FuzzParseAccountID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseAccountID(s)
		if err != nil {
			return
		}
		// Only the canonical spelling, modulo spaces, ASCII case and the
		// link prefix, may parse.
		norm := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "peergram://account/")
		if norm != id.String() {
			t.Fatalf("%q parsed as %s", s, id)
		}
		for _, form := range []string{id.String(), id.Link()} {
			if id2, err := ParseAccountID(form); err != nil || id2 != id {
				t.Fatalf("round trip of %q: %v", form, err)
			}
		}
	})
}

func FuzzUnmarshalDeviceKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := UnmarshalDeviceKey(b)
		if err != nil {
			return
		}
		out, err := k.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x became %x (%v)", b, out, err)
		}
		msg := []byte("fuzz")
		if !Verify(k.ID().PublicKey(), "peergram/fuzz/v1", msg, k.Sign("peergram/fuzz/v1", msg)) {
			t.Fatal("unmarshalled key cannot sign")
		}
	})
}
