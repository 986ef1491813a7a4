package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	l := New[string](3, time.Minute, 100)
	for i := range 3 {
		if !l.Allow("a", t0) {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	if l.Allow("a", t0) {
		t.Fatal("fourth token at once allowed")
	}
	if w := l.Wait("a", t0.Add(20*time.Second)); w != 40*time.Second {
		t.Fatalf("Wait = %v, want 40s", w)
	}
	if !l.Allow("b", t0) {
		t.Fatal("another key shares the bucket")
	}
	if l.Allow("a", t0.Add(59*time.Second)) {
		t.Fatal("token before its interval")
	}
	if !l.Allow("a", t0.Add(60*time.Second)) {
		t.Fatal("no token after one interval")
	}
	if l.Allow("a", t0.Add(61*time.Second)) {
		t.Fatal("two tokens after one interval")
	}
	// A long pause refills to the burst, not beyond.
	later := t0.Add(24 * time.Hour)
	for i := range 3 {
		if !l.Allow("a", later) {
			t.Fatalf("token %d after a long pause refused", i)
		}
	}
	if l.Allow("a", later) {
		t.Fatal("more than the burst after a long pause")
	}
	// A clock going backwards takes nothing back and gives nothing.
	if l.Allow("a", t0) {
		t.Fatal("token from a clock going backwards")
	}
}

func TestUnlimited(t *testing.T) {
	for _, l := range []*Limiter[int]{New[int](0, time.Second, 10), New[int](5, 0, 10), New[int](5, -time.Second, 10)} {
		for i := range 1000 {
			if !l.Allow(i%3, time.Time{}) {
				t.Fatal("an unlimited Limiter refused")
			}
		}
		if l.Len() != 0 || l.Wait(1, time.Time{}) != 0 {
			t.Fatal("an unlimited Limiter keeps state")
		}
	}
}

// Memory stays bounded however many keys an attacker makes, and a key in
// use keeps its empty bucket while full ones are forgotten.
func TestBoundedKeys(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	l := New[int](1, time.Hour, 64)
	if !l.Allow(-1, t0) {
		t.Fatal()
	}
	for i := range 10_000 {
		l.Allow(i, t0)
		if n := l.Len(); n > 64 {
			t.Fatalf("%d keys tracked, max 64", n)
		}
	}
	// All buckets are empty: arbitrary ones were forgotten, -1 perhaps.
	// After an hour they are full again and are forgotten first.
	l2 := New[int](2, time.Minute, 4)
	l2.Allow(0, t0)
	l2.Allow(0, t0) // empty
	for k := 1; k < 4; k++ {
		l2.Allow(k, t0.Add(-time.Hour)) // full again by t0
	}
	l2.Allow(4, t0)
	if l2.Allow(0, t0) {
		t.Fatal("the busy key's empty bucket was forgotten while full ones were kept")
	}
}
