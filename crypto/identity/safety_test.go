package identity

import (
	"encoding/hex"
	"regexp"
	"testing"
)

// TestSignalFingerprintVectors checks the fingerprint construction against
// libsignal's own test vectors (rust/protocol/src/fingerprint.rs,
// fingerprint_test_v1), with Signal's key encoding and phone numbers.
func TestSignalFingerprintVectors(t *testing.T) {
	alice, _ := hex.DecodeString("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
	bob, _ := hex.DecodeString("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
	aliceID, bobID := []byte("+14152222222"), []byte("+14153333333")
	const want = "300354477692869396892869876765458257569162576843440918079131"

	if got := displayFingerprint(5200, aliceID, alice, bobID, bob); got != want {
		t.Fatalf("Alice's display = %s, want %s", got, want)
	}
	if got := displayFingerprint(5200, bobID, bob, aliceID, alice); got != want {
		t.Fatalf("Bob's display = %s, want %s", got, want)
	}
	// Signal's scannable fingerprint is the first 32 bytes of each side.
	if got := hex.EncodeToString(fingerprint(5200, aliceID, alice)[:32]); got != "1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df" {
		t.Fatalf("Alice's fingerprint = %s", got)
	}
	if got := hex.EncodeToString(fingerprint(5200, bobID, bob)[:32]); got != "d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d" {
		t.Fatalf("Bob's fingerprint = %s", got)
	}
}

func TestSafetyNumber(t *testing.T) {
	a, b, c := mustAccount(t, 1).ID(), mustAccount(t, 2).ID(), mustAccount(t, 3).ID()
	ab := SafetyNumber(a, b)
	if !regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`).MatchString(ab) {
		t.Fatalf("SafetyNumber = %q, want 12 groups of 5 digits", ab)
	}
	if ba := SafetyNumber(b, a); ba != ab {
		t.Fatalf("not symmetric: %s vs %s", ab, ba)
	}
	tests := []struct {
		name string
		x, y AccountID
	}{
		{"third party replaces b", a, c},
		{"third party replaces a", c, b},
		{"same account twice", a, a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SafetyNumber(tt.x, tt.y); got == ab {
				t.Fatalf("SafetyNumber(%s, %s) equals that of (a, b)", tt.x, tt.y)
			}
		})
	}
}

func TestEncodeFingerprintPadsDigits(t *testing.T) {
	fp := make([]byte, 30) // all-zero chunks give "00000"
	fp[9] = 7              // chunk 1 = 7
	if got := encodeFingerprint(fp); got != "000000000700000000000000000000" {
		t.Fatalf("encodeFingerprint = %s", got)
	}
}
