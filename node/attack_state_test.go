package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/storage"
)

// TestAttackStrangerSessionState: a stranger — an account Bob never
// accepted, and then explicitly ignored — makes Bob store one current and
// maxArchived archived sessions for each of up to identity.MaxDevices
// devices, each session padded with ratchet.MaxSkippedKeys skipped keys by
// skipping ahead in its first message. Sessions never expire, and ignoring
// the request does not drop them. One account costs the attacker one
// directory publish and ~320 small envelopes; Bob keeps tens of MB per
// account, forever, and rewrites a session of up to ~140 kB on every
// envelope that reaches it.
func TestAttackStrangerSessionState(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()

	attacker := newFakeDevice(t, relay, nil, "spam")
	// 8 devices keep the test short; a list may hold identity.MaxDevices
	// (64), eight times as much.
	const nDevices = 8
	devs := make([]*identity.DeviceKey, nDevices)
	certs := make([]*identity.DeviceCert, nDevices)
	for i := range devs {
		var err error
		if devs[i], err = identity.NewDeviceKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
		if certs[i], err = attacker.acct.CertifyDevice(devs[i], "spam", time.Now().Unix()); err != nil {
			t.Fatal(err)
		}
	}
	attacker.publishList(t, nil, certs...)

	var dirRes *directory.Result
	eventually(t, "Bob's keys in the directory", func() (bool, error) {
		var err error
		dirRes, err = attacker.dir.Fetch(ctx, attacker.relay, bob.keys.account.ID())
		return err == nil, err
	})
	entry := dirRes.Devices[0]
	bundle := *entry.Bundle
	bundle.OneTime, bundle.OneTimePQ = nil, nil // signed + last-resort prekeys: reusable
	body, _ := json.Marshal(payload{Kind: "text", Text: "x"})

	perDevice := maxArchived + 1
	for i := range devs {
		self := sealed.Device{Key: devs[i], Cert: certs[i]}
		for range perDevice {
			s, err := sealed.Initiate(rand.Reader, self, entry.Cert, &bundle, nil)
			if err != nil {
				t.Fatal(err)
			}
			var env []byte
			for range 300 { // skip ahead: Bob stores the skipped keys
				if env, err = s.Seal(rand.Reader, sealed.Message{ID: newMessageID(t), Timestamp: time.Now().UnixMilli(), Body: body}); err != nil {
					t.Fatal(err)
				}
			}
			// Past maxStrangerDevices devices, new sessions are refused.
			want := int(directOK)
			if i >= maxStrangerDevices {
				want = int(directRejected)
			}
			if got := sendRaw(t, attacker, bob, env); got != want {
				t.Fatalf("device %d: answer %d, want %d", i, got, want)
			}
		}
	}
	count := func() (sessions, bytes int) {
		t.Helper()
		a := attacker.acct.ID()
		if err := bob.db.View(func(tx *storage.Txn) error {
			for _, prefix := range [][]byte{append([]byte("cur/"), a[:]...), append([]byte("old/"), a[:]...)} {
				if err := tx.Iterate(bob.st.sessions, prefix, func(_, val []byte) error {
					sessions++
					bytes += len(val)
					return nil
				}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return sessions, bytes
	}
	// A stranger: one session per device (no archive), at most
	// maxStrangerDevices devices.
	if sessions, bytes := count(); sessions > maxStrangerDevices {
		t.Fatalf("a stranger made Bob keep %d sessions (%.1f MB)", sessions, float64(bytes)/1e6)
	}
	if err := bob.IgnoreRequest(ctx, attacker.acct.ID().String()); err != nil {
		t.Fatal(err)
	}
	if sessions, bytes := count(); sessions != 0 {
		t.Fatalf("an ignored stranger holds %d sessions, %.1f MB, in Bob's store", sessions, float64(bytes)/1e6)
	}
}
