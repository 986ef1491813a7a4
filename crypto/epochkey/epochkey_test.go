package epochkey

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

type device struct {
	key  *identity.DeviceKey
	cert *identity.DeviceCert
}

func newDevice(t testing.TB) device {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "d", 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return device{dev, cert}
}

func certs(ds ...device) []identity.DeviceCert {
	out := make([]identity.DeviceCert, len(ds))
	for i, d := range ds {
		out[i] = *d.cert
	}
	return out
}

// distribute wraps a new key of epoch for members and returns it with
// the encoded pages (as members receive them).
func distribute(t testing.TB, admin device, group [32]byte, epoch uint64, members ...device) (Key, [][]byte) {
	t.Helper()
	k, err := NewKey(rand.Reader, group, epoch)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := Wrap(admin.key, admin.cert, k, certs(members...))
	if err != nil {
		t.Fatal(err)
	}
	var raws [][]byte
	for _, p := range pages {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	return k, raws
}

func unwrap(t testing.TB, pages [][]byte, d device) (Key, error) {
	t.Helper()
	for _, raw := range pages {
		g, err := ParseGrants(raw)
		if err != nil {
			t.Fatal(err)
		}
		k, err := g.Unwrap(d.key)
		if errors.Is(err, ErrNoGrant) {
			continue
		}
		return k, err
	}
	return Key{}, ErrNoGrant
}

// TestRemovedMemberLocksOut: after a member's removal the next epoch's
// key goes to the others only; the removed member cannot get it, and
// cannot read what is sent under it, with the old key or without.
func TestRemovedMemberLocksOut(t *testing.T) {
	admin, stays, removed, outsider := newDevice(t), newDevice(t), newDevice(t), newDevice(t)
	var group [32]byte
	_, _ = rand.Read(group[:])
	k1, pages1 := distribute(t, admin, group, 1, admin, stays, removed)
	for _, d := range []device{admin, stays, removed} {
		k, err := unwrap(t, pages1, d)
		if err != nil || k != k1 {
			t.Fatalf("epoch 1 key: %v", err)
		}
	}
	if _, err := unwrap(t, pages1, outsider); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("outsider: %v", err)
	}
	before, err := Seal(rand.Reader, k1, stays.key.ID(), []byte("before the removal"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Open(k1, stays.key.ID(), before); err != nil || string(pt) != "before the removal" {
		t.Fatalf("%q, %v", pt, err)
	}

	k2, pages2 := distribute(t, admin, group, 2, admin, stays)
	if _, err := unwrap(t, pages2, removed); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("removed member unwrapped epoch 2: %v", err)
	}
	after, err := Seal(rand.Reader, k2, stays.key.ID(), []byte("after the removal"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(k1, stays.key.ID(), after); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("epoch-2 message with the epoch-1 key: %v", err)
	}
	// The removed member relabels the message as epoch 1: it does not
	// open under the old key.
	relabeled := bytes.Clone(after)
	relabeled[8] = 1
	if _, err := Open(k1, stays.key.ID(), relabeled); !errors.Is(err, ErrAuth) {
		t.Fatalf("relabelled message: %v", err)
	}
	if bytes.Contains(after, []byte("after the removal")) {
		t.Fatal("plaintext in the message")
	}
	if k, err := unwrap(t, pages2, stays); err != nil || k != k2 {
		t.Fatalf("remaining member: %v", err)
	}
}

// TestForgeries: a message opens only as one of the device it was
// sealed as (a member encrypting under the epoch key as itself cannot
// pass it off as another's: the envelope's device signature picks the
// device, see crypto/groupmsg); grants from a forged certificate, a copy
// moved to another device, and flipped bytes are refused.
func TestForgeries(t *testing.T) {
	admin, m, n := newDevice(t), newDevice(t), newDevice(t)
	var group [32]byte
	k, pages := distribute(t, admin, group, 1, admin, m, n)
	byM, err := Seal(rand.Reader, k, m.key.ID(), []byte("M's words"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(k, n.key.ID(), byM); !errors.Is(err, ErrAuth) {
		t.Fatalf("M's message opened as N's: %v", err)
	}
	other := k
	other.Group[0] ^= 1
	if _, err := Open(other, m.key.ID(), byM); !errors.Is(err, ErrAuth) {
		t.Fatalf("message opened in another group: %v", err)
	}
	for i := range byM {
		bad := bytes.Clone(byM)
		bad[i] ^= 0x10
		if _, err := Open(k, m.key.ID(), bad); err == nil {
			t.Fatalf("message byte %d flipped: opened", i)
		}
	}
	// Grants: a certificate claiming another account; a wrapped copy
	// moved to another device's slot; bytes flipped.
	g, err := ParseGrants(pages[0])
	if err != nil {
		t.Fatal(err)
	}
	fake := *m.cert
	fake.Account = admin.cert.Account
	fg, err := Wrap(m.key, &fake, k, certs(n))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fg[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseGrants(raw); !errors.Is(err, ErrAuth) {
		t.Fatalf("grants under a forged certificate: %v", err)
	}
	g.Grants[1].Wrapped, g.Grants[2].Wrapped = g.Grants[2].Wrapped, g.Grants[1].Wrapped
	if _, err := g.Unwrap(m.key); err == nil {
		t.Fatal("a copy moved to another device unwrapped")
	}
	for i := 0; i < len(pages[0]); i += 7 {
		bad := bytes.Clone(pages[0])
		bad[i] ^= 0x10
		if _, err := ParseGrants(bad); err == nil {
			t.Fatalf("grants byte %d flipped: parsed", i)
		}
	}
	if _, err := Seal(rand.Reader, k, m.key.ID(), make([]byte, MaxPlaintext+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized plaintext: %v", err)
	}
}

// TestPages: a group larger than a page gets several, each member's copy
// in one of them.
func TestPages(t *testing.T) {
	admin := newDevice(t)
	members := make([]device, PageGrants+1)
	for i := range members {
		members[i] = newDevice(t)
	}
	var group [32]byte
	k, pages := distribute(t, admin, group, 9, members...)
	if len(pages) != 2 {
		t.Fatalf("%d pages", len(pages))
	}
	for _, d := range []device{members[0], members[PageGrants-1], members[PageGrants]} {
		if got, err := unwrap(t, pages, d); err != nil || got != k {
			t.Fatalf("member: %v", err)
		}
	}
}

// FuzzDecoders: grants and messages from the network decode or fail,
// never panic.
func FuzzDecoders(f *testing.F) {
	admin, m := newDevice(f), newDevice(f)
	var group [32]byte
	k, pages := distribute(f, admin, group, 1, admin, m)
	msg, err := Seal(rand.Reader, k, m.key.ID(), []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pages[0])
	f.Add(msg)
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := ParseGrants(b); err == nil {
			_, _ = g.Unwrap(m.key)
		}
		_, _ = Open(k, m.key.ID(), b)
	})
}

// BenchmarkWrap is the cost of one member device's copy of an epoch key
// (HPKE seal), which scales a rotation: 200,000 devices take 200,000 of
// them, plus one signature per page of PageGrants.
func BenchmarkWrap(b *testing.B) {
	admin := newDevice(b)
	members := make([]device, 256)
	for i := range members {
		members[i] = newDevice(b)
	}
	k, err := NewKey(rand.Reader, [32]byte{}, 1)
	if err != nil {
		b.Fatal(err)
	}
	cs := certs(members...)
	b.ResetTimer()
	for b.Loop() {
		pages, err := Wrap(admin.key, admin.cert, k, cs)
		if err != nil || len(pages) != 1 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cs)), "ns/device")
}

// BenchmarkUnwrap is one member's cost of reading its copy from a page.
func BenchmarkUnwrap(b *testing.B) {
	admin, m := newDevice(b), newDevice(b)
	_, pages := distribute(b, admin, [32]byte{}, 1, admin, m)
	g, err := ParseGrants(pages[0])
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := g.Unwrap(m.key); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLowOrderDeviceSkipped: a device certified with a low-order X25519
// key (all zeros) gets no copy, and the others still do — one bad device
// cannot stop a group's rotation (review finding).
func TestLowOrderDeviceSkipped(t *testing.T) {
	admin, good, bad := newDevice(t), newDevice(t), newDevice(t)
	badCert := *bad.cert
	badCert.DH = [32]byte{}
	k, err := NewKey(rand.Reader, [32]byte{1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := Wrap(admin.key, admin.cert, k, []identity.DeviceCert{*good.cert, badCert})
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != 1 || len(pages[0].Grants) != 1 || pages[0].Grants[0].Device != good.key.ID() {
		t.Fatalf("pages %+v", pages)
	}
	if got, err := pages[0].Unwrap(good.key); err != nil || got != k {
		t.Fatalf("the good device: %v", err)
	}
}
