package chat

import (
	"testing"
	"time"
)

func TestAdvance(t *testing.T) {
	tests := []struct {
		cur, next, want Status
	}{
		{StatusPending, StatusSent, StatusSent},
		{StatusSent, StatusDelivered, StatusDelivered},
		{StatusDelivered, StatusRead, StatusRead},
		{StatusRead, StatusDelivered, StatusRead}, // a late receipt never moves back
		{StatusDelivered, StatusSent, StatusDelivered},
		{StatusSent, StatusSent, StatusSent},
		{StatusReceived, StatusSeen, StatusSeen},
		{StatusSeen, StatusReceived, StatusSeen},
	}
	for _, tt := range tests {
		if got := Advance(tt.cur, tt.next); got != tt.want {
			t.Errorf("Advance(%s, %s) = %s, want %s", tt.cur, tt.next, got, tt.want)
		}
	}
}

func TestLess(t *testing.T) {
	t0 := time.Unix(100, 0)
	tests := []struct {
		name string
		a, b Message
		want bool
	}{
		{"earlier time first", Message{SentAt: t0, Seq: 9}, Message{SentAt: t0.Add(time.Millisecond), Seq: 1}, true},
		{"same time: sequence", Message{SentAt: t0, Seq: 1}, Message{SentAt: t0, Seq: 2}, true},
		{"same time and sequence: ID", Message{SentAt: t0, Seq: 1, ID: "a"}, Message{SentAt: t0, Seq: 1, ID: "b"}, true},
		{"not less than itself", Message{SentAt: t0, Seq: 1, ID: "a"}, Message{SentAt: t0, Seq: 1, ID: "a"}, false},
		{"later is not less", Message{SentAt: t0.Add(time.Second)}, Message{SentAt: t0}, false},
	}
	for _, tt := range tests {
		if got := Less(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: Less = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMessageIDRoundTrip(t *testing.T) {
	id := MessageID{1, 2, 3, 0xff}
	got, err := ParseMessageID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"", "zz", "0102", id.String() + "00"} {
		if _, err := ParseMessageID(bad); err == nil {
			t.Errorf("ParseMessageID(%q) succeeded", bad)
		}
	}
}
