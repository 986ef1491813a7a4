package node

import (
	"context"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
)

// TestReview13AcceptJoinsAfterRemoval: acceptLongInvitation fetches the
// group's whole current log from the node's own relay but keeps only
// entries[:inv.From] and appends the invitation's stored end: every
// entry the relay holds past the invitation is thrown away, and
// checkFetched/applyWholeLog check membership at the end of that
// truncated log. Alice invites Dave (a stranger to him) to a long group,
// then removes him; the relay holds the removal. Dave accepts: he joins
// with role "member" a log that the relay he just asked shows he is not
// in (and the truncated "whole" skips every later entry, so he also holds
// a stale state). The same lets anyone who holds an old end that adds
// Dave (an ex-member, a relay) replay it as an invitation (storeEndInvitation
// does not check the sender is a member) and have him join a group he
// was removed from. Right: apply the relay's log as fetched (it must
// contain the invitation's end: check entries[inv.From+i] == inv.Log[i],
// or the end chains in), and refuse if this account is no member at the
// relay log's head.
func TestReview13AcceptJoinsAfterRemoval(t *testing.T) {
	relay, alice, dave, g, group := invitedToLong(t, "Removed", 300)
	ctx := context.Background()
	if _, err := alice.RemoveGroupMember(ctx, g.ID, dave.keys.account.ID().String()); err != nil {
		t.Fatal(err)
	}
	head := alice.reloadGroup(t, group).Head()
	if head.Change.Kind != groupstate.KindRemove {
		t.Fatalf("Alice's head: %s", head.Change.Kind)
	}
	awaitRelayLog(t, alice, relay, group, head)
	joined, err := dave.JoinGroup(ctx, g.ID)
	if err == nil && joined.Role == "member" {
		l := dave.reloadGroup(t, group)
		t.Fatalf("Dave joined (role %q, his head %d, the relay's %d) a group the relay's log shows he was removed from", joined.Role, l.Head().Seq, head.Seq)
	}
}
