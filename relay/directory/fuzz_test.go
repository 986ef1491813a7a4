package directory

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

// Each target checks that decoding never panics, and what decodes
// re-encodes consistently. Seeds live in testdata/fuzz; regenerate them
// with go test -run TestGolden -update.

func FuzzParseRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		out, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed record does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("non-canonical: %x became %x", b, out)
		}
		_ = r.Verify()
	})
}

// FuzzDecodeFrame covers every frame type, requests and answers.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := decodeFrame(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		again := appendFrame(nil, m)
		m2, n2, err := decodeFrame(again)
		if err != nil || n2 != len(again) {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
		switch m := m.(type) {
		case *publishMsg:
			_, _ = validatePublish(m)
		case *entriesMsg:
			if l, err := identity.ParseDeviceList(m.List); err == nil {
				_, _ = readAnswer(m, l.Account, nil)
				_, _ = readAnswer(m, l.Account, l)
			}
		case *statusMsg, *fetchMsg, *stockMsg:
			_, _ = readAnswer(m, identity.AccountID{}, nil)
		}
	})
}

// FuzzPublish feeds Publish bodies through everything the relay does
// before it touches storage.
func FuzzPublish(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeBody(typePublish, body)
		if err != nil {
			return
		}
		req, err := validatePublish(m.(*publishMsg))
		if err != nil {
			if codeOf(err) == CodeInternal {
				t.Fatalf("validation error without a code: %v", err)
			}
			return
		}
		if req.list == nil || (len(m.(*publishMsg).Bundle) > 0) != (req.bundle != nil) {
			t.Fatalf("validated request lost a part")
		}
	})
}

// FuzzFetchAnswer feeds Entries bodies through the Client's verification
// for the golden account, whose list the seeds carry.
func FuzzFetchAnswer(f *testing.F) {
	g := makeGolden(f)
	account := g.list.Account
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeBody(typeEntries, body)
		if err != nil {
			return
		}
		res, err := readAnswer(m, account, nil)
		if err != nil {
			if codeOf(err) == CodeInternal {
				t.Fatalf("verification error without a sentinel: %v", err)
			}
			return
		}
		if res.List.Account != account || len(res.Devices) != len(res.List.Devices) {
			t.Fatalf("accepted a result that does not match the account")
		}
		for _, d := range res.Devices {
			if d.Bundle != nil && d.Bundle.Verify(d.Cert) != nil {
				t.Fatal("accepted an unverified bundle")
			}
			if d.Record != nil && (d.Record.Device != d.Cert.Device || d.Record.Verify() != nil) {
				t.Fatal("accepted an unverified record")
			}
		}
	})
}
