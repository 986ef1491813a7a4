package calls

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// emoji are the 64 symbols of a verification code (6 bits each), chosen
// to be told apart at a glance and named the same in any language.
var emoji = [64]string{
	"🐶", "🐱", "🦁", "🐴", "🦄", "🐷", "🐘", "🐰",
	"🐼", "🐓", "🐧", "🐢", "🐟", "🐙", "🦋", "🌷",
	"🌳", "🌵", "🍄", "🌏", "🌙", "☁️", "🔥", "🍌",
	"🍎", "🍓", "🌽", "🍕", "🎂", "❤️", "😀", "🤖",
	"🎩", "👓", "🔧", "🎅", "👍", "☂️", "⌛", "⏰",
	"🎁", "💡", "📕", "✏️", "📎", "✂️", "🔒", "🔑",
	"🔨", "☎️", "🏁", "🚂", "🚲", "✈️", "🚀", "🏆",
	"⚽", "🎸", "🎺", "🔔", "⚓", "🎧", "📁", "📌",
}

// verification derives a call's short verification code from its ID and
// the DTLS certificate fingerprints of the offerer and the answerer, as
// their SDPs state them: SHA-256 over a label, the ID and both, the
// first 24 bits as four emoji and the next 20 as a number below
// 1,000,000. Both sides compute the same code from the same two SDPs; a
// key substituted on the way (which the DTLS check refuses anyway) gives
// different codes on the two screens.
func verification(call, offerSDP, answerSDP string) (string, error) {
	of, err := fingerprints(offerSDP)
	if err != nil {
		return "", err
	}
	af, err := fingerprints(answerSDP)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, part := range []string{"peergram/call/verify/v1", call, of, af} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	sum := h.Sum(nil)
	bits := uint64(binary.BigEndian.Uint64(sum[:8]))
	var b strings.Builder
	for i := range 4 {
		b.WriteString(emoji[(bits>>(58-6*i))&63])
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%06d", ((bits>>20)&0xfffff)%1000000)
	return b.String(), nil
}

// fingerprints returns an SDP's DTLS fingerprint lines, normalised and
// sorted, joined: what the peer's certificate must hash to.
func fingerprints(sdp string) (string, error) {
	var fps []string
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "a=fingerprint:"); ok {
			v = strings.ToLower(strings.TrimSpace(v))
			if !slices.Contains(fps, v) {
				fps = append(fps, v)
			}
		}
	}
	if len(fps) == 0 {
		return "", fmt.Errorf("%w: an SDP without a DTLS fingerprint", ErrMalformed)
	}
	// Order does not depend on where the lines stood (session or media
	// level).
	slices.Sort(fps)
	return strings.Join(fps, ","), nil
}
