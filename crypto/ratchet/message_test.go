package ratchet

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseMessage(t *testing.T) {
	alice, _ := newPair(t, testRand(t.Name()))
	m := encrypt(t, alice, []byte("hello"), nil)
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"genuine", m, nil},
		{"empty plaintext", encrypt(t, alice, nil, nil), nil},
		{"empty", nil, ErrMalformed},
		{"version only", []byte{MessageVersion}, ErrMalformed},
		{"unknown version", append([]byte{0}, m[1:]...), ErrUnknownVersion},
		{"header without tag", m[:HeaderSize], ErrMalformed},
		{"tag one short", m[:Overhead-1], ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ct, err := ParseMessage(tt.msg)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("ParseMessage error = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if h.DH != alice.dhsPub || h.PN != 0 {
				t.Fatalf("header = %+v", h)
			}
			if !bytes.Equal(ct, tt.msg[HeaderSize:]) {
				t.Fatal("ciphertext is not the bytes after the header")
			}
		})
	}
	h, _, _ := ParseMessage(encrypt(t, alice, nil, nil))
	if h.N != 2 {
		t.Fatalf("third message has N = %d", h.N)
	}
}
