package history

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
)

// TestHeldLeaveStored: a member's leave that the relay's log already
// holds (it came with a registration) is still taken when its envelope
// is handed over, so members that lack it can fetch it from the
// history. The leaver is no member after its own leave; the relay used
// to let a held entry through only if its author was still a member, so
// it refused the envelope of every held leave ("not a device of a
// member"), and a node that left again after a fork had dropped its
// first leave stayed a member at the others (seen in
// node.TestConcurrentAppendsConflict under load).
func TestHeldLeaveStored(t *testing.T) {
	hl := newHeldLeave(t, false)
	r, c, rh, gid, bob, leave := hl.r, hl.c, hl.rh.ID(), hl.gid, hl.bob, hl.leave
	ctx := context.Background()
	env, err := groupmsg.Seal(bob.dev, gid, groupmsg.KindState, time.Now().UnixMilli(), leave)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(ctx, rh, gid, env, bob.dev); err != nil {
		t.Fatalf("the envelope of a leave the log holds refused: %v", err)
	}
	eventually(t, "the leave in the history", func() bool {
		byDev, _, _ := rv11Items(t, c, r, gid)
		return byDev[bob.dev.ID().String()] == 1
	})
	// A second wrapping of the same leave adds nothing.
	again, err := groupmsg.Seal(bob.dev, gid, groupmsg.KindState, time.Now().UnixMilli()+1, leave)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Store(ctx, rh, gid, again, bob.dev)
	time.Sleep(300 * time.Millisecond)
	if byDev, _, _ := rv11Items(t, c, r, gid); byDev[bob.dev.ID().String()] != 1 {
		t.Fatalf("the history holds %d envelopes of one leave", byDev[bob.dev.ID().String()])
	}
}

// heldLeave is a relay holding a group of Alice's in which Bob left
// (and, if banned, was banned after): registered by Alice, so the relay
// holds Bob's leave in its log but no envelope of it.
type heldLeave struct {
	r     *relayUnderTest
	c     *Client
	rh    host.Host
	gid   [32]byte
	bob   *member
	leave []byte // Bob's leave entry
}

func newHeldLeave(t *testing.T, banned bool) heldLeave {
	t.Helper()
	alice, bob := newMember(t), newMember(t)
	gid, entries := groupLog(t, alice, bob)
	entries = appendLog(t, entries, bob, groupstate.Change{Kind: groupstate.KindLeave})
	leave := entries[len(entries)-1]
	if banned {
		entries = appendLog(t, entries, alice, groupstate.Change{Kind: groupstate.KindBan, Account: bob.acct.ID()})
	}
	rh := newHost(t)
	r := startServer(t, t.TempDir(), rh, nil)
	c := clientOf(t, r)
	if err := c.Register(context.Background(), rh.ID(), gid, entries, [][]byte{alice.listBytes(t), bob.listBytes(t)}, alice.dev); err != nil {
		t.Fatal(err)
	}
	return heldLeave{r: r, c: c, rh: rh, gid: gid, bob: bob, leave: leave}
}
