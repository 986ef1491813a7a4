package blobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/internal/protoframe"
	"github.com/peergram/peergram/storage"
)

type user struct {
	acct *identity.AccountKey
	dev  *identity.DeviceKey
	cert *identity.DeviceCert
	c    *Client
}

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

type relayUnderTest struct {
	h   host.Host
	db  *storage.DB
	srv *Server
	dir string
	now *time.Time
	mu  *sync.Mutex
}

func startRelay(t *testing.T, mod func(*Config)) *relayUnderTest {
	t.Helper()
	dir := t.TempDir()
	db, err := storage.Open(storage.Options{Dir: dir, MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	now, mu := time.Now(), &sync.Mutex{}
	r := &relayUnderTest{h: newHost(t), db: db, dir: dir, now: &now, mu: mu}
	cfg := Config{Host: r.h, DB: db, Dir: filepath.Join(dir, "blobs"), Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return *r.now }}
	if mod != nil {
		mod(&cfg)
	}
	if r.srv, err = NewServer(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Close(); db.Close() })
	return r
}

func (r *relayUnderTest) advance(d time.Duration) {
	r.mu.Lock()
	*r.now = r.now.Add(d)
	r.mu.Unlock()
}

func newUser(t *testing.T, r *relayUnderTest) *user {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "d", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t)
	if err := h.Connect(context.Background(), peer.AddrInfo{ID: r.h.ID(), Addrs: r.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return &user{acct, dev, cert, NewClient(h)}
}

func (u *user) put(t *testing.T, r *relayUnderTest, token Token, data []byte) error {
	t.Helper()
	return u.c.Put(context.Background(), r.h.ID(), u.dev, u.cert, token, data)
}

func blob(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func token(t *testing.T) Token {
	t.Helper()
	tok, err := NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestPutGet: an uploaded blob is read back whole and by range, with its
// token; Has tells which of a file's blobs the relay holds (to resume an
// upload); nothing of the content shows in the relay's files in clear —
// the blobs are what the uploader sent, which in Peergram is ciphertext,
// so here a marker is uploaded to show the relay keeps blobs only where
// the store's own files hold them (the node's tests assert no marker).
func TestPutGet(t *testing.T) {
	r := startRelay(t, nil)
	alice, bob := newUser(t, r), newUser(t, r)
	ctx := context.Background()
	tok := token(t)
	data := blob(MaxBlob)
	if err := alice.put(t, r, tok, data); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	got, size, err := bob.c.Get(ctx, r.h.ID(), tok, h, 0, 0)
	if err != nil || !bytes.Equal(got, data) || size != uint64(len(data)) {
		t.Fatalf("whole: %d bytes of %d (%v)", len(got), size, err)
	}
	got, size, err = bob.c.Get(ctx, r.h.ID(), tok, h, 1000, 500)
	if err != nil || !bytes.Equal(got, data[1000:1500]) || size != uint64(len(data)) {
		t.Fatalf("range: %d bytes (%v)", len(got), err)
	}
	if _, _, err := bob.c.Get(ctx, r.h.ID(), tok, h, uint64(len(data))+1, 0); err == nil {
		t.Fatal("an offset past the end")
	}
	other := blob(100)
	have, err := bob.c.Has(ctx, r.h.ID(), tok, [][32]byte{sha256.Sum256(other), h})
	if err != nil || have[0] || !have[1] {
		t.Fatalf("has: %v (%v)", have, err)
	}
	// Uploading again is idempotent: no second charge.
	if err := alice.put(t, r, tok, data); err != nil {
		t.Fatal(err)
	}
	if used, total := r.srv.Usage(alice.acct.ID()); used != int64(len(data)) || total != int64(len(data)) {
		t.Fatalf("usage %d, total %d after two uploads of %d bytes", used, total, len(data))
	}
}

// TestCapability: a blob is readable only with the token it was
// uploaded with; another token — another file's, or drawn at random —
// gets the answer of a blob that does not exist, by Get and by Has.
func TestCapability(t *testing.T) {
	r := startRelay(t, nil)
	alice, mallory := newUser(t, r), newUser(t, r)
	ctx := context.Background()
	tok, malloryTok := token(t), token(t)
	secret := blob(4096)
	if err := alice.put(t, r, tok, secret); err != nil {
		t.Fatal(err)
	}
	if err := mallory.put(t, r, malloryTok, blob(100)); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(secret)
	for name, tk := range map[string]Token{"another file's token": malloryTok, "a random token": token(t), "the zero token": {}} {
		if _, _, err := mallory.c.Get(ctx, r.h.ID(), tk, h, 0, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v", name, err)
		}
		if have, err := mallory.c.Has(ctx, r.h.ID(), tk, [][32]byte{h}); err != nil || have[0] {
			t.Errorf("%s: has %v (%v)", name, have, err)
		}
	}
	// A missing blob answers the same.
	if _, _, err := mallory.c.Get(ctx, r.h.ID(), tok, sha256.Sum256([]byte("none")), 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing blob: %v", err)
	}
}

// TestPutRefusals: a blob that does not match its hash, a forged or
// stale signature, a certificate that does not verify, an oversized or
// malformed frame.
func TestPutRefusals(t *testing.T) {
	r := startRelay(t, nil)
	alice, mallory := newUser(t, r), newUser(t, r)
	ctx := context.Background()
	tok := token(t)
	data := blob(1000)
	send := func(m *putMsg) error {
		_, err := alice.c.roundTrip(ctx, r.h.ID(), typePut, m.appendBody(nil), typeStatus)
		return err
	}
	good := func() *putMsg {
		raw, _ := alice.cert.MarshalBinary()
		m := &putMsg{Hash: sha256.Sum256(data), TokenHash: tok.hash(), Cert: raw, Time: time.Now().UnixMilli(), Data: data}
		m.Sig = alice.dev.Sign(PutLabel, putSigned(string(r.h.ID()), m.Hash, m.TokenHash, m.Time))
		return m
	}
	if err := send(good()); err != nil {
		t.Fatalf("a good put: %v", err)
	}
	malloryCert, _ := mallory.cert.MarshalBinary()
	otherRelay := newHost(t)
	cases := map[string]func(*putMsg){
		"data not matching its hash": func(m *putMsg) { m.Data = blob(1000) },
		"empty data":                 func(m *putMsg) { m.Data = nil },
		"another device's signature": func(m *putMsg) {
			m.Sig = mallory.dev.Sign(PutLabel, putSigned(string(r.h.ID()), m.Hash, m.TokenHash, m.Time))
		},
		"another account's certificate": func(m *putMsg) { m.Cert = malloryCert },
		"a signature for another relay": func(m *putMsg) {
			m.Sig = alice.dev.Sign(PutLabel, putSigned(string(otherRelay.ID()), m.Hash, m.TokenHash, m.Time))
		},
		"an hour-old signature": func(m *putMsg) {
			m.Time -= time.Hour.Milliseconds()
			m.Sig = alice.dev.Sign(PutLabel, putSigned(string(r.h.ID()), m.Hash, m.TokenHash, m.Time))
		},
		"a certificate that fails":       func(m *putMsg) { m.Cert = bytes.Clone(m.Cert); m.Cert[len(m.Cert)-1] ^= 1 },
		"a signature over another token": func(m *putMsg) { m.TokenHash[0] ^= 1 },
		"a signature over another hash":  func(m *putMsg) { m.Hash[0] ^= 1 },
	}
	for name, mod := range cases {
		m := good()
		mod(m)
		var se *StatusError
		if err := send(m); !errors.As(err, &se) || se.Code != CodeInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	str, err := alice.c.h.NewStream(ctx, r.h.ID(), protocol.ID(ProtocolID))
	if err != nil {
		t.Fatal(err)
	}
	hdr := protoframe.Frame(typePut, nil)[:protoframe.HeaderSize]
	hdr[0], hdr[1], hdr[2], hdr[3] = 0, 0x20, 0, 0 // a 2 MiB frame, refused before its body is read
	_, _ = str.Write(hdr)
	_ = str.CloseWrite()
	b, _ := io.ReadAll(str)
	_, body, err := protoframe.Read(bytes.NewReader(b), bound)
	if st, derr := decodeStatus(body); err != nil || derr != nil || st.Code != CodeMalformed {
		t.Fatalf("an oversized frame: %+v %v %v", st, err, derr)
	}
	if used, _ := r.srv.Usage(alice.acct.ID()); used != int64(len(data)) {
		t.Fatalf("usage %d after refusals", used)
	}
}

// TestQuota: an upload over the account's quota is refused with a clear
// error; other accounts go on uploading; a deletion frees the quota.
func TestQuota(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.AccountQuota = 3000; c.Capacity = 5000 })
	alice, bob, carol := newUser(t, r), newUser(t, r), newUser(t, r)
	tok := token(t)
	a1, a2, a3 := blob(1000), blob(1000), blob(1001)
	for _, d := range [][]byte{a1, a2} {
		if err := alice.put(t, r, tok, d); err != nil {
			t.Fatal(err)
		}
	}
	var se *StatusError
	if err := alice.put(t, r, tok, a3); !errors.As(err, &se) || se.Code != CodeQuota {
		t.Fatalf("over quota: %v", err)
	}
	if err := bob.put(t, r, tok, blob(2000)); err != nil {
		t.Fatalf("another account: %v", err)
	}
	// The store is now at 4,000 of 5,000 bytes.
	if err := carol.put(t, r, tok, blob(1500)); !errors.As(err, &se) || se.Code != CodeFull {
		t.Fatalf("over capacity: %v", err)
	}
	if err := alice.c.Delete(context.Background(), r.h.ID(), alice.dev, alice.cert, [][32]byte{sha256.Sum256(a1)}); err != nil {
		t.Fatal(err)
	}
	if err := alice.put(t, r, tok, a3); err != nil {
		t.Fatalf("after a deletion: %v", err)
	}
}

// TestDeleteAndExpiry: a blob two accounts uploaded stays until both
// references are gone; a deletion signed by another account changes
// nothing; references expire after the retention and their bytes leave
// the store.
func TestDeleteAndExpiry(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.Retention = time.Hour })
	alice, bob, mallory := newUser(t, r), newUser(t, r), newUser(t, r)
	ctx := context.Background()
	tok := token(t)
	shared, mine := blob(5000), blob(6000)
	for _, u := range []*user{alice, bob} {
		if err := u.put(t, r, tok, shared); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.put(t, r, tok, mine); err != nil {
		t.Fatal(err)
	}
	hs, hm := sha256.Sum256(shared), sha256.Sum256(mine)
	readable := func(h [32]byte) bool {
		_, _, err := bob.c.Get(ctx, r.h.ID(), tok, h, 0, 10)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if err := mallory.c.Delete(ctx, r.h.ID(), mallory.dev, mallory.cert, [][32]byte{hs, hm}); err != nil {
		t.Fatal(err)
	}
	if !readable(hs) || !readable(hm) {
		t.Fatal("another account's deletion took a blob")
	}
	if err := alice.c.Delete(ctx, r.h.ID(), alice.dev, alice.cert, [][32]byte{hs}); err != nil {
		t.Fatal(err)
	}
	if !readable(hs) {
		t.Fatal("a blob another account references went")
	}
	if err := bob.c.Delete(ctx, r.h.ID(), bob.dev, bob.cert, [][32]byte{hs}); err != nil {
		t.Fatal(err)
	}
	if readable(hs) {
		t.Fatal("a blob nothing references is still served")
	}
	r.advance(2 * time.Hour)
	if readable(hm) {
		t.Fatal("an expired blob is served")
	}
	if n, err := r.srv.Sweep(); err != nil || n != 1 {
		t.Fatalf("sweep: %d (%v)", n, err)
	}
	if used, total := r.srv.Usage(alice.acct.ID()); used != 0 || total != 0 {
		t.Fatalf("after expiry: %d used, %d stored", used, total)
	}
	for _, h := range [][32]byte{hs, hm} {
		if _, err := os.Stat(r.srv.BlobPath(h)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a blob's file is left: %v", err)
		}
	}
}

// TestCountsSurviveRestart: the usage counted at start equals what was
// counted live; a blob file a crash left without a reference is removed
// at start, one with a reference kept.
func TestCountsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*storage.DB, *Server) {
		db, err := storage.Open(storage.Options{Dir: dir, MemTableSize: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := NewServer(Config{Host: newHost(t), DB: db, Dir: filepath.Join(dir, "blobs")})
		if err != nil {
			t.Fatal(err)
		}
		return db, srv
	}
	db, srv := open()
	acct := identity.AccountID{1}
	data := blob(777)
	h := sha256.Sum256(data)
	if _, err := srv.data.write(h, data, true); err != nil {
		t.Fatal(err)
	}
	orphan := sha256.Sum256([]byte("a crash between file and reference"))
	if _, err := srv.data.write(orphan, []byte("x"), true); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *storage.Txn) error {
		r := ref{size: 777, expires: time.Now().Add(time.Hour).UnixMilli()}
		return tx.Set(srv.refs, refKey(h, acct), r.marshal())
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, srv = open()
	defer db.Close()
	if used, total := srv.Usage(acct); used != 777 || total != 777 {
		t.Fatalf("counted at start: %d, %d", used, total)
	}
	if _, err := os.Stat(srv.BlobPath(orphan)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a file no reference names survived the start: %v", err)
	}
	if got, err := srv.Read(h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a referenced blob after the start: %v", err)
	}
}

// TestNoPanicOnGarbage: random frames of every type get an answer or a
// closed stream, never a crash (the fuzz tests go further).
func TestNoPanicOnGarbage(t *testing.T) {
	r := startRelay(t, nil)
	u := newUser(t, r)
	for typ := uint8(0); typ < 10; typ++ {
		str, err := u.c.h.NewStream(context.Background(), r.h.ID(), protocol.ID(ProtocolID))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = str.Write(protoframe.Frame(typ, blob(100)))
		_ = str.CloseWrite()
		_ = str.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(str)
		str.Close()
	}
	if err := u.put(t, r, token(t), blob(10)); err != nil {
		t.Fatalf("the relay after garbage: %v", err)
	}
}

// TestReadOnly: a node's own store (blobs it Adds) serves Get with the
// token and refuses uploads and deletions from the network.
func TestReadOnly(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.ReadOnly = true; c.Protocol = "/test/blob/1.0.0" })
	alice := newUser(t, r)
	ctx := context.Background()
	tok := token(t)
	data := blob(2048)
	h, err := r.srv.Add(tok, alice.acct.ID(), data)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClientFor(alice.c.h, "/test/blob/1.0.0")
	if got, _, err := c.Get(ctx, r.h.ID(), tok, h, 0, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: %v", err)
	}
	var se *StatusError
	// Refused by type, before the body is read.
	if err := c.Put(ctx, r.h.ID(), alice.dev, alice.cert, tok, blob(10)); !errors.As(err, &se) || se.Code != CodeMalformed {
		t.Fatalf("a put to a read-only store: %v", err)
	}
	if err := c.Delete(ctx, r.h.ID(), alice.dev, alice.cert, [][32]byte{h}); !errors.As(err, &se) || se.Code != CodeMalformed {
		t.Fatalf("a delete from a read-only store: %v", err)
	}
	if err := r.srv.Drop(alice.acct.ID(), h); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, r.h.ID(), tok, h, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Drop: %v", err)
	}
}

