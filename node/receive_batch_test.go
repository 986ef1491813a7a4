package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestReceiveBatch: a batch of envelopes of one session is committed
// together, yet each is judged alone: garbage and a forged copy are
// rejected without costing the good ones; a duplicate is accepted and
// stored once; one delivered receipt names every new message.
func TestReceiveBatch(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	bob.publish(t, nil, bob.cert)
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	text := func(i int) payload { return payload{Kind: "text", Text: fmt.Sprintf("m%d", i), Seq: uint64(i)} }
	if got := bob.send(t, alice, text(0), newMessageID(t)); got != int(directOK) {
		t.Fatalf("first message: answer %d", got)
	}
	// Alice's receipt for it confirms Bob's session: what he seals next
	// are plain messages of the session, not prekey envelopes.
	var first payload
	if err := json.Unmarshal(bob.receive(t).Body, &first); err != nil || first.Kind != "receipt" || len(first.IDs) != 1 {
		t.Fatalf("first receipt %+v (%v)", first, err)
	}
	var envs [][]byte
	for i := 1; i <= 5; i++ {
		envs = append(envs, bob.seal(t, alice, text(i), newMessageID(t)))
	}
	forged := slices.Clone(envs[3])
	forged[len(forged)-1] ^= 1
	batch := [][]byte{envs[0], []byte("garbage"), envs[1], envs[0], envs[2], forged, envs[3], envs[4]}
	errs := alice.receiveBatch(ctx, batch)
	for i, err := range errs {
		bad := i == 1 || i == 5
		if bad != errors.Is(err, errPermanent) || (!bad && err != nil) {
			t.Fatalf("envelope %d: %v", i, err)
		}
	}
	want := []string{"m0", "m1", "m2", "m3", "m4", "m5"}
	if got := texts(t, alice, "bob"); !slices.Equal(got, want) {
		t.Fatalf("Alice has %q, want %q", got, want)
	}
	// One receipt names m1..m5.
	var p payload
	if err := json.Unmarshal(bob.receive(t).Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Kind != "receipt" || len(p.IDs) != 5 {
		t.Fatalf("Bob got a %q naming %d messages, want one receipt for 5", p.Kind, len(p.IDs))
	}
}
