package node

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
)

// TestReview6GrantCrashesDaemon: end to end through two nodes. Alice, a
// contact of Bob's, sends an opening offer dated ten minutes ago (a missed
// call at Bob, no connection made) and then a grant for it. Bob's node
// hands both to its engine on its signal goroutine; grantedOffer
// dereferences the call's nil peer connection and nothing recovers: Bob's
// daemon dies. The attack runs in a child process (it kills the process).
func TestReview6GrantCrashesDaemon(t *testing.T) {
	if os.Getenv("REVIEW6_GRANT_CHILD") == "1" {
		review6GrantChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReview6GrantCrashesDaemon$", "-test.count=1")
	tmp := "/tmp/review6/grantchild"
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp) // the crashed child leaves its homes behind
	cmd.Env = append(os.Environ(), "REVIEW6_GRANT_CHILD=1", "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	crashed := err != nil && strings.Contains(string(out), "nil pointer dereference") && strings.Contains(string(out), "grantedOffer")
	if crashed {
		i := strings.Index(string(out), "panic:")
		t.Errorf("ATTACK WORKS: a contact's offer + grant crashed Bob's daemon:\n%s", string(out)[i:min(len(out), i+1500)])
	} else if err != nil {
		t.Fatalf("child failed otherwise: %v\n%s", err, out)
	}
}

func review6GrantChild(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, callNode, relay.addr)
	bob := startNodeWith(t, bobHome, callNode, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	id := "0123456789abcdef0123456789abcdef"
	old := time.Now().Add(-10 * time.Minute).UnixMilli()
	for _, s := range []calls.Signal{
		{Call: id, Type: calls.SignalOffer, SDP: "v=0\r\na=fingerprint:sha-256 AA:BB\r\n", At: old},
		{Call: id, Type: calls.SignalGrant, At: time.Now().UnixMilli()},
	} {
		if err := (callSignaller{alice.Node}).Signal(ctx, bobInfo.AccountID, s); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the missed call at Bob", func() (bool, error) {
		c, err := bob.Call(ctx, id)
		return err == nil && c.State == calls.StateMissed, nil
	})
	time.Sleep(3 * time.Second) // the grant follows; a node that survives passes
	if _, err := bob.Calls(ctx); err != nil {
		t.Fatal(err)
	}
}
