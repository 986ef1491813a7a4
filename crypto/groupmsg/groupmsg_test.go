package groupmsg

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/senderkey"
)

func newDevice(t testing.TB) *identity.DeviceKey {
	t.Helper()
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func TestRoundTrip(t *testing.T) {
	dev := newDevice(t)
	group := [32]byte{1}
	raw, err := Seal(dev, group, KindSenderKey, 1_800_000_000_000, []byte("ciphertext"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(group, raw)
	if err != nil {
		t.Fatal(err)
	}
	if e.Group != group || e.Kind != KindSenderKey || e.Time != 1_800_000_000_000 || string(e.Payload) != "ciphertext" || e.Device != dev.ID() {
		t.Fatalf("%+v", e)
	}
	if len(raw) != headerSize+len("ciphertext")+64 {
		t.Fatalf("envelope of %d bytes", len(raw))
	}
	if ID(raw) == ID(append(bytes.Clone(raw[:len(raw)-1]), raw[len(raw)-1]^1)) {
		t.Fatal("two envelopes share an ID")
	}
	topic := Topic(group)
	if !strings.HasPrefix(topic, TopicPrefix) || strings.Contains(topic, string(group[:])) || topic == Topic([32]byte{2}) {
		t.Fatalf("topic %q", topic)
	}
}

// TestForgeries: an envelope re-labelled with another device, moved to
// another group's topic, edited, oversized or malformed is refused.
func TestForgeries(t *testing.T) {
	dev, victim := newDevice(t), newDevice(t)
	group := [32]byte{7}
	good, err := Seal(dev, group, KindState, 1, []byte("entry"))
	if err != nil {
		t.Fatal(err)
	}
	claimed := bytes.Clone(good)
	vid := victim.ID()
	copy(claimed[10:42], vid[:])
	if _, err := Open(group, claimed); !errors.Is(err, ErrAuth) {
		t.Fatalf("envelope re-labelled with the victim's device: %v", err)
	}
	if _, err := Open([32]byte{8}, good); !errors.Is(err, ErrAuth) {
		t.Fatalf("envelope on another group's topic: %v", err)
	}
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x08
		if _, err := Open(group, bad); err == nil {
			t.Fatalf("byte %d flipped: opened", i)
		}
	}
	for name, b := range map[string][]byte{
		"empty": nil, "truncated": good[:headerSize+10], "trailing": append(bytes.Clone(good), 0),
		"oversized": make([]byte, MaxSize+1),
	} {
		if _, err := Open(group, b); err == nil {
			t.Fatalf("%s: opened", name)
		}
	}
	if _, err := Seal(dev, group, KindEpoch, 1, make([]byte, MaxPayload+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized payload: %v", err)
	}
}

// TestMemberCannotWriteAsAnother is the attack of a member that holds a
// fellow member's Sender Keys chain (every member does) and writes a
// group message in its name. It can encrypt under the chain, but the
// envelope is signed by the device it names: naming the victim's device
// needs the victim's key, and naming its own makes the receiver open the
// message with its own chain, under which it does not open.
func TestMemberCannotWriteAsAnother(t *testing.T) {
	group := [32]byte{3}
	victim, mallory := newDevice(t), newDevice(t)
	vChain, err := senderkey.NewSender(rand.Reader, group, victim.ID(), 1)
	if err != nil {
		t.Fatal(err)
	}
	mChain, err := senderkey.NewSender(rand.Reader, group, mallory.ID(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// What every member holds: both chains.
	receivers := map[identity.DeviceID]*senderkey.Receiver{}
	for _, c := range []*senderkey.Sender{vChain, mChain} {
		r, err := senderkey.NewReceiver(c.Distribution())
		if err != nil {
			t.Fatal(err)
		}
		receivers[c.Distribution().Device] = r
	}
	// A member's receive path: the envelope's device picks the chain.
	receive := func(raw []byte) (string, error) {
		env, err := Open(group, raw)
		if err != nil {
			return "", err
		}
		r := receivers[env.Device]
		if r == nil {
			return "", errors.New("no chain of that device")
		}
		pt, err := r.Open(env.Payload)
		return string(pt), err
	}
	// Mallory encrypts under the victim's chain (a copy of its state).
	stolen, err := senderkey.ParseSender(mustMarshal(t, vChain))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := stolen.Seal([]byte("the victim says so"))
	if err != nil {
		t.Fatal(err)
	}
	asSelf, err := Seal(mallory, group, KindSenderKey, 1, ct)
	if err != nil {
		t.Fatal(err)
	}
	if text, err := receive(asSelf); err == nil {
		t.Fatalf("opened as Mallory's: %q", text)
	}
	asVictim := bytes.Clone(asSelf)
	vid := victim.ID()
	copy(asVictim[10:42], vid[:])
	if text, err := receive(asVictim); !errors.Is(err, ErrAuth) {
		t.Fatalf("envelope naming the victim: %q, %v", text, err)
	}
	// The victim's own message still opens.
	ct, err = vChain.Seal([]byte("genuine"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Seal(victim, group, KindSenderKey, 1, ct)
	if err != nil {
		t.Fatal(err)
	}
	if text, err := receive(raw); err != nil || text != "genuine" {
		t.Fatalf("genuine: %q, %v", text, err)
	}
}

func mustMarshal(t *testing.T, s *senderkey.Sender) []byte {
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzOpen(f *testing.F) {
	dev := newDevice(f)
	raw, err := Seal(dev, [32]byte{9}, KindGrants, 5, []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Open([32]byte{9}, b)
		if err == nil && (e.Kind == 0 || e.Kind > maxKind || len(e.Payload) > MaxPayload) {
			t.Fatalf("accepted %+v", e)
		}
	})
}
