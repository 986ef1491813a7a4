package sframe

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

var base = bytes.Repeat([]byte{0x42}, 16)

func mustKey(t testing.TB, b []byte, kid uint64) *Key {
	t.Helper()
	k, err := NewKey(b, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestHeader: the shortest encoding of §4.3, and back.
func TestHeader(t *testing.T) {
	tests := []struct {
		kid, ctr uint64
		want     []byte
	}{
		{0, 0, []byte{0x00}},
		{7, 7, []byte{0x77}},
		{1, 5, []byte{0x15}},
		{291, 3, []byte{0x93, 0x01, 0x23}}, // X=1, KID in 2 bytes; CTR 3 inline
		{8, 8, []byte{0x88, 0x08, 0x08}},
		{0, 256, []byte{0x09, 0x01, 0x00}},
		{math.MaxUint64, math.MaxUint64, append(append([]byte{0xff}, bytes.Repeat([]byte{0xff}, 8)...), bytes.Repeat([]byte{0xff}, 8)...)},
	}
	for _, tt := range tests {
		got := AppendHeader(nil, tt.kid, tt.ctr)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("header(%d, %d) = %x, want %x", tt.kid, tt.ctr, got, tt.want)
		}
		kid, ctr, n, err := ParseHeader(append(got, 0xaa))
		if err != nil || kid != tt.kid || ctr != tt.ctr || n != len(got) {
			t.Errorf("parse %x: %d %d %d %v", got, kid, ctr, n, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x08}, {0x93, 0x01}, {0xff, 1, 2, 3}} {
		if _, _, _, err := ParseHeader(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

// TestDerivation: the key and salt are HKDF-SHA256 as §4.4.2 states,
// computed here independently with hkdf.Key.
func TestDerivation(t *testing.T) {
	var suffix [10]byte
	binary.BigEndian.PutUint64(suffix[:8], 291)
	binary.BigEndian.PutUint16(suffix[8:], 4)
	key, _ := hkdf.Key(sha256.New, base, nil, "SFrame 1.0 Secret key "+string(suffix[:]), 16)
	salt, _ := hkdf.Key(sha256.New, base, nil, "SFrame 1.0 Secret salt "+string(suffix[:]), 12)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	k := mustKey(t, base, 291)
	frame := k.Seal(nil, 300, []byte("meta"), []byte("hello"))
	header := AppendHeader(nil, 291, 300)
	nonce := append([]byte(nil), salt...)
	nonce[10] ^= 0x01
	nonce[11] ^= 0x2c // 300 = 0x012c
	want := aead.Seal(append([]byte(nil), header...), nonce, []byte("hello"), append(append([]byte(nil), header...), "meta"...))
	if !bytes.Equal(frame, want) {
		t.Fatalf("frame %x, want %x", frame, want)
	}
}

// TestOpen: frames open with their metadata under the right key, once;
// anything changed, another key, a removed key, a replay or a counter
// older than the window is refused.
func TestOpen(t *testing.T) {
	k := mustKey(t, base, 5)
	other := mustKey(t, bytes.Repeat([]byte{0x43}, 16), 5)
	r := NewReceiver()
	r.Add(k)
	s := NewSender(k)
	meta := []byte("rtp-ish")
	f0, _ := s.Seal(nil, meta, []byte("frame zero"))
	f1, _ := s.Seal(nil, meta, []byte("frame one"))
	if pt, kid, err := r.Open(nil, meta, f1); err != nil || string(pt) != "frame one" || kid != 5 {
		t.Fatalf("open: %q %d %v", pt, kid, err)
	}
	if pt, _, err := r.Open(nil, meta, f0); err != nil || string(pt) != "frame zero" {
		t.Fatalf("an earlier frame within the window: %q %v", pt, err)
	}
	if _, _, err := r.Open(nil, meta, f1); !errors.Is(err, ErrReplay) {
		t.Fatalf("a replay: %v", err)
	}
	f2, _ := s.Seal(nil, meta, []byte("frame two"))
	if _, _, err := r.Open(nil, []byte("other"), f2); !errors.Is(err, ErrAuth) {
		t.Fatalf("other metadata: %v", err)
	}
	bad := bytes.Clone(f2)
	bad[len(bad)-1] ^= 1
	if _, _, err := r.Open(nil, meta, bad); !errors.Is(err, ErrAuth) {
		t.Fatalf("a flipped bit: %v", err)
	}
	moved := bytes.Clone(f2)
	moved[0] ^= 0x01 // another counter in the header
	if _, _, err := r.Open(nil, meta, moved); !errors.Is(err, ErrAuth) {
		t.Fatalf("a changed counter: %v", err)
	}
	forged := other.Seal(nil, 9, meta, []byte("forged"))
	if _, _, err := r.Open(nil, meta, forged); !errors.Is(err, ErrAuth) {
		t.Fatalf("another base key, same KID: %v", err)
	}
	if _, _, err := r.Open(nil, meta, mustKey(t, base, 6).Seal(nil, 0, meta, []byte("x"))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("an unknown KID: %v", err)
	}
	if pt, _, err := r.Open(nil, meta, f2); err != nil || string(pt) != "frame two" {
		t.Fatalf("the good frame after refusals: %q %v", pt, err)
	}
	// Far ahead, then one older than the window.
	far := k.Seal(nil, 1000, meta, []byte("far"))
	old := k.Seal(nil, 1000-ReplayWindow, meta, []byte("old"))
	edge := k.Seal(nil, 1000-ReplayWindow+1, meta, []byte("edge"))
	if _, _, err := r.Open(nil, meta, far); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Open(nil, meta, old); !errors.Is(err, ErrReplay) {
		t.Fatalf("older than the window: %v", err)
	}
	if _, _, err := r.Open(nil, meta, edge); err != nil {
		t.Fatalf("the window's last counter: %v", err)
	}
	r.Remove(5)
	f3, _ := s.Seal(nil, meta, []byte("after removal"))
	if _, _, err := r.Open(nil, meta, f3); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a removed key: %v", err)
	}
	if _, err := NewKey(make([]byte, 15), 1); err == nil {
		t.Fatal("a short base key")
	}
}

// TestWindow: every counter of a shuffled run opens once.
func TestWindow(t *testing.T) {
	k := mustKey(t, base, 1)
	r := NewReceiver()
	r.Add(k)
	order := []uint64{3, 1, 2, 0, 70, 64, 65, 200, 130, 73, 199}
	for _, c := range order {
		if _, _, err := r.Open(nil, nil, k.Seal(nil, c, nil, []byte{byte(c)})); err != nil {
			t.Fatalf("ctr %d: %v", c, err)
		}
	}
	// Again (replays), or older than 200 − 127 (72, 71, 0).
	for _, c := range []uint64{130, 199, 200, 73, 72, 71, 0} {
		if _, _, err := r.Open(nil, nil, k.Seal(nil, c, nil, []byte{byte(c)})); !errors.Is(err, ErrReplay) {
			t.Fatalf("ctr %d again: %v", c, err)
		}
	}
}

// FuzzOpen: frames from the network open or fail, never panic; what
// opens re-seals to the same frame.
func FuzzOpen(f *testing.F) {
	k := mustKey(f, base, 291)
	f.Add(k.Seal(nil, 300, nil, []byte("hello")))
	f.Add(k.Seal(nil, 3, []byte("m"), nil))
	f.Add([]byte{0xff, 1})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if kid, ctr, n, err := ParseHeader(frame); err == nil {
			if got := AppendHeader(nil, kid, ctr); n < len(got) {
				t.Fatalf("a %d-byte header for what needs %d", n, len(got))
			}
		}
		r := NewReceiver()
		r.Add(k)
		pt, _, err := r.Open(nil, nil, frame)
		if err != nil {
			return
		}
		_, ctr, _, _ := ParseHeader(frame)
		if again := k.Seal(nil, ctr, nil, pt); !bytes.Equal(again[len(again)-len(pt)-Overhead:], frame[len(frame)-len(pt)-Overhead:]) {
			t.Fatal("an opened frame does not re-seal to itself")
		}
	})
}