// TestRangeOverflow: a Get whose offset + length overflows (review
// finding: it crashed the relay) answers the rest of the blob.
func TestRangeOverflow(t *testing.T) {
	r := startRelay(t, nil)
	u := newUser(t, r)
	tok := token(t)
	data := blob(100)
	if err := u.put(t, r, tok, data); err != nil {
		t.Fatal(err)
	}
	got, size, err := u.c.Get(context.Background(), r.h.ID(), tok, sha256.Sum256(data), 1, ^uint64(0))
	if err != nil || size != 100 || !bytes.Equal(got, data[1:]) {
		t.Fatalf("%d bytes of %d (%v)", len(got), size, err)
	}
}

// TestGetMany: many blobs over one stream, in order; one the token does
// not read is answered as not found in its place and the rest follow.
func TestGetMany(t *testing.T) {
	r := startRelay(t, nil)
	u := newUser(t, r)
	tok := token(t)
	var hashes [][32]byte
	var want [][]byte
	for i := range 5 {
		d := blob(1000 + i)
		if err := u.put(t, r, tok, d); err != nil {
			t.Fatal(err)
		}
		hashes, want = append(hashes, sha256.Sum256(d)), append(want, d)
	}
	hashes = append(hashes[:2], append([][32]byte{sha256.Sum256([]byte("none"))}, hashes[2:]...)...)
	want = append(want[:2], append([][]byte{nil}, want[2:]...)...)
	var got [][]byte
	err := u.c.GetMany(context.Background(), r.h.ID(), tok, hashes, func(i int, data []byte, err error) error {
		if (err != nil) != (want[i] == nil) || (err != nil && !errors.Is(err, ErrNotFound)) {
			t.Errorf("blob %d: %v", i, err)
		}
		got = append(got, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("blob %d differs", i)
		}
	}
}

// TestPutMany: many uploads over one stream, each answered in order; one
// over the quota is refused in its place and the others stored.
func TestPutMany(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.AccountQuota = 3500 })
	u := newUser(t, r)
	tok := token(t)
	blobsIn := [][]byte{blob(1000), blob(1000), blob(1000), blob(1000), blob(400)}
	var codes []error
	err := u.c.PutMany(context.Background(), r.h.ID(), u.dev, u.cert, tok, len(blobsIn), func(i int) ([]byte, error) { return blobsIn[i], nil },
		func(i int, err error) error { codes = append(codes, err); return nil })
	if err != nil {
		t.Fatal(err)
	}
	var se *StatusError
	if len(codes) != 5 || codes[0] != nil || codes[2] != nil || !errors.As(codes[3], &se) || se.Code != CodeQuota || codes[4] != nil {
		t.Fatalf("answers %v", codes)
	}
	for i, d := range blobsIn {
		_, _, err := u.c.Get(context.Background(), r.h.ID(), tok, sha256.Sum256(d), 0, 0)
		if (err == nil) != (i != 3) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}
}
