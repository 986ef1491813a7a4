package directory

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// TestHistory: the directory keeps every version of an account's list, so
// a client that knows an old one can check each link to the newest; pages
// of MaxHistoryLists; the oldest versions beyond maxHistory are dropped;
// an expired account's history goes with it.
func TestHistory(t *testing.T) {
	r := newRelay(t)
	c := newClient(t, r)
	f := newFixture(t, rng, 1)
	const versions = 40
	for range versions {
		if err := c.Publish(testCtx(t), r.h.ID(), f.sign(t), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.History(testCtx(t), r.h.ID(), f.acct.ID(), 3, versions)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != versions-2 {
		t.Fatalf("%d lists, want %d", len(got), versions-2)
	}
	for i, l := range got {
		if l.Version != uint64(3+i) || l.Hash() != f.lists[2+i].Hash() {
			t.Fatalf("list %d is v%d, not the one published", i, l.Version)
		}
	}
	if _, err := c.History(testCtx(t), r.h.ID(), f.acct.ID(), versions, versions+1); !errors.Is(err, ErrGap) {
		t.Fatalf("a version never published: %v, want ErrGap", err)
	}
	if _, err := c.History(testCtx(t), r.h.ID(), f.acct.ID(), 0, 1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 0: %v, want ErrMalformed", err)
	}
	// The oldest versions beyond maxHistory are dropped.
	for range maxHistory - versions + 5 {
		if err := c.Publish(testCtx(t), r.h.ID(), f.sign(t), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	last := uint64(len(f.lists))
	if _, err := c.History(testCtx(t), r.h.ID(), f.acct.ID(), 1, 5); !errors.Is(err, ErrGap) {
		t.Fatalf("a version beyond the kept history: %v, want ErrGap", err)
	}
	if got, err := c.History(testCtx(t), r.h.ID(), f.acct.ID(), last-maxHistory+1, last); err != nil || len(got) != maxHistory {
		t.Fatalf("the kept history: %d lists, %v", len(got), err)
	}
	// Expiry takes the history too.
	r.clock.add(DefaultExpiry + time.Hour)
	if _, err := r.srv.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.History(testCtx(t), r.h.ID(), f.acct.ID(), last, last); !errors.Is(err, ErrGap) {
		t.Fatalf("history after expiry: %v, want ErrGap", err)
	}
	if n := len(r.dump(t)); n != 0 {
		t.Fatalf("%d keys left after the account expired", n)
	}
}

// TestClientRejectsLyingHistory: a relay answering History with lists of
// another account, out of order or tampered is caught by the client.
func TestClientRejectsLyingHistory(t *testing.T) {
	f := newFixture(t, rng, 1)
	for range 3 {
		f.sign(t)
	}
	mallory := newFixture(t, rng, 1)
	mallory.sign(t)
	raw := func(i int, ff *fixture) []byte {
		b, err := ff.lists[i].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tampered := raw(1, f)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name  string
		lists [][]byte
		want  error
	}{
		{"another account's list", [][]byte{raw(0, mallory)}, ErrBadSignature},
		{"skips a version", [][]byte{raw(0, f), raw(2, f)}, ErrGap},
		{"starts elsewhere", [][]byte{raw(1, f)}, ErrGap},
		{"tampered", [][]byte{raw(0, f), tampered}, ErrBadSignature},
		{"garbage", [][]byte{[]byte("not a list")}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			liar := newHost(t)
			answer := appendFrame(nil, &listsMsg{Lists: tt.lists})
			liar.SetStreamHandler(ProtocolID, func(s network.Stream) {
				defer s.Close()
				_, _ = s.Write(answer)
			})
			h := newHost(t)
			connect(t, h, liar)
			if _, err := NewClient(h).History(testCtx(t), liar.ID(), f.acct.ID(), 1, 3); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
