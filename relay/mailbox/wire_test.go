package mailbox

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/frames.golden and the fuzz seed corpora")

// sampleMessages has one message of every type, with fixed contents.
func sampleMessages() []message {
	var a Address
	var id EnvelopeID
	for i := range a {
		a[i] = byte(i)
	}
	for i := range id {
		id[i] = byte(0xa0 + i)
	}
	ch := &challengeMsg{Window: 256, MaxEnvelope: 256 << 10}
	for i := range ch.Nonce {
		ch.Nonce[i] = byte(0x40 + i)
	}
	au := &authMsg{Address: a}
	for i := range au.Signature {
		au.Signature[i] = byte(i * 3)
	}
	return []message{
		&depositMsg{To: a, ID: id, Envelope: []byte("sealed")},
		&resultMsg{ID: id, Code: CodeQuotaExceeded, Message: "full"},
		&subscribeMsg{},
		ch,
		au,
		&deliveryMsg{ID: id, Deposited: 1700000000123456789, Envelope: []byte("sealed")},
		&ackMsg{IDs: []EnvelopeID{id, {1}}},
		&nackMsg{IDs: []EnvelopeID{id}},
		&drainedMsg{},
		&errorMsg{Code: CodeUnauthorized, Message: "bad signature"},
		// Appended in 1.0.0's revisions; the lines above stay as they were.
		&depositMsg{To: a, ID: id, Envelope: []byte("sealed"), Token: Token{0xc0, 0xc1, 0xc2}, Flags: flagUnordered},
		&tokensMsg{Tokens: []Token{{0x11}, {0x22, 0x23}}},
		&resultMsg{ID: id, Code: CodeStrangerQuota, Message: "share full"},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(fmt.Sprintf("%T", m), func(t *testing.T) {
			b := appendFrame(nil, m)
			got, n, err := decodeFrame(b, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b) {
				t.Fatalf("consumed %d of %d", n, len(b))
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip: got %#v, want %#v", got, m)
			}
			// Fields appended by a later minor version are ignored.
			ext := append(bytes.Clone(b), 0xee, 0xff)
			ext[3] += 2
			if got, _, err := decodeFrame(ext, 1<<20); err != nil || !reflect.DeepEqual(got, m) {
				t.Fatalf("with trailing extension: %#v, %v", got, err)
			}
		})
	}
}

// TestFramesGolden pins the wire layout drawn in doc.go.
func TestFramesGolden(t *testing.T) {
	var sb strings.Builder
	for _, m := range sampleMessages() {
		fmt.Fprintf(&sb, "%T %s\n", m, hex.EncodeToString(appendFrame(nil, m)))
	}
	path := filepath.Join("testdata", "frames.golden")
	if *update {
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sb.String() != string(want) {
		t.Fatalf("frames differ from %s (run with -update if the change is intended):\n%s", path, sb.String())
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	frame := func(typ byte, body ...byte) []byte {
		return appendFrame(nil, rawMsg{typ, body})
	}
	tests := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"empty", nil, 100, ErrMalformed},
		{"short header", []byte{0, 0, 0}, 100, ErrMalformed},
		{"zero length", []byte{0, 0, 0, 0, 1}, 100, ErrMalformed},
		{"over bound", []byte{0, 0, 0, 102, 1}, 100, ErrFrameTooLarge},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 1}, 100, ErrFrameTooLarge},
		{"truncated body", []byte{0, 0, 0, 10, 1, 1, 2}, 100, ErrMalformed},
		{"unknown type", frame(0x42), 100, ErrUnknownFrame},
		{"deposit short", frame(byte(typeDeposit), make([]byte, 47)...), 100, ErrMalformed},
		{"deposit envelope longer than body", frame(byte(typeDeposit), append(make([]byte, 48), 0, 0, 0, 9, 1)...), 100, ErrMalformed},
		{"deposit envelope length huge", frame(byte(typeDeposit), append(make([]byte, 48), 0xff, 0xff, 0xff, 0xff)...), 100, ErrFrameTooLarge},
		{"result text too long", frame(byte(typeResult), append(make([]byte, 17), 0x02, 0x01)...), 100, ErrMalformed},
		{"challenge short", frame(byte(typeChallenge), make([]byte, 39)...), 100, ErrMalformed},
		{"auth short", frame(byte(typeAuth), make([]byte, 95)...), 200, ErrMalformed},
		{"delivery short", frame(byte(typeDelivery), make([]byte, 27)...), 100, ErrMalformed},
		{"ack count beyond body", frame(byte(typeAck), 0, 2, 1), 100, ErrMalformed},
		{"ack count over max", frame(byte(typeAck), 0x04, 0x01), 100, ErrMalformed},
		{"nack truncated", frame(byte(typeNack), 0), 100, ErrMalformed},
		{"error no text length", frame(byte(typeError), 1), 100, ErrMalformed},
		{"tokens over max", frame(byte(typeTokens), append([]byte{MaxTokens + 1}, make([]byte, 80)...)...), 200, ErrMalformed},
		{"tokens truncated", frame(byte(typeTokens), 2, 1, 2, 3), 100, ErrMalformed},
		{"tokens no count", frame(byte(typeTokens)), 100, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _, err := decodeFrame(tc.in, tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decodeFrame = %#v, %v; want %v", m, err, tc.want)
			}
		})
	}
}

// rawMsg encodes arbitrary frames in tests.
type rawMsg struct {
	t    byte
	body []byte
}

func (m rawMsg) frameType() frameType       { return frameType(m.t) }
func (m rawMsg) appendBody(b []byte) []byte { return append(b, m.body...) }

func TestFrameReaderSkipsOptional(t *testing.T) {
	var b []byte
	b = appendFrame(b, rawMsg{0x99, []byte("future")})
	b = appendFrame(b, &drainedMsg{})
	b = appendFrame(b, rawMsg{0x42, nil})
	fr := newFrameReader(bytes.NewReader(b), 512)
	if m, err := fr.next(100); err != nil || m.frameType() != typeDrained {
		t.Fatalf("next = %#v, %v; want Drained after the optional frame", m, err)
	}
	if _, err := fr.next(100); !errors.Is(err, ErrUnknownFrame) {
		t.Fatalf("mandatory unknown frame: %v", err)
	}
}

func TestCodes(t *testing.T) {
	tests := []struct {
		code Code
		want error
	}{
		{CodeOK, nil},
		{CodeMalformed, ErrMalformed},
		{CodeTooLarge, ErrTooLarge},
		{CodeQuotaExceeded, ErrQuotaExceeded},
		{CodeUnauthorized, ErrUnauthorized},
		{CodeUnavailable, ErrUnavailable},
		{CodeInternal, ErrInternal},
		{CodeRelayFull, ErrRelayFull},
		{CodeRateLimited, ErrRateLimited},
		{CodeStrangerQuota, ErrStrangerQuota},
		{Code(200), ErrRefused},
	}
	for _, tc := range tests {
		if got := tc.code.Err(); got != tc.want {
			t.Errorf("%v.Err() = %v, want %v", tc.code, got, tc.want)
		}
		if tc.code != CodeOK {
			err := fmt.Errorf("wrapped: %w", &RefusalError{Code: tc.code, Message: "why"})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "why") {
				t.Errorf("RefusalError(%v) = %v", tc.code, err)
			}
		}
	}
}
