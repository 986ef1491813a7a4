package identity

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// fixture is an account with some certified devices.
type fixture struct {
	acct  *AccountKey
	devs  []*DeviceKey
	certs []DeviceCert
}

func newFixture(t testing.TB, seed byte, n int) *fixture {
	t.Helper()
	f := &fixture{acct: mustAccount(t, seed)}
	for i := range n {
		d := mustDevice(t, 100+10*seed+byte(i)) // disjoint across fixtures
		f.devs = append(f.devs, d)
		f.certs = append(f.certs, *mustCert(t, f.acct, d, fmt.Sprintf("device %d", i)))
	}
	return f
}

func (f *fixture) sign(t testing.TB, prev *DeviceList, certs []DeviceCert) *DeviceList {
	t.Helper()
	l, err := f.acct.SignDeviceList(prev, certs, 1767225600+int64(len(certs)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// chain returns versions 1..n, version i listing the first i certificates.
func (f *fixture) chain(t testing.TB, n int) []*DeviceList {
	t.Helper()
	var out []*DeviceList
	var prev *DeviceList
	for i := 1; i <= n; i++ {
		prev = f.sign(t, prev, f.certs[:i])
		out = append(out, prev)
	}
	return out
}

func TestSignDeviceList(t *testing.T) {
	f := newFixture(t, 1, 3)
	v := f.chain(t, 3)
	if v[0].Version != 1 || v[0].Prev != [32]byte{} {
		t.Fatalf("v1: version %d prev %x", v[0].Version, v[0].Prev)
	}
	for i := 1; i < len(v); i++ {
		if v[i].Version != uint64(i+1) || v[i].Prev != v[i-1].Hash() {
			t.Fatalf("v%d does not chain", i+1)
		}
		if err := v[i].Verify(f.acct.ID()); err != nil {
			t.Fatal(err)
		}
	}
	// The list owns its certificates.
	certs := []DeviceCert{f.certs[0].clone()}
	l := f.sign(t, nil, certs)
	certs[0].Sig[0] ^= 1
	if err := l.Verify(f.acct.ID()); err != nil {
		t.Fatalf("caller's slice aliased: %v", err)
	}
	// An empty list is valid: an account may revoke every device.
	if err := f.sign(t, v[2], nil).CheckUpdate(v[2]); err != nil {
		t.Fatal(err)
	}
}

func TestSignDeviceListRejects(t *testing.T) {
	f, g := newFixture(t, 1, 2), newFixture(t, 2, 1)
	v1 := f.sign(t, nil, f.certs)
	many := make([]DeviceCert, MaxDevices+1)
	for i := range many {
		many[i] = *mustCert(t, f.acct, mustDevice(t, byte(i)), "")
	}
	tests := []struct {
		name  string
		prev  *DeviceList
		certs []DeviceCert
	}{
		{"foreign cert", nil, []DeviceCert{f.certs[0], g.certs[0]}},
		{"duplicate device", nil, []DeviceCert{f.certs[0], f.certs[0]}},
		{"too many devices", nil, many},
		{"prev of other account", g.sign(t, nil, g.certs), f.certs},
		{"broken cert", nil, []DeviceCert{func() DeviceCert { c := f.certs[0].clone(); c.Name = "x"; return c }()}},
		{"prev version 0", &DeviceList{Account: v1.Account}, f.certs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, err := f.acct.SignDeviceList(tt.prev, tt.certs, 0); err == nil {
				t.Fatalf("signed %+v", l)
			}
		})
	}
	if _, err := f.acct.SignDeviceList(nil, many[:MaxDevices], 0); err != nil {
		t.Fatalf("%d devices: %v", MaxDevices, err)
	}
}

// resign signs l as it stands with key, bypassing SignDeviceList's checks.
func resign(l *DeviceList, key *AccountKey) {
	l.Sig = key.Sign(listLabel, l.signedBytes())
}

func TestDeviceListVerifyRejects(t *testing.T) {
	f, g := newFixture(t, 1, 2), newFixture(t, 2, 1)
	base := f.sign(t, nil, f.certs)
	tests := []struct {
		name   string
		mutate func(l *DeviceList)
		want   error
	}{
		{"forged by other account", func(l *DeviceList) {
			l.Devices = append(l.Devices, g.certs[0])
			resign(l, g.acct)
		}, ErrBadSignature},
		{"account field swapped", func(l *DeviceList) { l.Account = g.acct.ID() }, ErrBadSignature},
		{"cert of other account", func(l *DeviceList) {
			l.Devices = append(l.Devices, g.certs[0])
			resign(l, f.acct)
		}, ErrBadSignature},
		{"cert with our account signed by other", func(l *DeviceList) {
			c := g.certs[0].clone()
			c.Account = f.acct.ID()
			c.Sig = g.acct.Sign(certLabel, c.signedBytes())
			l.Devices = append(l.Devices, c)
			resign(l, f.acct)
		}, ErrBadSignature},
		{"device added unsigned", func(l *DeviceList) {
			l.Devices = append(l.Devices, *mustCert(t, f.acct, mustDevice(t, 50), "sneaky"))
		}, ErrBadSignature},
		{"device removed unsigned", func(l *DeviceList) { l.Devices = l.Devices[:1] }, ErrBadSignature},
		{"version changed", func(l *DeviceList) { l.Version = 2; l.Prev[0] = 1 }, ErrBadSignature},
		{"issued changed", func(l *DeviceList) { l.Issued++ }, ErrBadSignature},
		{"sig with cert label", func(l *DeviceList) { l.Sig = f.acct.Sign(certLabel, l.signedBytes()) }, ErrBadSignature},
		{"duplicate device", func(l *DeviceList) {
			l.Devices = append(l.Devices, l.Devices[0])
			resign(l, f.acct)
		}, ErrMalformed},
		{"version 0", func(l *DeviceList) { l.Version = 0; resign(l, f.acct) }, ErrMalformed},
		{"v1 with prev", func(l *DeviceList) { l.Prev[3] = 1; resign(l, f.acct) }, ErrMalformed},
		{"too many devices", func(l *DeviceList) {
			for range MaxDevices {
				l.Devices = append(l.Devices, l.Devices[0])
			}
			resign(l, f.acct)
		}, ErrMalformed},
		{"short sig", func(l *DeviceList) { l.Sig = l.Sig[:63] }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := clone(t, base)
			tt.mutate(l)
			if err := l.Verify(f.acct.ID()); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// clone deep-copies l through its encoding.
func clone(t testing.TB, l *DeviceList) *DeviceList {
	t.Helper()
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseDeviceList(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckUpdate(t *testing.T) {
	f, g := newFixture(t, 1, 4), newFixture(t, 2, 1)
	v := f.chain(t, 3)                   // v[0..2] = versions 1..3
	v2b := f.sign(t, v[0], f.certs[2:4]) // a second version 2
	v3b := f.sign(t, v2b, f.certs[:1])   // built on the fork
	forged := clone(t, v[1])             // version 2 signed by someone else
	forged.Devices = append(forged.Devices, g.certs[0])
	resign(forged, g.acct)
	gv1 := g.sign(t, nil, g.certs)

	tests := []struct {
		name  string
		l     *DeviceList
		known *DeviceList
		want  error
	}{
		{"first list", v[0], nil, nil},
		{"next version", v[1], v[0], nil},
		{"same list", v[1], v[1], nil},
		{"rollback", v[0], v[1], ErrRollback},
		{"rollback by two", v[0], v[2], ErrRollback},
		{"fork same version", v2b, v[1], ErrFork},
		{"fork other way", v[1], v2b, ErrFork},
		{"successor of fork", v3b, v[1], ErrFork},
		{"fork's own successor", v3b, v2b, nil},
		{"gap", v[2], v[0], ErrGap},
		{"forged", forged, v[0], ErrBadSignature},
		{"forged first list", forged, nil, ErrBadSignature},
		{"other account", gv1, v[0], ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.l.CheckUpdate(tt.known); !errors.Is(err, tt.want) {
				t.Fatalf("CheckUpdate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckChain(t *testing.T) {
	f := newFixture(t, 1, 5)
	v := f.chain(t, 5)
	got, err := CheckChain(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	if got != v[4] || got.Version != 5 {
		t.Fatalf("CheckChain returned version %d", got.Version)
	}
	if got, err := CheckChain(v[1], v[2:]); err != nil || got != v[4] {
		t.Fatalf("from v2: %v", err)
	}
	if got, err := CheckChain(v[4], nil); err != nil || got != v[4] {
		t.Fatalf("empty chain: %v", err)
	}

	tampered := clone(t, v[2])
	tampered.Issued++
	fork := f.sign(t, v[1], f.certs[:1])
	tests := []struct {
		name  string
		known *DeviceList
		chain []*DeviceList
		want  error
	}{
		{"nothing", nil, nil, ErrMalformed},
		{"nil entry", nil, []*DeviceList{v[0], nil}, ErrMalformed},
		{"gap", nil, []*DeviceList{v[0], v[1], v[3], v[4]}, ErrGap},
		{"gap from known", v[0], v[2:], ErrGap},
		{"out of order", nil, []*DeviceList{v[0], v[2], v[1]}, ErrGap},
		{"rollback", v[3], v[1:], ErrRollback},
		{"tampered middle", nil, []*DeviceList{v[0], v[1], tampered, v[3]}, ErrBadSignature},
		{"fork in middle", nil, []*DeviceList{v[0], v[1], fork, v[3]}, ErrFork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, err := CheckChain(tt.known, tt.chain); !errors.Is(err, tt.want) || l != nil {
				t.Fatalf("CheckChain = %v, %v, want %v", l, err, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	f := newFixture(t, 1, 3)
	l := f.sign(t, nil, f.certs[:2])
	c, err := l.Lookup(f.devs[1].ID())
	if err != nil {
		t.Fatal(err)
	}
	if c.Device != f.devs[1].ID() || c.Name != "device 1" {
		t.Fatalf("Lookup returned %+v", c)
	}
	c.Sig[0] ^= 1 // must not reach the list
	if err := l.Verify(f.acct.ID()); err != nil {
		t.Fatalf("Lookup result aliases the list: %v", err)
	}
	if _, err := l.Lookup(f.devs[2].ID()); !errors.Is(err, ErrUnlistedDevice) {
		t.Fatalf("unlisted device: %v", err)
	}
}

func TestDeviceListRoundTrip(t *testing.T) {
	f := newFixture(t, 1, 3)
	for _, l := range append(f.chain(t, 3), f.sign(t, nil, nil)) {
		b, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != formatV1 {
			t.Fatalf("first byte %#x", b[0])
		}
		l2, err := ParseDeviceList(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.Verify(f.acct.ID()); err != nil {
			t.Fatal(err)
		}
		if l2.Hash() != l.Hash() || l2.Version != l.Version || len(l2.Devices) != len(l.Devices) {
			t.Fatal("list changed in round trip")
		}
		b2, err := l2.MarshalBinary()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-marshal differs (%v)", err)
		}
	}
}

func TestParseDeviceListRejects(t *testing.T) {
	f := newFixture(t, 1, 1)
	good, err := f.sign(t, nil, f.certs).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	const countAt = 1 + 32 + 8 + 32 + 8
	set := func(i int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[i:], v)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), ErrMalformed},
		{"unknown version", set(0, 2), ErrUnknownVersion},
		{"unknown cert version", set(countAt+8, 9), ErrUnknownVersion},
		{"version 0", set(1+32, 0, 0, 0, 0, 0, 0, 0, 0), ErrMalformed},
		{"count over max", set(countAt, 0, 0, 0, MaxDevices+1), ErrMalformed},
		{"count beyond input", set(countAt, 0, 0, 0, 5), ErrMalformed},
		{"huge count", set(countAt, 0xff, 0xff, 0xff, 0xff), ErrMalformed},
		{"cert too long", set(countAt+4, 0, 0, 1, 0), ErrMalformed},
		{"cert length short", set(countAt+4+3, certFixedSize-1), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDeviceList(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDeviceListTamper changes every byte of a marshalled list and expects
// ParseDeviceList, Verify or the hash chain to notice.
func TestDeviceListTamper(t *testing.T) {
	f := newFixture(t, 1, 2)
	v := f.chain(t, 2)
	b, err := v[1].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		for _, mask := range []byte{0x01, 0x80} {
			tb := bytes.Clone(b)
			tb[i] ^= mask
			l, err := ParseDeviceList(tb)
			if err == nil {
				err = l.CheckUpdate(v[0])
			}
			if err == nil {
				t.Fatalf("byte %d ^ %#x: tampered list accepted", i, mask)
			}
		}
	}
}

func TestHashCoversSignature(t *testing.T) {
	f := newFixture(t, 1, 1)
	l := f.sign(t, nil, f.certs)
	h := l.Hash()
	l2 := clone(t, l)
	l2.Sig[0] ^= 1
	if l2.Hash() == h {
		t.Fatal("hash ignores the signature")
	}
	l3 := clone(t, l)
	l3.Devices[0].Name = "renamed"
	if l3.Hash() == h {
		t.Fatal("hash ignores certificates")
	}
}

func TestCheckFresh(t *testing.T) {
	acct, dev := mustAccount(t, 1), mustDevice(t, 2)
	const issued = 1767225600
	l, err := acct.SignDeviceList(nil, []DeviceCert{*mustCert(t, acct, dev, "d")}, issued)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		now  int64
		want error
	}{
		{"just issued", issued, nil},
		{"at the maximum age", issued + MaxListAge, nil},
		{"one second past the maximum age", issued + MaxListAge + 1, ErrExpired},
		{"clock slightly behind", issued - MaxListSkew, nil},
		{"issued in the future", issued - MaxListSkew - 1, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.CheckFresh(tt.now); !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("CheckFresh = %v, want %v", err, tt.want)
			}
		})
	}
}
