package directory

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

// TestBounds checks the size constants of wire.go against real objects.
func TestBounds(t *testing.T) {
	acct, err := identity.NewAccountKey(rng)
	if err != nil {
		t.Fatal(err)
	}
	var certs []identity.DeviceCert
	name := strings.Repeat("n", 64)
	for range identity.MaxDevices {
		dev, err := identity.NewDeviceKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		c, err := acct.CertifyDevice(dev, name, 1)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, *c)
	}
	list, err := acct.SignDeviceList(nil, certs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mustMarshal(t, list)); n > maxListSize {
		t.Errorf("largest list is %d bytes > maxListSize %d", n, maxListSize)
	}

	f := newFixture(t, rng, 1)
	full := genPrekeys(t, rng, f.devs[0], 2).Bundle(f.devs[0])
	if n, want := len(mustMarshal(t, full)), bundleHeadSize+2*(oneTimeSize+oneTimePQSize); n != want {
		t.Errorf("bundle with 2+2 one-time prekeys is %d bytes, size constants say %d", n, want)
	}
	if n := len(mustMarshal(t, full.Take())); n != takenBundleSize {
		t.Errorf("taken bundle is %d bytes, want takenBundleSize %d", n, takenBundleSize)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	f := newFixture(t, rng, 1)
	msgs := []message{
		&publishMsg{List: []byte{1, 2}, Bundle: []byte{}, Record: []byte{3}},
		&fetchMsg{Account: f.acct.ID()},
		&statusMsg{Code: CodeFork, Message: "two lists"},
		&statusMsg{Code: CodeOK, Message: "", HasStock: true, X25519: 7, MLKEM: 1000},
		&stockMsg{Device: f.devs[0].ID()},
		&entriesMsg{List: []byte{9}, Entries: []entry{{Device: f.devs[0].ID(), Bundle: []byte{4}, Record: []byte{}}}},
		&entriesMsg{List: []byte{9}},
	}
	for _, m := range msgs {
		frame := appendFrame(nil, m)
		got, n, err := decodeFrame(frame)
		if err != nil || n != len(frame) {
			t.Fatalf("%T: %v (%d of %d bytes)", m, err, n, len(frame))
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%T: got %+v, want %+v", m, got, m)
		}
		// Fields appended by a later minor version are ignored.
		ext := append(frame, 0xee, 0xee)
		binary.BigEndian.PutUint32(ext, binary.BigEndian.Uint32(ext)+2)
		if got, _, err := decodeFrame(ext); err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("%T with appended bytes: %v", m, err)
		}
	}

	long := appendFrame(nil, &statusMsg{Code: CodeInternal, Message: strings.Repeat("x", 2*maxMessageLen)})
	got, _, err := decodeFrame(long)
	if err != nil || len(got.(*statusMsg).Message) != maxMessageLen {
		t.Fatalf("long status text: %v", err)
	}
}

func TestFrameDecodeErrors(t *testing.T) {
	frame := func(typ frameType, body ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
		return append(append(b, byte(typ)), body...)
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"status text over bound", frame(typeStatus, 7, 0x02, 0x01), ErrMalformed},
		{"status text truncated", frame(typeStatus, 7, 0, 5, 'a'), ErrMalformed},
		{"entries count over bound", frame(typeEntries, 0, 0, 0, 0, 0, identity.MaxDevices+1), ErrMalformed},
		{"entries count beyond input", frame(typeEntries, 0, 0, 0, 0, 0, 3), ErrMalformed},
		{"entries bundle over bound", frame(typeEntries, append(append([]byte{0, 0, 0, 0, 0, 1}, make([]byte, 32)...), 0, 1, 0, 0, 0, 0, 0, 0)...), ErrMalformed},
		{"entries over bound", binary.BigEndian.AppendUint32(nil, MaxFetchResponseSize+2), ErrMalformed}, // truncated header
		{"entries frame over bound", append(binary.BigEndian.AppendUint32(nil, MaxFetchResponseSize+2), byte(typeEntries)), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodeFrame(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
