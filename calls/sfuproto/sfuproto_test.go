package sfuproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestRoundTrip(t *testing.T) {
	var g [32]byte
	g[0] = 7
	msgs := []*Message{
		{Type: TypeJoin, Group: strings.Repeat("ab", 32), Call: strings.Repeat("cd", 16), Cert: []byte{1, 2, 3}, Time: 5, Sig: make([]byte, 64)},
		{Type: TypeOffer, SDP: "v=0\r\n"},
		{Type: TypeAnswer, SDP: "v=0\r\n"},
		{Type: TypeCandidate, Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host"}},
		{Type: TypeMute, Muted: true},
		{Type: TypeLeave},
		{Type: TypeRoster, Roster: []Participant{{Device: "d", Account: "a", Speaking: true, Tracks: []string{"audio"}}}},
		{Type: TypeError, Error: "no"},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := Write(&buf, m); err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
	}
	for _, want := range msgs {
		got, err := Read(&buf)
		if err != nil {
			t.Fatalf("%s: %v", want.Type, err)
		}
		if got.Type != want.Type || got.SDP != want.SDP || got.Muted != want.Muted || len(got.Roster) != len(want.Roster) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if JoinSigned("r", "p", g, "c", 1) == nil || bytes.Equal(JoinSigned("r", "p", g, "c", 1), JoinSigned("r", "p", g, "c2", 1)) {
		t.Fatal("the signed bytes do not depend on the call")
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
	}{
		{"empty frame", []byte{0, 0, 0, 0}},
		{"oversized frame", []byte{0, 0x10, 0, 0}},
		{"truncated", []byte{0, 0, 0, 9, '{'}},
		{"not JSON", append([]byte{0, 0, 0, 3}, "abc"...)},
		{"unknown type", frame(`{"type":"boom"}`)},
		{"join without signature", frame(`{"type":"join","group":"` + strings.Repeat("ab", 32) + `","call":"` + strings.Repeat("cd", 16) + `","cert":"AQ=="}`)},
		{"join with a short group", frame(`{"type":"join","group":"ab","call":"` + strings.Repeat("cd", 16) + `"}`)},
		{"offer without SDP", frame(`{"type":"offer"}`)},
		{"candidate without candidate", frame(`{"type":"candidate"}`)},
		{"long error", frame(`{"type":"error","error":"` + strings.Repeat("x", MaxError+1) + `"}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.raw))
			if err == nil {
				t.Fatal("taken")
			}
			if tc.name != "truncated" && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
		})
	}
}

func frame(s string) []byte {
	n := len(s)
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, s...)
}

// FuzzRead: any bytes from a peer are refused or decode into a message
// that passes Check and encodes again.
func FuzzRead(f *testing.F) {
	f.Add(frame(`{"type":"offer","sdp":"v=0"}`))
	f.Add(frame(`{"type":"roster","roster":[{"device":"d","account":"a","tracks":["audio","video"]}]}`))
	f.Add(frame(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"}}`))
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := m.Check(); err != nil {
			t.Fatalf("Read returned a message Check refuses: %v", err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
	})
}
