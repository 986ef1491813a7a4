package mailbox

import (
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

func TestBudgetBuckets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := newAdmission(
		Budgets{Peer: Budget{Envelopes: 3, Bytes: 300, Window: time.Minute}, IP: Budget{Envelopes: 5, Bytes: -1, Window: time.Minute}},
		Budgets{Peer: Budget{Envelopes: 1, Bytes: 100, Window: time.Minute}, IP: Budget{Envelopes: -1, Bytes: -1, Window: time.Minute}},
	)
	a.now = func() time.Time { return now }
	p1 := depositor{peer: "p1", ip: "192.0.2.1"}
	p2 := depositor{peer: "p2", ip: "192.0.2.1"}
	steps := []struct {
		name     string
		d        depositor
		size     int
		stranger bool
		advance  time.Duration
		want     bool
	}{
		{"contact 1", p1, 100, false, 0, true},
		{"stranger within its budget", p1, 100, true, 0, true},
		{"second stranger over the stranger budget", p1, 10, true, 0, false},
		{"refusal charged nothing", p1, 100, false, 0, true},
		{"peer budget spent (bytes)", p1, 1, false, 0, false},
		{"another peer, same address", p2, 100, false, 0, true},
		{"address budget spent (envelopes)", p2, 1, false, 0, true},
		{"address budget spent", p2, 1, false, 0, false},
		{"refilled after a window", p1, 300, false, time.Minute, true},
		{"a third of a window refills a third", p1, 100, false, 20 * time.Second, true},
		{"but no more", p1, 1, false, 0, false},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if got := a.take(s.d, 1, s.size, s.stranger); got != s.want {
			t.Fatalf("%s: take = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestBucketPrune(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := newAdmission(DefaultDepositBudgets, DefaultStrangerBudgets)
	a.now = func() time.Time { return now }
	for i := range 2 * maxBuckets {
		if i == maxBuckets {
			now = now.Add(2 * time.Hour) // every bucket so far is full again
		}
		a.take(depositor{peer: string(rune(i)), ip: "x"}, 1, 1, true)
		if n := len(a.buckets); n > maxBuckets {
			t.Fatalf("%d buckets", n)
		}
	}
}

func TestIPPrefix(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"/ip4/192.0.2.7/tcp/4001", "192.0.2.7"},
		{"/ip6/2001:db8:1:2:3:4:5:6/udp/4001/quic-v1", "2001:db8:1:2::/64"},
		{"/ip6/::ffff:192.0.2.7/tcp/1", "192.0.2.7"},
		{"/dns4/example.com/tcp/1", ""},
	} {
		m, err := ma.NewMultiaddr(tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := ipPrefix(m); got != tc.want {
			t.Errorf("ipPrefix(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	if got := ipPrefix(nil); got != "" {
		t.Errorf("ipPrefix(nil) = %q", got)
	}
}
