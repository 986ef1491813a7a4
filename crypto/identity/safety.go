package identity

import (
	"crypto/sha512"
	"strconv"
	"strings"
)

// Parameters of Signal's numeric fingerprint; see
// https://signal.org/docs/ and libsignal rust/protocol/src/fingerprint.rs.
const (
	fingerprintIterations = 5200 // Signal's clients use 5200
	fingerprintVersion    = 0    // the 2-byte version at the start of the hash input
	fingerprintChunks     = 6    // 5-byte chunks, 5 digits each: 30 digits per side
)

// SafetyNumber returns the 60-digit safety number of accounts a and b in 12
// groups of 5 digits separated by spaces. Both users compute the same string
// whichever order they pass the accounts in; if it matches on both screens,
// neither side is talking to an impostor's key.
func SafetyNumber(a, b AccountID) string {
	ka := append([]byte{keyTypeEd25519}, a[:]...)
	kb := append([]byte{keyTypeEd25519}, b[:]...)
	digits := displayFingerprint(fingerprintIterations, a[:], ka, b[:], kb)
	var sb strings.Builder
	sb.Grow(len(digits) + len(digits)/5 - 1)
	for i := 0; i < len(digits); i += 5 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(digits[i : i+5])
	}
	return sb.String()
}

// displayFingerprint is Signal's DisplayableFingerprint: the two 30-digit
// halves in ascending order, so both sides agree.
func displayFingerprint(iterations int, localID, localKey, remoteID, remoteKey []byte) string {
	l := encodeFingerprint(fingerprint(iterations, localID, localKey))
	r := encodeFingerprint(fingerprint(iterations, remoteID, remoteKey))
	if l < r {
		return l + r
	}
	return r + l
}

// fingerprint is Signal's iterated hash of one side:
// h = SHA-512(version[2] || key || id || key), then iterations-1 times
// h = SHA-512(h || key).
func fingerprint(iterations int, id, key []byte) []byte {
	h := sha512.New()
	h.Write([]byte{fingerprintVersion >> 8, fingerprintVersion & 0xff})
	h.Write(key)
	h.Write(id)
	h.Write(key)
	buf := h.Sum(make([]byte, 0, sha512.Size))
	for i := 1; i < iterations; i++ {
		h.Reset()
		h.Write(buf)
		h.Write(key)
		buf = h.Sum(buf[:0])
	}
	return buf
}

// encodeFingerprint turns the first 30 bytes of a fingerprint into 30 digits:
// each 5-byte big-endian chunk mod 100000, zero-padded to 5 digits.
func encodeFingerprint(fp []byte) string {
	out := make([]byte, 0, 5*fingerprintChunks)
	for i := range fingerprintChunks {
		var x uint64
		for _, c := range fp[5*i : 5*i+5] {
			x = x<<8 | uint64(c)
		}
		s := strconv.FormatUint(x%100000, 10)
		for range 5 - len(s) {
			out = append(out, '0')
		}
		out = append(out, s...)
	}
	return string(out)
}
