package node

import (
	"crypto/rand"
	"encoding/json"
	"math"
	"testing"

	"github.com/peergram/peergram/crypto/sealed"
)

// TestAttackPoisonTimestamp: an authenticated message whose timestamp is
// past year 9999 (or before year 0) passes sealed's policy as ErrTimestamp
// ("kept, flagged"), but apply cannot store it: time.Time's JSON encoding
// fails, the transaction rolls back, and receive returns a transient error.
// The envelope is never acked: the relay redelivers it at every
// subscription for its whole TTL (and a direct sender retries it), and
// the message is neither stored nor dropped.
func TestAttackPoisonTimestamp(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome, relay.addr)
	alice := newFakeDevice(t, relay, nil, "alice")
	alice.publish(t, nil, alice.cert)
	if got := alice.send(t, bob, payload{Kind: "text", Text: "hello"}, newMessageID(t)); got != int(directOK) {
		t.Fatalf("first message: answer %d", got)
	}
	s := alice.out[bob.keys.device.ID()]
	body, _ := json.Marshal(payload{Kind: "text", Text: "from the far future"})
	for _, ts := range []int64{math.MaxInt64, math.MinInt64 + 1} {
		env, err := s.Seal(rand.Reader, sealed.Message{ID: newMessageID(t), Timestamp: ts, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if got := sendRaw(t, alice, bob, env); got == -1 {
			t.Errorf("timestamp %d: the node reset the stream (transient error): the envelope is retried forever", ts)
		}
	}
}
