package identity

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"strings"
	"testing"
)

func mustCert(t testing.TB, acct *AccountKey, dev *DeviceKey, name string) *DeviceCert {
	t.Helper()
	c, err := acct.Certify(dev.ID(), dev.DH().PublicKey(), name, 1767225600)
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
	p256, err := ecdh.P256().NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dh   *ecdh.PublicKey
		dev  string
	}{
		{"nil DH", nil, "a"},
		{"P-256 DH", p256.PublicKey(), "a"},
		{"long name", dev.DH().PublicKey(), strings.Repeat("é", 33)},
		{"invalid UTF-8", dev.DH().PublicKey(), "a\xc0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := acct.Certify(dev.ID(), tt.dh, tt.dev, 0); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Certify = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := acct.Certify(dev.ID(), dev.DH().PublicKey(), strings.Repeat("x", 64), -1); err != nil {
		t.Fatalf("64-byte name and negative time: %v", err)
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
		if len(b) != certFixedSize+len(name) || b[0] != formatV1 {
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
