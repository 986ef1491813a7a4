package ratchet

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden_transcript.hex and the fuzz seed corpora")

const goldenPath = "testdata/golden_transcript.hex"

// goldenTranscript plays a fixed conversation from a seeded reader (keys,
// PQXDH secret and every ratchet key come from it) and returns every message
// and the final states, hex encoded one per line.
func goldenTranscript(t *testing.T) []byte {
	r := testRand("peergram/ratchet golden v1")
	var out bytes.Buffer
	line := func(label string, b []byte) { fmt.Fprintf(&out, "%s %x\n", label, b) }
	out.WriteString("# crypto/ratchet golden transcript v1; regenerate: go test -run TestGolden -update\n")

	sk := make([]byte, 32)
	r.Read(sk)
	spk, err := newKeyPair(r)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := NewInitiator(r, sk, spk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewResponder(sk, spk)
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("golden associated data")
	line("shared-key", sk)
	line("responder-prekey", spk.Bytes())
	line("ad", ad)

	party := map[string]*Session{"a": alice, "b": bob}
	msgs := map[string][]byte{}
	// Each step is "send <name>" (the first letter names the sender) or
	// "recv <name>".
	script := []string{
		"send a0", "send a1", "send a2", "recv a2", "recv a0",
		"send b0", "send b1", "recv b1",
		"send a3", "recv a3", "recv a1", "recv b0",
		"send b2", "send b3", "recv b3", "recv b2",
		"send a4", "send a5", "recv a5", // a4 stays in Bob's skipped keys
		"send b4", "recv b4",
	}
	for _, step := range script {
		var verb, name string
		fmt.Sscan(step, &verb, &name)
		from, to := party[name[:1]], party[map[string]string{"a": "b", "b": "a"}[name[:1]]]
		pt := []byte("message " + name)
		switch verb {
		case "send":
			msgs[name] = encrypt(t, from, pt, ad)
			line("msg-"+name, msgs[name])
		case "recv":
			decrypt(t, to, r, msgs[name], ad, pt)
		}
	}
	line("state-initiator", marshal(t, alice))
	line("state-responder", marshal(t, bob))
	return out.Bytes()
}

// TestGolden reproduces testdata/golden_transcript.hex byte for byte.
func TestGolden(t *testing.T) {
	got := goldenTranscript(t)
	if *update {
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := range min(len(gl), len(wl)) {
		if !bytes.Equal(gl[i], wl[i]) {
			t.Fatalf("%s line %d differs:\n got %s\nwant %s", goldenPath, i+1, gl[i], wl[i])
		}
	}
	t.Fatalf("%s: %d lines, want %d", goldenPath, len(gl), len(wl))
}

// TestGoldenDecodes checks the committed transcript's states decode and that
// the responder's state still opens the message it skipped.
func TestGoldenDecodes(t *testing.T) {
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string][]byte{}
	for _, l := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(l, []byte(" "))
		if !ok || bytes.HasPrefix(l, []byte("#")) {
			continue
		}
		if fields[string(k)], err = hex.DecodeString(string(v)); err != nil {
			t.Fatal(err)
		}
	}
	bob, err := Unmarshal(fields["state-responder"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(fields["state-initiator"]); err != nil {
		t.Fatal(err)
	}
	decrypt(t, bob, testRand("x"), fields["msg-a4"], fields["ad"], []byte("message a4"))
	decryptFails(t, bob, testRand("x"), fields["msg-a5"], fields["ad"], ErrDuplicate)
}

// writeCorpus writes or checks one fuzz target's seed corpus under
// testdata/fuzz/<target>/ in the format of go test's corpus files.
func writeCorpus(t *testing.T, target string, seeds [][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range seeds {
		path := filepath.Join(dir, fmt.Sprintf("seed-%03d", i))
		content := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", s)
		if *update {
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("%s is stale (run with -update)", path)
		}
	}
}
