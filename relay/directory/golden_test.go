package directory

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
)

var update = flag.Bool("update", false, "rewrite testdata golden files and fuzz seed corpora")

// goldenSeed feeds the ChaCha8 stream that makes every golden key.
var goldenSeed = [32]byte([]byte("peergram relay/directory golden!"))

// golden holds objects derived from goldenSeed. The order of reads from
// the stream is part of the golden output.
type golden struct {
	f       *fixture
	list    *identity.DeviceList
	bundle  *pqxdh.Bundle // device 0, two one-time prekeys of each kind
	record  *Record       // device 0
	record1 *Record       // device 1, no relays
}

func makeGolden(t testing.TB) *golden {
	t.Helper()
	r := rand.NewChaCha8(goldenSeed)
	g := &golden{f: newFixture(t, r, 2)}
	g.list = g.f.sign(t)
	g.bundle = genPrekeys(t, r, g.f.devs[0], 2).Bundle(g.f.devs[0])
	id := testPeerID(t)
	var err error
	g.record, err = SignRecord(g.f.devs[0], Record{
		PeerID: id,
		Relays: []string{"/ip4/198.51.100.7/tcp/4001/p2p/" + id.String(), "/ip6/2001:db8::7/udp/4001/quic-v1/p2p/" + id.String()},
		Issued: 1767225600,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.record1, err = SignRecord(g.f.devs[1], Record{PeerID: id, Issued: 1767225601})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustMarshal(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (g *golden) publish(t testing.TB) *publishMsg {
	return &publishMsg{List: mustMarshal(t, g.list), Bundle: mustMarshal(t, g.bundle), Record: mustMarshal(t, g.record)}
}

func (g *golden) entries(t testing.TB) *entriesMsg {
	taken := *g.bundle
	return &entriesMsg{List: mustMarshal(t, g.list), Entries: []entry{
		{Device: g.f.devs[0].ID(), Bundle: mustMarshal(t, taken.Take()), Record: mustMarshal(t, g.record)},
		{Device: g.f.devs[1].ID(), Record: mustMarshal(t, g.record1)},
	}}
}

// TestGolden pins the wire format: a change to any of these bytes breaks
// every deployed peer. Run with -update to rewrite them (and the fuzz
// seeds) after an intended change.
func TestGolden(t *testing.T) {
	g := makeGolden(t)
	cases := []struct {
		name string
		b    []byte
	}{
		{"record", mustMarshal(t, g.record)},
		{"frame_publish", appendFrame(nil, g.publish(t))},
		{"frame_fetch", appendFrame(nil, &fetchMsg{Account: g.list.Account})},
		{"frame_status", appendFrame(nil, &statusMsg{Code: CodeGap, Message: "device list v3 after v1"})},
		{"frame_entries", appendFrame(nil, g.entries(t))},
		{"frame_stock", appendFrame(nil, &stockMsg{Device: g.f.devs[0].ID()})},
		{"frame_status_stock", appendFrame(nil, &statusMsg{Code: CodeOK, Message: "49+50 one-time prekeys stored", HasStock: true, X25519: 49, MLKEM: 50})},
		{"frame_history", appendFrame(nil, &historyMsg{Account: g.list.Account, From: 2, To: 9})},
		{"frame_lists", appendFrame(nil, &listsMsg{Lists: [][]byte{mustMarshal(t, g.list)}})},
	}
	for _, c := range cases {
		path := filepath.Join("testdata", "golden_"+c.name+".hex")
		if *update {
			writeFile(t, path, []byte(hex.EncodeToString(c.b)+"\n"))
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(c.b); got != strings.TrimSpace(string(want)) {
			t.Errorf("%s differs from %s", c.name, path)
		}
	}
	if *update {
		writeFuzzCorpus(t, g)
	}

	// The golden frames decode to verified objects.
	ans, _, err := decodeFrame(appendFrame(nil, g.entries(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAnswer(ans, g.list.Account, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := validatePublish(g.publish(t)); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeFuzzCorpus writes seed inputs in Go's corpus file format.
func writeFuzzCorpus(t *testing.T, g *golden) {
	t.Helper()
	seed := func(target, name string, b []byte) {
		writeFile(t, filepath.Join("testdata", "fuzz", target, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b))
	}
	rec := mustMarshal(t, g.record)
	seed("FuzzParseRecord", "valid", rec)
	seed("FuzzParseRecord", "no_relays", mustMarshal(t, g.record1))
	seed("FuzzParseRecord", "truncated", rec[:len(rec)/2])
	seed("FuzzParseRecord", "unknown_version", append([]byte{2}, rec[1:]...))

	pub := appendFrame(nil, g.publish(t))
	ent := appendFrame(nil, g.entries(t))
	seed("FuzzDecodeFrame", "publish", pub)
	seed("FuzzDecodeFrame", "fetch", appendFrame(nil, &fetchMsg{Account: g.list.Account}))
	seed("FuzzDecodeFrame", "status", appendFrame(nil, &statusMsg{Code: CodeFork, Message: "two lists v2"}))
	seed("FuzzDecodeFrame", "entries", ent)
	seed("FuzzDecodeFrame", "stock", appendFrame(nil, &stockMsg{Device: g.f.devs[0].ID()}))
	seed("FuzzDecodeFrame", "status_stock", appendFrame(nil, &statusMsg{Code: CodeOK, Message: "2+2", HasStock: true, X25519: 2, MLKEM: 2}))
	seed("FuzzDecodeFrame", "history", appendFrame(nil, &historyMsg{Account: g.list.Account, From: 1, To: 3}))
	seed("FuzzDecodeFrame", "lists", appendFrame(nil, &listsMsg{Lists: [][]byte{mustMarshal(t, g.list), mustMarshal(t, g.list)}}))
	seed("FuzzDecodeFrame", "oversized", []byte{0xff, 0xff, 0xff, 0xff, byte(typePublish)})
	seed("FuzzDecodeFrame", "truncated", pub[:len(pub)-3])

	body := func(frame []byte) []byte { return bytes.Clone(frame[headerSize:]) }
	seed("FuzzPublish", "full", body(pub))
	seed("FuzzPublish", "list_only", body(appendFrame(nil, &publishMsg{List: mustMarshal(t, g.list)})))
	seed("FuzzPublish", "record_only", body(appendFrame(nil, &publishMsg{List: mustMarshal(t, g.list), Record: rec})))

	seed("FuzzFetchAnswer", "entries", body(ent))
	seed("FuzzFetchAnswer", "list_only", body(appendFrame(nil, &entriesMsg{List: mustMarshal(t, g.list)})))
}
