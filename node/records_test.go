package node

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

func sampleJob() *job {
	j := &job{Seq: 42, Payload: []byte(`{"kind":"text","text":"héllo \"x\""}`), SentAt: 1_764_000_000_123,
		Done: []string{"12D3KooWdev1", "12D3KooWdev2"}, Attempts: 3, NextAt: 1_764_000_009_000, Text: true}
	j.ID[0], j.ID[15] = 1, 2
	j.To[0], j.To[31] = 3, 4
	return j
}

func sampleMessage() *storedMessage {
	return &storedMessage{ID: "00112233445566778899aabbccddeeff", Chat: "chat", From: "from", Outgoing: true,
		Text: "a text with \"quotes\", ünïcode and \x00 bytes", SentAt: time.UnixMilli(1_764_000_000_123).UTC(),
		Received: time.Unix(1_764_000_001, 5).UTC(), Status: chat.StatusDelivered, Seq: 7, FromName: "Alice",
		FromContact: true, Warning: "w", Error: "e", Pending: []string{"d1", "d2"},
		File: &chat.FileInfo{Name: "a.jpg", Size: 1234, Mime: "image/jpeg", Kind: "photo", Width: 640, Height: 480, HasThumb: true}}
}

// forwardedMessage is sampleMessage, a forward.
func forwardedMessage() *storedMessage {
	m := sampleMessage()
	m.Forwarded = &chat.Forward{From: "News", Author: strings.Repeat("x", 20), SentAt: time.Unix(1700000000, 123000000).UTC()}
	return m
}

func TestRecordsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   any
		enc  func() []byte
		dec  func([]byte) (any, error)
	}{
		{"job", sampleJob(), func() []byte { return encodeJob(sampleJob()) },
			func(b []byte) (any, error) { return decodeJob(b) }},
		{"empty job", &job{}, func() []byte { return encodeJob(&job{}) },
			func(b []byte) (any, error) { return decodeJob(b) }},
		{"job in JSON", sampleJob(), func() []byte { b, _ := json.Marshal(sampleJob()); return b },
			func(b []byte) (any, error) { return decodeJob(b) }},
		{"message", sampleMessage(), func() []byte { return encodeMessage(sampleMessage()) },
			func(b []byte) (any, error) { return decodeStoredMessage(b) }},
		{"forwarded message", forwardedMessage(), func() []byte { return encodeMessage(forwardedMessage()) },
			func(b []byte) (any, error) { return decodeStoredMessage(b) }},
		{"empty message", &storedMessage{}, func() []byte { return encodeMessage(&storedMessage{}) },
			func(b []byte) (any, error) { return decodeStoredMessage(b) }},
		{"message in JSON", sampleMessage(), func() []byte { b, _ := json.Marshal(sampleMessage()); return b },
			func(b []byte) (any, error) { return decodeStoredMessage(b) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.dec(tt.enc())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Fatalf("read back\n%+v\nwrote\n%+v", got, tt.in)
			}
		})
	}
}

// A binary message record is smaller than its JSON and holds no field
// names.
func TestMessageRecordSmaller(t *testing.T) {
	bin := encodeMessage(sampleMessage())
	js, err := json.Marshal(sampleMessage())
	if err != nil {
		t.Fatal(err)
	}
	if len(bin) >= len(js)*2/3 {
		t.Fatalf("binary record %d bytes, JSON %d", len(bin), len(js))
	}
}

func TestRecordsRefuseMalformed(t *testing.T) {
	good := encodeJob(sampleJob())
	tests := []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{0x02}, good[1:]...)},
		{"truncated", good[:len(good)-3]},
		{"short ID", []byte{recordV1, 0x12, 0x01, 0x00}},
		{"fixed32 field", []byte{recordV1, 0x0d, 1, 2, 3, 4}},
		{"length past the end", []byte{recordV1, 0x22, 0x7f, 'x'}},
		{"bad JSON", []byte(`{"seq":`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeJob(tt.raw); !errors.Is(err, errRecord) {
				t.Fatalf("job: %v, want errRecord", err)
			}
			if _, err := decodeStoredMessage(tt.raw); !errors.Is(err, errRecord) && tt.name != "short ID" {
				t.Fatalf("message: %v, want errRecord", err)
			}
		})
	}
}

// FuzzDecodeRecords: whatever a store holds (a torn write, another
// version's record), decoding returns a record or errRecord, never panics,
// and a decoded record encodes to one that decodes the same.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeJob(sampleJob()))
	f.Add(encodeMessage(sampleMessage()))
	f.Add([]byte(`{"seq":1,"payload":"eA=="}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if j, err := decodeJob(raw); err == nil {
			again, err := decodeJob(encodeJob(j))
			if err != nil {
				t.Fatalf("re-encoded job: %v", err)
			}
			j.Sealed = nil
			if !reflect.DeepEqual(normalJob(again), normalJob(j)) {
				t.Fatalf("job changed: %+v -> %+v", j, again)
			}
		} else if !errors.Is(err, errRecord) {
			t.Fatalf("job: %v", err)
		}
		if m, err := decodeStoredMessage(raw); err == nil {
			if _, err := decodeStoredMessage(encodeMessage(m)); err != nil {
				t.Fatalf("re-encoded message: %v", err)
			}
		} else if !errors.Is(err, errRecord) {
			t.Fatalf("message: %v", err)
		}
	})
}

// normalJob makes empty and nil slices alike for comparison.
func normalJob(j *job) job {
	c := *j
	if len(c.Payload) == 0 {
		c.Payload = nil
	}
	if len(c.Done) == 0 {
		c.Done = nil
	}
	c.Attempts = int(uint32(c.Attempts))
	return c
}
