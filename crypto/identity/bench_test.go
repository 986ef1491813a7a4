package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"testing"
)

// BenchmarkEd25519Verify is the anchor: one raw signature check. A device
// list of n devices costs about n+1 of these.
func BenchmarkEd25519Verify(b *testing.B) {
	k := mustAccount(b, 1)
	msg := make([]byte, 200)
	sig := ed25519.Sign(k.priv, msg)
	pub := k.ID().PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkSHA512 is the anchor for SafetyNumber, which hashes 2×5200 times.
func BenchmarkSHA512(b *testing.B) {
	buf := make([]byte, 64+33)
	b.ReportAllocs()
	for b.Loop() {
		sha512.Sum512(buf)
	}
}

func BenchmarkDeviceCertVerify(b *testing.B) {
	c := mustCert(b, mustAccount(b, 1), mustDevice(b, 2), "laptop")
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeviceListVerify8(b *testing.B) {
	f := newFixture(b, 1, 8)
	l := f.sign(b, nil, f.certs)
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Verify(f.acct.ID()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDeviceList8(b *testing.B) {
	f := newFixture(b, 1, 8)
	raw, err := f.sign(b, nil, f.certs).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDeviceList(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSafetyNumber(b *testing.B) {
	x, y := mustAccount(b, 1).ID(), mustAccount(b, 2).ID()
	b.ReportAllocs()
	for b.Loop() {
		SafetyNumber(x, y)
	}
}

// BenchmarkVerifyParts is Verify of a group envelope's signed bytes
// (group ‖ body, 200 bytes) as crypto/groupmsg calls it: against
// BenchmarkEd25519Verify it should cost the label's hashing and no
// allocation.
func BenchmarkVerifyParts(b *testing.B) {
	k := mustAccount(b, 1)
	group, body := make([]byte, 32), make([]byte, 168)
	sig := k.Sign("peergram/test/v1", append(bytes.Clone(group), body...))
	pub := k.ID().PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyParts(pub, "peergram/test/v1", sig, group, body) {
			b.Fatal("verify failed")
		}
	}
}
