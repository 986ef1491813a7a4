package mailbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/storage"
)

// v1Env and v1Idx encode values as relays before value version 2 wrote
// them (layout frozen here on purpose).
func v1Env(id EnvelopeID, deposited time.Time, env []byte) []byte {
	v := []byte{valueV1}
	v = append(v, id[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(deposited.UnixNano()))
	return append(v, env...)
}

func v1Idx(seq uint64, size int) []byte {
	v := []byte{valueV1}
	v = binary.BigEndian.AppendUint64(v, seq)
	return binary.BigEndian.AppendUint32(v, uint32(size))
}

// TestStoreV1Upgrade: a store written by a relay of the previous layout
// (v1 values, counters in mailbox.meta) is counted, delivered, acked and
// expired by this one.
func TestStoreV1Upgrade(t *testing.T) {
	dir := t.TempDir()
	_, fresh := newDevice(t)
	key, addr := newDevice(t)
	_, old := newDevice(t)
	db, err := storage.Open(storage.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	env, idx, meta := db.Keyspace("mailbox.env"), db.Keyspace("mailbox.idx"), db.Keyspace("mailbox.meta")
	write := func(a Address, seq uint64, i int, at time.Time) {
		t.Helper()
		body := envBody(i, 100)
		if err := db.Update(func(tx *storage.Txn) error {
			if err := tx.SetTTL(env, envKey(a, seq), v1Env(envID(i), at, body), 30*24*time.Hour); err != nil {
				return err
			}
			k := idxKey(a, envID(i))
			if err := tx.SetTTL(idx, k[:], v1Idx(seq, len(body)), 30*24*time.Hour); err != nil {
				return err
			}
			return tx.SetTTL(meta, a[:], []byte{1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 9}, time.Hour)
		}); err != nil {
			t.Fatal(err)
		}
	}
	seqs, err := db.Sequence(env, "seq")
	if err != nil {
		t.Fatal(err)
	}
	next := func() uint64 {
		n, err := seqs.Next()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	now := time.Now()
	write(old, next(), 7, now.Add(-40*24*time.Hour)) // past TTL: the sweep takes it
	for i := range 3 {
		write(addr, next(), i, now)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r := startRelay(t, dir, nil, Config{})
	eventually(t, "v1 expiry", func() bool { n, _ := r.stats(old); return n == 0 })
	if got := gaugeValue(t, r.srv.met.heldEnvelopes); got != 3 {
		t.Fatalf("held_envelopes = %v, want the 3 live v1 envelopes", got)
	}
	c, _ := newClient(t, r)
	// New deposits sort after the old ones (the sequence carries on).
	if err := c.Deposit(testCtx(t), r.h.ID(), addr, envID(3), envBody(3, 100)); err != nil {
		t.Fatal(err)
	}
	col := subscribe(t, c, r, key, nil)
	got := col.waitFor(t, 4)
	for i, d := range got {
		if d.ID != envID(i) || !bytes.Equal(d.Envelope, envBody(i, 100)) {
			t.Fatalf("delivery %d = %v", i, d.ID)
		}
	}
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(addr); n != 0 {
		t.Fatalf("%d left after acks", n)
	}
	if got := gaugeValue(t, r.srv.met.heldEnvelopes); got != 0 {
		t.Fatalf("held_envelopes = %v after acks", got)
	}
	if err := c.Deposit(testCtx(t), r.h.ID(), fresh, envID(1), []byte("v2")); err != nil {
		t.Fatal(err)
	}
}

// TestCommitterDiskFull: in a batch that stores and deletes, a full disk
// fails the stores and still commits the deletions.
func TestCommitterDiskFull(t *testing.T) {
	dir := t.TempDir()
	r := startRelay(t, dir, nil, Config{StrangerPercent: 100})
	c, _ := newClient(t, r)
	_, addr := newDevice(t)
	for i := range 2 {
		if err := c.Deposit(testCtx(t), r.h.ID(), addr, envID(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var seq uint64
	if err := r.db.View(func(tx *storage.Txn) error {
		k := idxKey(addr, envID(0))
		v, err := tx.Get(r.srv.st.idx, k[:])
		if err == nil {
			var e idxEntry
			e, err = parseIdx(v)
			seq = e.seq
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r.stop()
	db, err := storage.Open(storage.Options{Dir: dir, MinFreeBytes: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cfg, _ := Config{DB: db, Host: newHost(t, nil), StrangerPercent: 100}.withDefaults()
	st := newStore(db, &cfg, cfg.Logger, newMetrics())
	if err := st.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.close() })
	com := newCommitter(st, st.met, nil, nil, func([]Address) {})
	if err := com.init(); err != nil {
		t.Fatal(err)
	}
	res := make(chan outcome, 1)
	acked := -1
	b, _ := com.build([]request{
		{dep: &depositReq{msg: &depositMsg{To: addr, ID: envID(5), Envelope: []byte("new")}, ans: chanAnswer(res)}},
		{ack: &ackReq{addr: addr, items: []ackItem{{id: envID(0), seq: seq, size: 1, blind: true}}, done: func(n int) { acked = n }}},
	})
	if len(b.reqs) != 2 || b.err != nil {
		t.Fatalf("built %d requests, %v", len(b.reqs), b.err)
	}
	com.apply(b)
	com.complete(<-com.done)
	if o := <-res; o.code != CodeUnavailable {
		t.Fatalf("deposit on a full disk = %v %q", o.code, o.text)
	}
	if acked != 1 {
		t.Fatalf("ack in the same batch deleted %d", acked)
	}
	if n, _, _ := st.stats(addr); n != 1 {
		t.Fatalf("mailbox holds %d, want 1", n)
	}
}

// FuzzParseStored feeds arbitrary bytes to the decoders of stored values
// (a damaged disk is not to be trusted either): they return an error or a
// value that encodes back to the same bytes' known prefix, never panic.
func FuzzParseStored(f *testing.F) {
	for _, seed := range storedSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if e, err := parseEnv(v); err == nil && v[0] == valueV2 {
			again := envValue(e.id, e.deposited, e.class, e.env)
			if !bytes.Equal(again, v) {
				t.Fatalf("envelope %x re-encodes to %x", v, again)
			}
		}
		if e, err := parseIdx(v); err == nil && v[0] == valueV2 {
			if again := idxValue(e); !bytes.Equal(again, v[:idxSizeV2]) {
				t.Fatalf("index %x re-encodes to %x", v, again)
			}
		}
		if r, err := parseOwner(v); err == nil {
			again := ownerValue(r)
			if !bytes.Equal(again, v[:len(again)]) {
				t.Fatalf("owner %x re-encodes to %x", v, again)
			}
		}
	})
}

func storedSeeds() [][]byte {
	var id EnvelopeID
	copy(id[:], "seed-envelope-id")
	rec := &ownerRecord{lastAuth: 1700000000, hashes: tokenHashes([]Token{{1}, {2}})}
	return [][]byte{
		envValue(id, 1700000000, classStranger, []byte("sealed")),
		v1Env(id, time.Unix(1700000000, 0), []byte("sealed")),
		idxValue(idxEntry{seq: 7, size: 6, deposited: 1700000000, class: classContact}),
		v1Idx(7, 6),
		ownerValue(rec),
		ownerValue(&ownerRecord{}),
		{valueV2},
		{ownerV1, 0, 0, 0, 0, 0, 0, 0, 0, 9},
		{},
	}
}

// TestWriteStoredCorpus writes the committed seed corpus of
// FuzzParseStored with -update, and checks it exists otherwise.
func TestWriteStoredCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseStored")
	if !*update {
		if ents, err := os.ReadDir(dir); err != nil || len(ents) == 0 {
			t.Fatalf("missing seed corpus %s (run with -update): %v", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range storedSeeds() {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
