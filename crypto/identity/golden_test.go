package identity

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
)

var update = flag.Bool("update", false, "rewrite testdata golden files and fuzz seed corpora")

// goldenSeed feeds the ChaCha8 stream that makes every golden key.
var goldenSeed = [32]byte([]byte("peergram crypto/identity golden!"))

// goldenObjects derives keys, certificates and lists from goldenSeed. The
// order of reads from the stream is part of the golden output.
type goldenObjects struct {
	acct, peer *AccountKey
	dev1, dev2 *DeviceKey
	cert1      *DeviceCert
	cert2      *DeviceCert
	v1, v2     *DeviceList
}

func makeGolden(t *testing.T) *goldenObjects {
	t.Helper()
	r := rand.NewChaCha8(goldenSeed)
	var g goldenObjects
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	g.acct, err = NewAccountKey(r)
	must(err)
	g.peer, err = NewAccountKey(r)
	must(err)
	g.dev1, err = NewDeviceKey(r)
	must(err)
	g.dev2, err = NewDeviceKey(r)
	must(err)
	g.cert1, err = g.acct.CertifyDevice(g.dev1, "laptop", 1767225600)
	must(err)
	g.cert2, err = g.acct.CertifyDevice(g.dev2, "телефон", 1767312000)
	must(err)
	g.v1, err = g.acct.SignDeviceList(nil, []DeviceCert{*g.cert1}, 1767225600)
	must(err)
	g.v2, err = g.acct.SignDeviceList(g.v1, []DeviceCert{*g.cert1, *g.cert2}, 1767312000)
	must(err)
	return &g
}

func marshal(t *testing.T, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	g := makeGolden(t)
	files := map[string][]byte{
		"golden_account_key.hex":    marshal(t, g.acct),
		"golden_device_key.hex":     marshal(t, g.dev1),
		"golden_device_cert.hex":    marshal(t, g.cert1),
		"golden_device_list_v1.hex": marshal(t, g.v1),
		"golden_device_list_v2.hex": marshal(t, g.v2),
	}
	h := g.v2.Hash()
	text := fmt.Sprintf("account_id %s\naccount_link %s\ndevice_id %s\nlist_v2_hash %x\nsafety_number %s\n",
		g.acct.ID(), g.acct.ID().Link(), g.dev1.ID(), h[:], SafetyNumber(g.acct.ID(), g.peer.ID()))

	if *update {
		for name, b := range files {
			writeFile(t, name, []byte(hex.EncodeToString(b)+"\n"))
		}
		writeFile(t, "golden_text.txt", []byte(text))
		writeFuzzCorpus(t, g)
	}

	for name, want := range files {
		stored := readHex(t, name)
		if !bytes.Equal(want, stored) {
			t.Errorf("%s: encoding changed (run go test -run TestGolden -update if intended)\n got  %x\n want %x", name, want, stored)
		}
	}
	if stored, err := os.ReadFile(filepath.Join("testdata", "golden_text.txt")); err != nil || string(stored) != text {
		t.Errorf("golden_text.txt changed (%v):\n%s\nwant\n%s", err, text, stored)
	}
}

// TestGoldenDecodes checks that the stored encodings still decode and
// verify, independent of how they were produced.
func TestGoldenDecodes(t *testing.T) {
	acct, err := UnmarshalAccountKey(readHex(t, "golden_account_key.hex"))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := UnmarshalDeviceKey(readHex(t, "golden_device_key.hex"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseDeviceCert(readHex(t, "golden_device_cert.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Verify(); err != nil || cert.Account != acct.ID() || cert.Device != dev.ID() {
		t.Fatalf("golden cert: %v", err)
	}
	v1, err := ParseDeviceList(readHex(t, "golden_device_list_v1.hex"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := ParseDeviceList(readHex(t, "golden_device_list_v2.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := CheckChain(nil, []*DeviceList{v1, v2}); err != nil || got != v2 {
		t.Fatalf("golden chain: %v", err)
	}
	if _, err := v2.Lookup(dev.ID()); err != nil {
		t.Fatal(err)
	}
}

func readHex(t *testing.T, name string) []byte {
	t.Helper()
	s, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeFuzzCorpus writes seed inputs in Go's corpus file format.
func writeFuzzCorpus(t *testing.T, g *goldenObjects) {
	t.Helper()
	seedBytes := func(target, name string, b []byte) {
		writeFile(t, filepath.Join("fuzz", target, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b))
	}
	seedString := func(target, name, s string) {
		writeFile(t, filepath.Join("fuzz", target, name), fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\n", s))
	}
	v1, v2 := marshal(t, g.v1), marshal(t, g.v2)
	empty, err := g.acct.SignDeviceList(g.v2, nil, 1767398400)
	if err != nil {
		t.Fatal(err)
	}
	seedBytes("FuzzParseDeviceList", "v1", v1)
	seedBytes("FuzzParseDeviceList", "v2", v2)
	seedBytes("FuzzParseDeviceList", "v3_empty", marshal(t, empty))
	seedBytes("FuzzParseDeviceList", "truncated", v2[:len(v2)/2])
	seedBytes("FuzzParseDeviceList", "unknown_version", append([]byte{2}, v1[1:]...))

	cert := marshal(t, g.cert2)
	seedBytes("FuzzParseDeviceCert", "valid", cert)
	seedBytes("FuzzParseDeviceCert", "empty_name", func() []byte {
		c, err := g.acct.CertifyDevice(g.dev1, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		return marshal(t, c)
	}())
	seedBytes("FuzzParseDeviceCert", "truncated", cert[:100])

	id := g.acct.ID()
	seedString("FuzzParseAccountID", "string", id.String())
	seedString("FuzzParseAccountID", "link", " "+id.Link()+"\n")
	seedString("FuzzParseAccountID", "upper", strings.ToUpper(id.String()))
	seedString("FuzzParseAccountID", "bad_checksum", id.String()[:61]+"a")

	key := marshal(t, g.dev1)
	seedBytes("FuzzUnmarshalDeviceKey", "valid", key)
	seedBytes("FuzzUnmarshalDeviceKey", "account_key", marshal(t, g.acct))
	seedBytes("FuzzUnmarshalDeviceKey", "long", append(bytes.Clone(key), 0))
}
