package directory

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/peergram/peergram/crypto/pqxdh"
)

// honestEntries is what an honest relay answers for f's account: device 0
// with a bundle and a record, device 1 with a record only.
func honestEntries(t *testing.T, f *fixture) *entriesMsg {
	t.Helper()
	list, err := f.last().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	full := genPrekeys(t, rng, f.devs[0], 3).Bundle(f.devs[0])
	b, err := full.Take().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rec0, err := signRecord(t, f.devs[0], 1).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rec1, err := signRecord(t, f.devs[1], 2).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &entriesMsg{List: list, Entries: []entry{
		{Device: f.devs[0].ID(), Bundle: b, Record: rec0},
		{Device: f.devs[1].ID(), Record: rec1},
	}}
}

func TestVerifyEntries(t *testing.T) {
	f := newFixture(t, rng, 3)
	f.sign(t, 0, 1)
	other := newFixture(t, rng, 1)
	other.sign(t)

	marshal := func(m interface{ MarshalBinary() ([]byte, error) }) []byte {
		t.Helper()
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		mutate func(m *entriesMsg)
		want   error
	}{
		{"honest", func(m *entriesMsg) {}, nil},
		{"no entries", func(m *entriesMsg) { m.Entries = nil }, nil},
		{"list of another account", func(m *entriesMsg) { m.List = marshal(other.last()) }, ErrBadSignature},
		{"tampered list", func(m *entriesMsg) {
			m.List = bytes.Clone(m.List)
			m.List[len(m.List)-1] ^= 1
		}, ErrBadSignature},
		{"list that does not parse", func(m *entriesMsg) { m.List = m.List[:40] }, ErrMalformed},
		{"entry of an unlisted device", func(m *entriesMsg) { m.Entries[1].Device = f.devs[2].ID() }, ErrUnlisted},
		{"entry twice", func(m *entriesMsg) { m.Entries[1] = m.Entries[0] }, ErrMalformed},
		{"bundle of another device", func(m *entriesMsg) { m.Entries[1].Bundle = m.Entries[0].Bundle }, ErrBadSignature},
		{"bundle with a forged prekey", func(m *entriesMsg) {
			b, err := pqxdh.ParseBundle(m.Entries[0].Bundle)
			if err != nil {
				t.Fatal(err)
			}
			b.SignedPrekey.Pub[0] ^= 1
			m.Entries[0].Bundle = marshal(b)
		}, ErrBadSignature},
		{"bundle with two one-time prekeys", func(m *entriesMsg) {
			b := genPrekeys(t, rng, f.devs[0], 2).Bundle(f.devs[0])
			b.OneTimePQ = nil // two of those would not even pass the frame codec
			m.Entries[0].Bundle = marshal(b)
		}, ErrMalformed},
		{"bundle that does not parse", func(m *entriesMsg) { m.Entries[0].Bundle = []byte{1, 2} }, ErrMalformed},
		{"forged record", func(m *entriesMsg) {
			r, err := ParseRecord(m.Entries[0].Record)
			if err != nil {
				t.Fatal(err)
			}
			r.Issued = 1 << 40
			m.Entries[0].Record = marshal(r)
		}, ErrBadSignature},
		{"record of another device", func(m *entriesMsg) { m.Entries[0].Record = m.Entries[1].Record }, ErrUnlisted},
		{"record that does not parse", func(m *entriesMsg) { m.Entries[0].Record = []byte{1} }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := honestEntries(t, f)
			tt.mutate(m)
			// Through the codec, as a Client would see it.
			ans, _, err := decodeFrame(appendFrame(nil, m))
			if err != nil {
				t.Fatal(err)
			}
			res, err := readAnswer(ans, f.acct.ID(), nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if len(res.Devices) != 2 || res.Devices[0].Cert.Device != f.devs[0].ID() || res.Devices[1].Cert.Device != f.devs[1].ID() {
				t.Fatalf("result does not follow the list: %+v", res.Devices)
			}
			if len(m.Entries) > 0 && (res.Devices[0].Bundle == nil || res.Devices[1].Bundle != nil || res.Devices[1].Record == nil) {
				t.Fatalf("entries not matched to devices: %+v", res.Devices)
			}
		})
	}

	t.Run("status", func(t *testing.T) {
		if _, err := readAnswer(&statusMsg{Code: CodeOK}, f.acct.ID(), nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("OK without entries: %v", err)
		}
		if _, err := readAnswer(&statusMsg{Code: 200, Message: "?"}, f.acct.ID(), nil); !errors.Is(err, ErrRefused) {
			t.Fatalf("unknown code: %v", err)
		}
		if _, err := readAnswer(&fetchMsg{}, f.acct.ID(), nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("a request as answer: %v", err)
		}
	})
}

// A relay that answers with another account's (validly signed) list is
// caught by the Client.
func TestClientRejectsLyingRelay(t *testing.T) {
	liar := newHost(t)
	f := newFixture(t, rng, 2)
	f.sign(t)
	mallory := newFixture(t, rng, 2)
	mallory.sign(t)
	answer := appendFrame(nil, honestEntries(t, mallory))
	liar.SetStreamHandler(ProtocolID, func(s network.Stream) {
		defer s.Close()
		_, _ = s.Write(answer)
	})
	h := newHost(t)
	connect(t, h, liar)
	_, err := NewClient(h).Fetch(testCtx(t), liar.ID(), f.acct.ID())
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("got %v, want ErrBadSignature", err)
	}
	// And one that sends an oversized answer is cut off at the header.
	liar.SetStreamHandler(ProtocolID, func(s network.Stream) {
		defer s.Close()
		_, _ = s.Write(append([]byte{0x10, 0, 0, 0}, byte(typeEntries)))
	})
	if _, err := NewClient(h).Fetch(testCtx(t), liar.ID(), f.acct.ID()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	// And one that hangs up without answering.
	liar.SetStreamHandler(ProtocolID, func(s network.Stream) { _ = s.Close() })
	if _, err := NewClient(h).Fetch(testCtx(t), liar.ID(), f.acct.ID()); err == nil {
		t.Fatal("fetch without an answer succeeded")
	}
}
