package senderkey

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

func newPair(t testing.TB, keyID uint32) (*Sender, *Receiver) {
	t.Helper()
	var group [32]byte
	var dev identity.DeviceID
	_, _ = rand.Read(group[:])
	_, _ = rand.Read(dev[:])
	s, err := NewSender(rand.Reader, group, dev, keyID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReceiver(s.Distribution())
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

func seal(t testing.TB, s *Sender, text string) []byte {
	t.Helper()
	m, err := s.Seal([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOutOfOrderOnce: messages open in any order, each exactly once.
func TestOutOfOrderOnce(t *testing.T) {
	s, r := newPair(t, 1)
	const n = 300
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = seal(t, s, fmt.Sprint("m", i))
	}
	order := mrand.Perm(n)
	for _, i := range order {
		pt, err := r.Open(msgs[i])
		if err != nil || string(pt) != fmt.Sprint("m", i) {
			t.Fatalf("message %d: %q, %v", i, pt, err)
		}
	}
	for _, i := range order[:20] {
		if _, err := r.Open(msgs[i]); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("replay of %d: %v", i, err)
		}
	}
}

// TestBoundToGroupAndDevice: a message opens only as a message of the
// group and device its chain belongs to. A member holding another's
// chain (every member does) and sealing with it as itself, or in another
// group, makes messages that the chain's receiver refuses. (Sealing with
// it under the other's name is stopped one layer up: the group envelope
// is signed by the sending device, and the caller opens a message with
// the receiver of the device that signed it; see crypto/groupmsg.)
func TestBoundToGroupAndDevice(t *testing.T) {
	s, r := newPair(t, 1)
	seal(t, s, "genuine")
	asM := s.Distribution()
	asM.Device[0] ^= 1 // the chain, claimed by another device
	otherGroup := s.Distribution()
	otherGroup.Group[0] ^= 1
	for name, d := range map[string]Distribution{"another device": asM, "another group": otherGroup} {
		forger := &Sender{d: d}
		if _, err := r.Open(seal(t, forger, "forged")); !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Refused without a trace: the genuine next message still opens.
	if pt, err := r.Open(seal(t, s, "next")); err != nil || string(pt) != "next" {
		t.Fatalf("after the forgeries: %q, %v", pt, err)
	}
}

// TestRotation: a member removed from the group holds the old chain
// only; messages of the new chain (distributed to the others) are not
// for it, and it cannot derive their keys.
func TestRotation(t *testing.T) {
	s, removed := newPair(t, 1)
	seal(t, s, "before the removal")
	next, err := NewSender(rand.Reader, s.d.Group, s.d.Device, s.KeyID()+1)
	if err != nil {
		t.Fatal(err)
	}
	stays, err := NewReceiver(next.Distribution())
	if err != nil {
		t.Fatal(err)
	}
	msg := seal(t, next, "after the removal")
	if _, err := removed.Open(msg); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("removed member: %v", err)
	}
	// Even claiming the old key ID, the ciphertext does not open under
	// the old chain.
	patched := bytes.Clone(msg)
	patched[4] = byte(s.KeyID())
	if _, err := removed.Open(patched); err == nil {
		t.Fatal("the removed member opened a message of the new chain")
	}
	if pt, err := stays.Open(msg); err != nil || string(pt) != "after the removal" {
		t.Fatalf("remaining member: %q, %v", pt, err)
	}
}

// TestForwardSecrecy: a member given the chain at some point reads what
// follows, not what came before.
func TestForwardSecrecy(t *testing.T) {
	s, _ := newPair(t, 1)
	early := seal(t, s, "early")
	late, err := NewReceiver(s.Distribution())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Open(early); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("message from before the distribution: %v", err)
	}
	if pt, err := late.Open(seal(t, s, "later")); err != nil || string(pt) != "later" {
		t.Fatalf("%q, %v", pt, err)
	}
}

// TestBounds: a jump past MaxSkip is refused and changes nothing; the
// skipped keys kept are bounded (the oldest go first).
func TestBounds(t *testing.T) {
	s, r := newPair(t, 1)
	first := seal(t, s, "first")
	for range MaxSkip {
		seal(t, s, "")
	}
	far := seal(t, s, "far")
	if _, err := r.Open(far); !errors.Is(err, ErrTooFar) {
		t.Fatalf("jump of %d: %v", MaxSkip+1, err)
	}
	if pt, err := r.Open(first); err != nil || string(pt) != "first" {
		t.Fatalf("after the refused jump: %q, %v", pt, err)
	}
	s2, r2 := newPair(t, 1)
	var all [][]byte
	for i := range MaxSkippedKeys + 10 {
		all = append(all, seal(t, s2, fmt.Sprint(i)))
	}
	for _, i := range []int{1000, len(all) - 1} { // two jumps, each within MaxSkip
		if _, err := r2.Open(all[i]); err != nil {
			t.Fatal(err)
		}
	}
	if len(r2.skipped) != MaxSkippedKeys {
		t.Fatalf("%d skipped keys kept", len(r2.skipped))
	}
	if _, err := r2.Open(all[0]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("evicted key: %v", err)
	}
	if pt, err := r2.Open(all[len(all)-2]); err != nil || string(pt) != fmt.Sprint(len(all)-2) {
		t.Fatalf("kept key: %q, %v", pt, err)
	}
	if _, err := s.Seal(make([]byte, MaxPlaintext+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized plaintext: %v", err)
	}
}

// TestTampering: every byte of a message flipped is refused, and the
// receiver still opens the genuine message after.
func TestTampering(t *testing.T) {
	s, r := newPair(t, 1)
	msg := seal(t, s, "hello group")
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x40
		if _, err := r.Open(bad); err == nil {
			t.Fatalf("byte %d flipped: opened", i)
		}
	}
	for _, b := range [][]byte{nil, msg[:10], msg[:len(msg)-1], append(bytes.Clone(msg), 0)} {
		if _, err := r.Open(b); err == nil {
			t.Fatalf("%d bytes opened", len(b))
		}
	}
	if pt, err := r.Open(msg); err != nil || string(pt) != "hello group" {
		t.Fatalf("%q, %v", pt, err)
	}
}

// TestStateRoundTrip: sender and receiver survive a restart mid-stream.
func TestStateRoundTrip(t *testing.T) {
	s, r := newPair(t, 7)
	var held [][]byte
	for i := range 10 {
		m := seal(t, s, fmt.Sprint(i))
		if i%3 == 0 {
			held = append(held, m) // skipped for now
			continue
		}
		if _, err := r.Open(m); err != nil {
			t.Fatal(err)
		}
	}
	sb, _ := s.MarshalBinary()
	rb, _ := r.MarshalBinary()
	db, err := s.Distribution().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseSender(sb)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseReceiver(rb)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDistribution(db)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := NewReceiver(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range held {
		if _, err := r2.Open(m); err != nil {
			t.Fatalf("held message after restart: %v", err)
		}
	}
	m := seal(t, s2, "after restart")
	for _, rr := range []*Receiver{r2, r3} {
		if pt, err := rr.Open(m); err != nil || string(pt) != "after restart" {
			t.Fatalf("%q, %v", pt, err)
		}
	}
}

// FuzzDecoders: the decoders of untrusted or stored bytes return a value
// or an error, never panic.
func FuzzDecoders(f *testing.F) {
	s, r := newPair(f, 1)
	msg := seal(f, s, "seed")
	sb, _ := s.MarshalBinary()
	rb, _ := r.MarshalBinary()
	db, _ := s.Distribution().MarshalBinary()
	for _, b := range [][]byte{msg, sb, rb, db} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = r.Open(b)
		_, _ = PeekHeader(b)
		if d, err := ParseDistribution(b); err == nil {
			_, _ = NewReceiver(d)
		}
		if rr, err := ParseReceiver(b); err == nil {
			_, _ = rr.Open(msg)
		}
		if ss, err := ParseSender(b); err == nil {
			_, _ = ss.Seal([]byte("x"))
		}
	})
}

// TestStepVector pins the chain step (message key = HMAC-SHA256(chain,
// 0x01), next chain = HMAC-SHA256(chain, 0x02), as in Signal's Sender
// Keys) to values computed independently (Python's hmac): stored chains
// and messages in flight must open after any rewrite of step.
func TestStepVector(t *testing.T) {
	var ck [32]byte
	for i := range ck {
		ck[i] = byte(i)
	}
	mk, next := step(&ck)
	if got := hex.EncodeToString(mk[:]); got != "9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7" {
		t.Fatalf("message key %s", got)
	}
	if got := hex.EncodeToString(next[:]); got != "4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d" {
		t.Fatalf("next chain key %s", got)
	}
}

// BenchmarkOpen opens one 100-byte message, as every member does for
// every group message (G1 in cmd/peergram-bench); its allocations are
// part of what the group path's garbage collector must collect.
func BenchmarkOpen(b *testing.B) {
	s, r := newPair(b, 1)
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = seal(b, s, string(make([]byte, 100)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := r.Open(msgs[i]); err != nil {
			b.Fatal(err)
		}
	}
}
