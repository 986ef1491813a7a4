package directory

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	f := newFixture(t, rng, 1)
	id := testPeerID(t)
	r, err := SignRecord(f.devs[0], Record{
		PeerID: id,
		// The /ipfs/ spelling is rewritten to the canonical /p2p/.
		Relays: []string{"/ip4/192.0.2.1/udp/4001/quic-v1/ipfs/" + id.String(), "/dns4/relay.example/tcp/443/wss/p2p/" + id.String()},
		Issued: 1767225600,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Device != f.devs[0].ID() {
		t.Fatal("SignRecord did not set Device")
	}
	if want := "/ip4/192.0.2.1/udp/4001/quic-v1/p2p/" + id.String(); r.Relays[0] != want {
		t.Fatalf("relay %q, want %q", r.Relays[0], want)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxRecordSize {
		t.Fatalf("%d bytes > maxRecordSize", len(b))
	}
	got, err := ParseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("parsed %+v, want %+v", got, r)
	}
	if err := got.Verify(); err != nil {
		t.Fatal(err)
	}
	// The parsed record does not alias the input.
	b[len(b)-1] ^= 1
	if err := got.Verify(); err != nil {
		t.Fatal("parsed record aliases its input")
	}
}

func TestRecordLargest(t *testing.T) {
	f := newFixture(t, rng, 1)
	id := testPeerID(t)
	relay := "/dns4/" + strings.Repeat("a", MaxRelayLen-len("/dns4//tcp/1/p2p/")-len(id.String())) + "/tcp/1/p2p/" + id.String()
	if len(relay) != MaxRelayLen {
		t.Fatalf("relay of %d bytes", len(relay))
	}
	relays := make([]string, MaxRelays)
	for i := range relays {
		relays[i] = relay
	}
	r, err := SignRecord(f.devs[0], Record{PeerID: id, Relays: relays})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxRecordSize {
		t.Fatalf("largest record is %d bytes > %d", len(b), maxRecordSize)
	}
}

func TestRecordInvalid(t *testing.T) {
	f := newFixture(t, rng, 2)
	id := testPeerID(t)
	good := signRecord(t, f.devs[0], 42)
	goodRaw, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p2p := "/ip4/127.0.0.1/tcp/1/p2p/" + id.String()

	signTests := []struct {
		name string
		r    Record
	}{
		{"no peer ID", Record{Relays: []string{p2p}}},
		{"peer ID not a multihash", Record{PeerID: "\x12\x20short"}},
		{"too many relays", Record{PeerID: id, Relays: make([]string, MaxRelays+1)}},
		{"relay not a multiaddr", Record{PeerID: id, Relays: []string{"relay.example:4001"}}},
		{"relay without peer ID", Record{PeerID: id, Relays: []string{"/ip4/127.0.0.1/tcp/1"}}},
		{"relay too long", Record{PeerID: id, Relays: []string{"/dns4/" + strings.Repeat("a", MaxRelayLen) + "/tcp/1/p2p/" + id.String()}}},
		{"empty relay", Record{PeerID: id, Relays: []string{""}}},
	}
	for _, tt := range signTests {
		t.Run("sign/"+tt.name, func(t *testing.T) {
			if _, err := SignRecord(f.devs[0], tt.r); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}

	verifyTests := []struct {
		name   string
		mutate func(r *Record)
		want   error
	}{
		{"other device", func(r *Record) { r.Device = f.devs[1].ID() }, ErrBadSignature},
		{"later issued", func(r *Record) { r.Issued++ }, ErrBadSignature},
		{"relay dropped", func(r *Record) { r.Relays = nil }, ErrBadSignature},
		{"bit flip in signature", func(r *Record) { r.Sig = bytes.Clone(r.Sig); r.Sig[10] ^= 4 }, ErrBadSignature},
		{"short signature", func(r *Record) { r.Sig = r.Sig[:63] }, ErrMalformed},
		{"non-canonical relay", func(r *Record) { r.Relays = []string{"/ip4/127.0.0.1/tcp/01/p2p/" + id.String()} }, ErrMalformed},
	}
	for _, tt := range verifyTests {
		t.Run("verify/"+tt.name, func(t *testing.T) {
			r := *good
			tt.mutate(&r)
			if err := r.Verify(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}

	parseTests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"unknown version", append([]byte{2}, goodRaw[1:]...), ErrUnknownVersion},
		{"truncated", goodRaw[:len(goodRaw)-1], ErrMalformed},
		{"trailing byte", append(bytes.Clone(goodRaw), 0), ErrMalformed},
		{"relay count over bound", func() []byte {
			b := bytes.Clone(goodRaw)
			at := 1 + 32 + 8 + 4 + len(id)
			b[at+3] = MaxRelays + 1
			return b
		}(), ErrMalformed},
		{"huge relay count", func() []byte {
			b := bytes.Clone(goodRaw)
			at := 1 + 32 + 8 + 4 + len(id)
			copy(b[at:], []byte{0xff, 0xff, 0xff, 0xff})
			return b
		}(), ErrMalformed},
	}
	for _, tt := range parseTests {
		t.Run("parse/"+tt.name, func(t *testing.T) {
			if _, err := ParseRecord(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCodes(t *testing.T) {
	for c := CodeOK; c <= CodeRateLimited; c++ {
		if strings.HasPrefix(c.String(), "code_") {
			t.Errorf("code %d has no name", c)
		}
		if c == CodeOK {
			if c.Err() != nil || codeOf(nil) != CodeOK {
				t.Error("CodeOK is an error")
			}
			continue
		}
		if codeOf(c.Err()) != c {
			t.Errorf("code %v maps to %v and back to %v", c, c.Err(), codeOf(c.Err()))
		}
		ref := &RefusalError{Code: c, Message: "because"}
		if !errors.Is(ref, c.Err()) || !strings.Contains(ref.Error(), "because") {
			t.Errorf("RefusalError %v does not match its sentinel", ref)
		}
	}
	if got := Code(200).Err(); !errors.Is(got, ErrRefused) {
		t.Errorf("unknown code gives %v", got)
	}
	if codeOf(errors.New("disk on fire")) != CodeInternal {
		t.Error("an unknown error is not internal")
	}
	if codeOf(ErrUnknownVersion) != CodeMalformed {
		t.Error("unknown record version is not malformed")
	}
}
