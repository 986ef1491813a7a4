package directory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

func TestFetchUnknownAccount(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	stranger, err := identity.NewAccountKey(rng)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Fetch(testCtx(t), r.h.ID(), stranger.ID())
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	var ref *RefusalError
	if !errors.As(err, &ref) || ref.Code != CodeNotFound {
		t.Fatalf("got %v, want a NotFound refusal", err)
	}
}

func TestDeviceRemovedLosesBundle(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	ctx := testCtx(t)
	f := newFixture(t, rng, 2)
	v1 := f.sign(t, 0, 1)
	sets := make([]*pqxdh.PrekeySet, 2)
	for i, n := range []int{3, 5} {
		sets[i] = genPrekeys(t, rng, f.devs[i], n)
		if err := c.Publish(ctx, r.h.ID(), v1, sets[i].Bundle(f.devs[i]), signRecord(t, f.devs[i], 10)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.countPrekeys(t, f.acct.ID(), f.devs[1].ID()); got != [2]int{5, 5} {
		t.Fatalf("device 1 has %v prekeys stored, want 5+5", got)
	}
	old := sets[1].Bundle(f.devs[1])
	for range 2 { // hand out two of device 1's prekeys
		if _, err := c.Fetch(ctx, r.h.ID(), f.acct.ID()); err != nil {
			t.Fatal(err)
		}
	}

	v2 := f.sign(t, 0)
	if err := c.Publish(ctx, r.h.ID(), v2, nil, nil); err != nil {
		t.Fatal(err)
	}
	res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 1 || res.Devices[0].Cert.Device != f.devs[0].ID() {
		t.Fatalf("after removal the result lists %d devices", len(res.Devices))
	}
	dev1 := deviceKey(f.acct.ID(), f.devs[1].ID())
	for k := range r.dump(t) {
		if bytes.Contains([]byte(k), []byte(hexString(dev1))) {
			t.Errorf("entry of the removed device left behind: %s", k)
		}
	}
	if got := counterValue(t, r.srv.met.dropped); got != 1 {
		t.Errorf("dropped counter = %v, want 1", got)
	}

	// The same device listed again: its old bundle (public, so anyone can
	// replay it) brings back only the prekeys never handed out (the relay
	// remembers where it stopped); new ones are stored.
	v3 := f.sign(t, 0, 1)
	if err := c.Publish(ctx, r.h.ID(), v3, old, nil); err != nil {
		t.Fatal(err)
	}
	if got := r.countPrekeys(t, f.acct.ID(), f.devs[1].ID()); got != [2]int{3, 3} {
		t.Fatalf("the old bundle of a re-added device restored %v prekeys, want the 3+3 never handed out", got)
	}
	if _, err := sets[1].Refill(rng, f.devs[1], 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, r.h.ID(), v3, sets[1].Bundle(f.devs[1]), nil); err != nil {
		t.Fatal(err)
	}
	if got := r.countPrekeys(t, f.acct.ID(), f.devs[1].ID()); got != [2]int{4, 4} {
		t.Fatalf("re-added device has %v prekeys stored, want 4+4", got)
	}
	res, err = c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(res.Devices[1].Bundle.OneTime), []uint32{old.OneTime[2].ID}; !slices.Equal(got, want) {
		t.Fatalf("re-added device hands out %v, want %v (the first never handed out)", got, want)
	}
	// An older signed prekey than the device's last one is a rollback,
	// remembered across the removal too.
	v4 := f.sign(t, 0)
	if err := c.Publish(ctx, r.h.ID(), v4, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := sets[1].RotateSigned(rng, f.devs[1]); err != nil {
		t.Fatal(err)
	}
	v5 := f.sign(t, 0, 1)
	if err := c.Publish(ctx, r.h.ID(), v5, sets[1].Bundle(f.devs[1]), nil); err != nil {
		t.Fatal(err)
	}
	v6 := f.sign(t, 0)
	if err := c.Publish(ctx, r.h.ID(), v6, nil, nil); err != nil {
		t.Fatal(err)
	}
	v7 := f.sign(t, 0, 1)
	if err := c.Publish(ctx, r.h.ID(), v7, old, nil); !errors.Is(err, ErrRollback) {
		t.Fatalf("old bundle after a rotation and a removal: %v, want ErrRollback", err)
	}
}

// A crash after the list transaction but before the prekeys are swept
// leaves gone marks; Start finishes the job.
func TestStartSweepsAfterCrash(t *testing.T) {
	r := newRelay(t)
	f := newFixture(t, rng, 1)
	dev := deviceKey(f.acct.ID(), f.devs[0].ID())
	err := r.db.Update(func(tx *storage.Txn) error {
		for id := range uint32(sweepChunk + 10) {
			if err := tx.Set(r.srv.st.prekeys, prekeyKey(dev, pqxdh.KindX25519, id+1), make([]byte, 96)); err != nil {
				return err
			}
		}
		return tx.Set(r.srv.st.gone, dev, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	r.restart(t)
	if d := r.dump(t); len(d) != 0 {
		t.Fatalf("%d entries left after Start", len(d))
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestFetchSince(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	ctx := testCtx(t)
	f := newFixture(t, rng, 2)
	v1 := f.sign(t, 0)
	v2 := f.sign(t, 0, 1)
	v3 := f.sign(t, 1)
	fork, err := f.acct.SignDeviceList(v1, f.certs[1:], 12345)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*identity.DeviceList{v1, v2} {
		if err := c.Publish(ctx, r.h.ID(), l, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The relay holds v2.
	tests := []struct {
		name  string
		known *identity.DeviceList
		want  error
	}{
		{"none", nil, nil},
		{"previous", v1, nil},
		{"same", v2, nil},
		{"relay is behind", v3, ErrRollback},
		{"relay is forked", fork, ErrFork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.FetchSince(ctx, r.h.ID(), f.acct.ID(), tt.known)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err == nil && res.List.Version != 2 {
				t.Fatalf("got list v%d", res.List.Version)
			}
		})
	}

	// Gap: the client knows v1, the relay got v3 after v2.
	if err := c.Publish(ctx, r.h.ID(), v3, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FetchSince(ctx, r.h.ID(), f.acct.ID(), v1); !errors.Is(err, ErrGap) {
		t.Fatalf("got %v, want ErrGap", err)
	}
	// Another account's known list is a caller error.
	g := newFixture(t, rng, 1)
	if _, err := c.FetchSince(ctx, r.h.ID(), f.acct.ID(), g.sign(t)); err == nil {
		t.Fatal("FetchSince accepted a known list of another account")
	}
}

func TestPublishIdempotent(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	ctx := testCtx(t)
	f := newFixture(t, rng, 1)
	list := f.sign(t)
	b := genPrekeys(t, rng, f.devs[0], 4).Bundle(f.devs[0])
	rec := signRecord(t, f.devs[0], 7)
	if err := c.Publish(ctx, r.h.ID(), list, b, rec); err != nil {
		t.Fatal(err)
	}
	before := r.dump(t)
	if err := c.Publish(ctx, r.h.ID(), list, b, rec); err != nil {
		t.Fatalf("publishing the same again: %v", err)
	}
	after := r.dump(t)
	if len(before) != len(after) {
		t.Fatalf("republish changed the store: %d entries, then %d", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("republish changed %s", k)
		}
	}
	// A newer record replaces the stored one.
	newer := signRecord(t, f.devs[0], 8)
	if err := c.Publish(ctx, r.h.ID(), list, nil, newer); err != nil {
		t.Fatal(err)
	}
	res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices[0].Record.Issued != 8 {
		t.Fatalf("record issued %d, want 8", res.Devices[0].Record.Issued)
	}
}

// A full bundle (pqxdh.MaxOneTime one-time prekeys of each kind) with a
// full list publishes in one request, and fits one transaction when the
// relay is configured to keep them all.
func TestPublishLargest(t *testing.T) {
	r := newRelay(t, func(c *Config) { c.MaxOneTime, c.AccountQuota = pqxdh.MaxOneTime, 1<<30 })
	c := newClient(t, r)
	ctx := testCtx(t)
	f := newFixture(t, rng, identity.MaxDevices)
	list := f.sign(t)
	set := genPrekeys(t, rng, f.devs[0], pqxdh.MaxOneTime)
	if err := c.Publish(ctx, r.h.ID(), list, set.Bundle(f.devs[0]), signRecord(t, f.devs[0], 1)); err != nil {
		t.Fatal(err)
	}
	if got := r.countPrekeys(t, f.acct.ID(), f.devs[0].ID()); got != [2]int{pqxdh.MaxOneTime, pqxdh.MaxOneTime} {
		t.Fatalf("stored %v", got)
	}
	res, err := c.Fetch(ctx, r.h.ID(), f.acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != identity.MaxDevices || res.Devices[0].Bundle == nil {
		t.Fatalf("fetched %d devices", len(res.Devices))
	}
}

// The cap of stored one-time prekeys, at the store level with synthetic
// (unsigned) keys: validatePublish has already run when the store sees them.
func TestStoreCapsOneTimePrekeys(t *testing.T) {
	db, err := storage.Open(storage.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st := newStore(db, pqxdh.MaxOneTime, math.MaxInt64)
	f := newFixture(t, rng, 1)
	list := f.sign(t)
	raw, err := list.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	base := genPrekeys(t, rng, f.devs[0], 0).Bundle(f.devs[0])
	fake := func(from, to uint32) *pqxdh.Bundle {
		b := *base
		for id := from; id <= to; id++ {
			b.OneTime = append(b.OneTime, pqxdh.SignedKey{ID: id, Pub: make([]byte, 32), Sig: make([]byte, 64)})
		}
		return &b
	}
	publish := func(b *pqxdh.Bundle) int {
		t.Helper()
		out, err := st.publish(&publishReq{list: list, listRaw: raw, bundle: b})
		if err != nil {
			t.Fatal(err)
		}
		return out.added[0]
	}
	if n := publish(fake(100, 100+pqxdh.MaxOneTime+9)); n != pqxdh.MaxOneTime {
		t.Fatalf("added %d, want the cap %d", n, pqxdh.MaxOneTime)
	}
	for range 3 {
		if _, _, err := st.fetch(list.Account, allowAll); err != nil {
			t.Fatal(err)
		}
	}
	// Room for 3: the lowest IDs above the mark go in; below it nothing.
	if n := publish(fake(1, 100+pqxdh.MaxOneTime+20)); n != 3 {
		t.Fatalf("added %d, want 3", n)
	}
	msg, _, err := st.fetch(list.Account, allowAll)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pqxdh.ParseBundle(msg.Entries[0].Bundle)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(b.OneTime); !slices.Equal(got, []uint32{103}) {
		t.Fatalf("next prekey %v, want 103", got)
	}
}

// rawRequest writes b on a fresh stream to r and returns the relay's
// answer. A nil answer means the relay ended the stream without one.
func rawRequest(t *testing.T, h host.Host, r *relay, b []byte, closeWrite bool) message {
	t.Helper()
	str, err := h.NewStream(testCtx(t), r.h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := str.Write(b); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = str.CloseWrite()
	}
	fr := newFrameReader(str)
	typ, n, err := fr.header()
	if err != nil {
		return nil
	}
	body, err := fr.body(n)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeBody(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBadFrames(t *testing.T) {
	r := newRelay(t)
	h := newHost(t)
	connect(t, h, r.h)
	f := newFixture(t, rng, 1)
	good := appendFrame(nil, &publishMsg{List: func() []byte {
		b, err := f.sign(t).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()})
	header := func(length uint32, typ frameType) []byte {
		return append(binary.BigEndian.AppendUint32(nil, length), byte(typ))
	}
	tests := []struct {
		name string
		b    []byte
		want Code
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: relay\r\n\r\n"), CodeMalformed},
		{"unknown type", append(header(3, 0x7f), 1, 2), CodeMalformed},
		{"answer type as request", appendFrame(nil, &statusMsg{Code: CodeOK}), CodeMalformed},
		{"zero length", header(0, typeFetch), CodeMalformed},
		{"truncated header", []byte{0, 0, 1}, CodeMalformed},
		{"truncated body", good[:len(good)-10], CodeMalformed},
		{"short fetch", append(header(11, typeFetch), make([]byte, 10)...), CodeMalformed},
		{"field over its bound", append(header(1+4, typePublish), 0xff, 0xff, 0xff, 0xff), CodeMalformed},
		{"list that does not parse", appendFrame(nil, &publishMsg{List: []byte{1, 2, 3}}), CodeMalformed},
		{"list of unknown version", appendFrame(nil, &publishMsg{List: append([]byte{9}, good[headerSize+5:]...)}), CodeMalformed},
		{"record that does not parse", func() []byte {
			m := &publishMsg{List: good[headerSize+4 : len(good)-8], Record: []byte{1}}
			return appendFrame(nil, m)
		}(), CodeMalformed},
		{"oversized publish", header(MaxPublishSize+2, typePublish), CodeTooLarge},
		{"oversized fetch", header(controlBodyMax+2, typeFetch), CodeTooLarge},
		{"largest length", header(0xffffffff, typePublish), CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := rawRequest(t, h, r, tt.b, true)
			st, ok := m.(*statusMsg)
			if !ok {
				t.Fatalf("answer %T, want a Status", m)
			}
			if st.Code != tt.want || st.Message == "" {
				t.Fatalf("status %v %q, want %v", st.Code, st.Message, tt.want)
			}
		})
	}
	// The relay still serves, and stored nothing.
	if d := r.dump(t); len(d) != 0 {
		t.Fatalf("bad frames stored %d entries", len(d))
	}
	if m := rawRequest(t, h, r, good, true); m.(*statusMsg).Code != CodeOK {
		t.Fatalf("good publish after bad frames: %+v", m)
	}
	if _, err := NewClient(h).Fetch(testCtx(t), r.h.ID(), f.acct.ID()); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, r.srv.met.requests.WithLabelValues("none", "too_large")); got != 3 {
		t.Errorf("too_large counter = %v, want 3", got)
	}
}

// A client that never finishes its request is cut off by the deadline.
func TestStalledClient(t *testing.T) {
	r := newRelay(t)
	r.srv.timeout = 200 * time.Millisecond
	h := newHost(t)
	connect(t, h, r.h)
	str, err := h.NewStream(testCtx(t), r.h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Reset()
	if _, err := str.Write([]byte{0, 0, 0, 33, byte(typeFetch), 1}); err != nil {
		t.Fatal(err)
	}
	_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(str)
	if err == nil {
		t.Fatal("stalled stream ended cleanly")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stalled stream lived %v", d)
	}
}

func TestClientRefusesLocally(t *testing.T) {
	// Rejected before any stream is opened: no host needed.
	c := NewClient(nil)
	f := newFixture(t, rng, 1)
	rec := signRecord(t, f.devs[0], 1)
	rec.Relays = slices.Repeat(rec.Relays, MaxRelays+1)
	if err := c.Publish(testCtx(t), "", f.sign(t), nil, rec); !errors.Is(err, ErrMalformed) {
		t.Fatalf("publish with a bad record: %v", err)
	}
	if err := c.Publish(testCtx(t), "", nil, nil, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("publish without a list: %v", err)
	}
}

func TestServerLifecycle(t *testing.T) {
	h := newHost(t)
	db, err := storage.Open(storage.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := NewServer(Config{Host: h}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("no DB: %v", err)
	}
	if _, err := NewServer(Config{DB: db}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("no host: %v", err)
	}

	reg := prometheus.NewRegistry()
	s, err := NewServer(Config{DB: db, Host: h, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(h.Mux().Protocols(), ProtocolID) {
		t.Fatal("NewServer registered the handler")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	if !slices.Contains(h.Mux().Protocols(), ProtocolID) {
		t.Fatal("Start did not register the handler")
	}
	// A second server cannot register the same metrics.
	s2, err := NewServer(Config{DB: db, Host: newHost(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err == nil {
		t.Fatal("duplicate metrics registered")
	}

	// Close resets a stream in the middle of a request and waits.
	c := newHost(t)
	connect(t, c, h)
	str, err := c.NewStream(testCtx(t), h.ID(), ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.Write([]byte{0, 0, 0, 33}); err != nil {
		t.Fatal(err)
	}
	waitStreams(t, s, 1)
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_ = str.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(str); err == nil {
		t.Fatal("stream survived Close")
	}
	if slices.Contains(h.Mux().Protocols(), ProtocolID) {
		t.Fatal("Close left the handler")
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Fatalf("metrics left registered: %d, %v", len(mfs), err)
	}
	// Close before Start is fine too.
	s3, err := NewServer(Config{DB: db, Host: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
}

func waitStreams(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.streams.Open()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
