package identity

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func mustCert(t testing.TB, acct *AccountKey, dev *DeviceKey, name string) *DeviceCert {
	t.Helper()
	c, err := acct.CertifyDevice(dev, name, 1767225600)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertifyVerify(t *testing.T) {
	acct, dev := mustAccount(t, 1), mustDevice(t, 2)
	c := mustCert(t, acct, dev, "laptop ✓")
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	if c.Account != acct.ID() || c.Device != dev.ID() || c.Name != "laptop ✓" || c.Created != 1767225600 {
		t.Fatalf("unexpected cert %+v", c)
	}
	pub, err := c.DHPublic()
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(dev.DH().PublicKey()) {
		t.Fatal("DHPublic differs from device key")
	}
}

func TestCertVerifyRejects(t *testing.T) {
	acct := mustAccount(t, 1)
	base := mustCert(t, acct, mustDevice(t, 2), "phone")
	tests := []struct {
		name   string
		mutate func(c *DeviceCert)
		want   error
	}{
		{"other account field", func(c *DeviceCert) { c.Account = mustAccount(t, 3).ID() }, ErrBadSignature},
		{"other device", func(c *DeviceCert) { c.Device[0] ^= 1 }, ErrBadSignature},
		{"other DH", func(c *DeviceCert) { c.DH[5] ^= 1 }, ErrBadSignature},
		{"other time", func(c *DeviceCert) { c.Created++ }, ErrBadSignature},
		{"other name", func(c *DeviceCert) { c.Name = "phone2" }, ErrBadSignature},
		{"short sig", func(c *DeviceCert) { c.Sig = c.Sig[:63] }, ErrBadSignature},
		{"nil sig", func(c *DeviceCert) { c.Sig = nil }, ErrBadSignature},
		{"signed by other account", func(c *DeviceCert) {
			c.Sig = mustAccount(t, 3).Sign(certLabel, c.signedBytes())
		}, ErrBadSignature},
		{"proof by another device", func(c *DeviceCert) { c.Proof = mustDevice(t, 9).Sign(proofLabel, c.proofBytes()) }, ErrBadSignature},
		{"proof over another account", func(c *DeviceCert) {
			c.Account = mustAccount(t, 3).ID()
			c.Sig = mustAccount(t, 3).Sign(certLabel, c.signedBytes())
		}, ErrBadSignature},
		{"no proof", func(c *DeviceCert) { c.Proof = nil }, ErrBadSignature},
		{"signed with the v1 label", func(c *DeviceCert) { c.Sig = acct.Sign(certLabelV1, c.signedBytes()) }, ErrBadSignature},
		{"signed with list label", func(c *DeviceCert) {
			c.Sig = acct.Sign(listLabel, c.signedBytes())
		}, ErrBadSignature},
		{"long name", func(c *DeviceCert) { c.Name = strings.Repeat("x", 65) }, ErrMalformed},
		{"invalid UTF-8", func(c *DeviceCert) { c.Name = "\xff" }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base.clone()
			tt.mutate(&c)
			if err := c.Verify(); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCertifyRejects(t *testing.T) {
	acct, dev := mustAccount(t, 1), mustDevice(t, 2)
	other := mustDevice(t, 3)
	good, err := dev.Propose(acct.ID(), "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(c *DeviceCert)
		want   error
	}{
		{"proposal for another account", func(c *DeviceCert) { c.Account = mustAccount(t, 4).ID() }, ErrMalformed},
		{"long name", func(c *DeviceCert) { c.Name = strings.Repeat("é", 33) }, ErrMalformed},
		{"invalid UTF-8", func(c *DeviceCert) { c.Name = "a\xc0" }, ErrMalformed},
		{"no proof", func(c *DeviceCert) { c.Proof = nil }, ErrBadSignature},
		{"proof by another device", func(c *DeviceCert) { c.Proof = other.Sign(proofLabel, c.proofBytes()) }, ErrBadSignature},
		{"proof over another DH key", func(c *DeviceCert) { copy(c.DH[:], other.DH().PublicKey().Bytes()) }, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good.clone()
			tt.mutate(&p)
			if _, err := acct.Certify(&p); !errors.Is(err, tt.want) {
				t.Fatalf("Certify = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := dev.Propose(acct.ID(), strings.Repeat("x", 65), 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Propose with a long name: %v", err)
	}
	if _, err := acct.CertifyDevice(dev, strings.Repeat("x", 64), -1); err != nil {
		t.Fatalf("64-byte name and negative time: %v", err)
	}
}

// TestDeviceSquatting is the attack of issue 6: Mallory's account
// certifies Alice's device ID with Mallory's own X25519 key. Without the
// device's proof of possession the certificate verified, and a peer
// accepted Mallory's key as Alice's device's. Every way Mallory can build
// the certificate must fail.
func TestDeviceSquatting(t *testing.T) {
	alice, mallory := mustAccount(t, 1), mustAccount(t, 2)
	aliceDev, malloryDev := mustDevice(t, 3), mustDevice(t, 4)
	aliceCert := mustCert(t, alice, aliceDev, "alice laptop")
	base := DeviceCert{Account: mallory.ID(), Device: aliceDev.ID(), Created: 1767225600, Name: "alice laptop"}
	copy(base.DH[:], malloryDev.DH().PublicKey().Bytes())
	attempts := map[string]func() *DeviceCert{
		"no proof": func() *DeviceCert { c := base; return &c },
		"proof by Mallory's device": func() *DeviceCert {
			c := base
			c.Proof = malloryDev.Sign(proofLabel, c.proofBytes())
			return &c
		},
		"Alice's proof from her own certificate": func() *DeviceCert {
			c := base
			c.Proof = bytes.Clone(aliceCert.Proof)
			return &c
		},
		"Alice's certificate re-signed by Mallory": func() *DeviceCert {
			c := aliceCert.clone()
			c.Account = mallory.ID()
			return &c
		},
	}
	for name, build := range attempts {
		t.Run(name, func(t *testing.T) {
			c := build()
			if _, err := mallory.Certify(c); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Certify of a squatted device = %v, want ErrBadSignature", err)
			}
			// Mallory signs it herself, bypassing Certify.
			c.format = certFormatV2
			if len(c.Proof) != 64 {
				c.Proof = make([]byte, 64)
			}
			c.Sig = mallory.Sign(certLabel, c.signedBytes())
			if err := c.Verify(); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify of a squatted device = %v, want ErrBadSignature", err)
			}
			if _, err := mallory.SignDeviceList(nil, []DeviceCert{*c}, 1767225600); err == nil {
				t.Fatal("a device list with a squatted device was signed")
			}
		})
	}
}

// TestLegacyCert: a certificate of the first format (no proof of
// possession) still parses, so a device can re-certify itself, but never
// verifies.
func TestLegacyCert(t *testing.T) {
	raw := readHex(t, "legacy_device_cert_v1.hex")
	c, err := ParseDeviceCert(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Legacy() {
		t.Fatal("legacy certificate not reported as legacy")
	}
	if err := c.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("legacy Verify = %v, want ErrBadSignature", err)
	}
	back, err := c.MarshalBinary()
	if err != nil || !bytes.Equal(back, raw) {
		t.Fatalf("legacy re-marshal differs (%v)", err)
	}
	l, err := ParseDeviceList(readHex(t, "legacy_device_list_v1.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(l.Account); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("list of legacy certificates Verify = %v, want ErrBadSignature", err)
	}
}

func TestCertRoundTrip(t *testing.T) {
	acct := mustAccount(t, 1)
	for _, name := range []string{"", "a", "Телефон", strings.Repeat("z", 64)} {
		c := mustCert(t, acct, mustDevice(t, 2), name)
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != certFixedSize+len(name) || b[0] != certFormatV2 {
			t.Fatalf("%q: %d bytes, first %#x", name, len(b), b[0])
		}
		c2, err := ParseDeviceCert(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := c2.Verify(); err != nil {
			t.Fatal(err)
		}
		b2, err := c2.MarshalBinary()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("%q: re-marshal differs (%v)", name, err)
		}
	}
}

func TestCertMarshalRejects(t *testing.T) {
	c := mustCert(t, mustAccount(t, 1), mustDevice(t, 2), "x")
	c.Sig = c.Sig[:10]
	if _, err := c.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short sig: %v", err)
	}
	c.Sig = make([]byte, 64)
	c.Name = strings.Repeat("x", 65)
	if _, err := c.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("long name: %v", err)
	}
}

func TestParseDeviceCertRejects(t *testing.T) {
	good, err := mustCert(t, mustAccount(t, 1), mustDevice(t, 2), "ab").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	nameLen := 1 + 32*3 + 8 // offset of the name length
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), ErrMalformed},
		{"unknown version", append([]byte{9}, good[1:]...), ErrUnknownVersion},
		{"v2 without proof", good[:len(good)-64], ErrMalformed},
		{"name too long", func() []byte {
			b := bytes.Clone(good)
			b[nameLen+3] = 65
			return b
		}(), ErrMalformed},
		{"huge name length", func() []byte {
			b := bytes.Clone(good)
			b[nameLen] = 0xff
			return b
		}(), ErrMalformed},
		{"invalid UTF-8", func() []byte {
			b := bytes.Clone(good)
			b[nameLen+4] = 0xff
			return b
		}(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDeviceCert(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestCertTamper flips every bit pattern of every byte position once and
// expects ParseDeviceCert or Verify to fail.
func TestCertTamper(t *testing.T) {
	b, err := mustCert(t, mustAccount(t, 1), mustDevice(t, 2), "desk").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		for _, mask := range []byte{0x01, 0x80} {
			tb := bytes.Clone(b)
			tb[i] ^= mask
			c, err := ParseDeviceCert(tb)
			if err == nil {
				err = c.Verify()
			}
			if err == nil {
				t.Fatalf("byte %d ^ %#x: tampered cert accepted", i, mask)
			}
		}
	}
}
