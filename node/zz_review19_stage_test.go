package node

import (
	"encoding/hex"
	"sync"
	"testing"
)

// TestReview19ConcurrentFetchesOfANewLongGroup (measurement; held if
// at least one of two concurrent applies succeeds in most rounds): two
// applyFetched of the same long log of a group not held (say a user's
// accepted invitation, accepted, and a fetch a contact's end started)
// run at once. Each now begins with unstage(id, 0), which deletes every
// stored entry of the group — the other's staging too — and each failed
// staging's unstage does the same. The rounds in which neither joins are
// counted: the user's accept then answers an error (acceptLongInvitation
// checks the role at the end, so no silent failure), and the next try
// starts over. Fails only if both lose in more than half the rounds.
func TestReview19ConcurrentFetchesOfANewLongGroup(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id, held, raws, _ := r18LongGroup(t, alice, 0)
	self := alice.keys.account.ID()
	const rounds = 6
	neither, both := 0, 0
	for r := range rounds {
		if err := alice.clearLogOutside(id, false); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				p := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), Log: raws, accepted: i == 0}
				errs[i] = alice.applyFetched(id, self, p)
			}()
		}
		close(start)
		wg.Wait()
		ok := alice.heldGroup(id)
		switch {
		case errs[0] != nil && errs[1] != nil:
			neither++
		case errs[0] == nil && errs[1] == nil:
			both++
		}
		if ok {
			l, err := alice.r12Replayed(id)
			if err != nil || l.Head().Hash() != held.Head().Hash() {
				t.Fatalf("round %d: the stored log after the race: %v", r, err)
			}
		} else if errs[0] == nil || errs[1] == nil {
			t.Fatalf("round %d: an apply answered nil (%v) but the group is not held", r, errs)
		}
		if n, _ := r18StoredKeys(t, alice, id); ok && n != len(raws) || !ok && n != 0 {
			t.Fatalf("round %d: %d entries stored (held %v)", r, n, ok)
		}
		t.Logf("round %d: %v, held %v", r, errs, ok)
	}
	t.Logf("%d rounds: neither joined in %d, both answered nil in %d", rounds, neither, both)
	if neither > rounds/2 {
		t.Errorf("two concurrent applies of the same new long log both failed in %d of %d rounds", neither, rounds)
	}
}
