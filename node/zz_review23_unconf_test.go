package node

// Outside review 23: own posts a home relay refuses as unknown.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupmsg"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
)

func rv23Gid(t *testing.T, id string) groupstate.GroupID {
	t.Helper()
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 32 {
		t.Fatalf("group ID %q", id)
	}
	return groupstate.GroupID(raw)
}

// rv23Posts counts the posts (sender-key envelopes) relay holds of gid.
func rv23Posts(ctx context.Context, c *history.Client, r *rv22Relay, gid groupstate.GroupID) (int, error) {
	pg, err := c.Query(ctx, r.id, gid, 0, 0, false)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, it := range pg.Items {
		if e, err := groupmsg.Open(gid, it.Envelope); err == nil && e.Kind == groupmsg.KindSenderKey {
			n++
		}
	}
	return n, nil
}

// TestReview23UnknownGroupPostsStarveOthers: Alice's home relay keeps no
// more of her new groups (its per-account daily limit of new
// registrations, here 1; a full relay, MaxGroups, is the same). Posts to
// a group it refuses are answered CodeUnknown; since today they are kept
// in groups.unconf for a week "while still a member" and offered again
// every round. storeUnconfirmed takes the first 256 due posts in key
// order (group ID first) that this relay does not hold: with 256 posts
// in a refused group whose ID sorts first, they fill every round, and a
// post to the group the relay does keep, made while the relay was
// restarting, is never handed over — the relay never holds it, and
// members that read from it never get it. Expected: a post refused as
// unknown does not hold up the others (the relay holds the missed post).
func TestReview23UnknownGroupPostsStarveOthers(t *testing.T) {
	// (Adapted when fixed: a round whose refused groups all sort after
	// the kept one shows nothing; another round, with a new account,
	// instead of a skip.)
	for round := range 5 {
		if rv23StarveRound(t) {
			return
		}
		t.Logf("round %d: no refused group sorts before the kept one", round)
	}
	t.Fatal("no round had a refused group sort before the kept one")
}

func rv23StarveRound(t *testing.T) bool {
	r := rv22NewRelay(t, relayMods{hist: func(c *history.Config) { c.MaxGroupsPerPeer = 1 }})
	aliceHome, _ := initHome(t, "alice")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.GroupStoreAfter = time.Second }, r.addr)
	ctx := context.Background()
	hc := history.NewClient(alice.host)
	good, err := alice.CreateGroup(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	ggood := rv23Gid(t, good.ID)
	eventually(t, "the relay keeping the first group", func() (bool, error) {
		_, err := hc.Query(ctx, r.id, ggood, 0, 0, true)
		return err == nil, nil
	})
	var bad string
	for i := 0; i < 20 && bad == ""; i++ {
		g, err := alice.CreateGroup(ctx, fmt.Sprint("refused ", i))
		if err != nil {
			t.Fatal(err)
		}
		if gb := rv23Gid(t, g.ID); bytes.Compare(gb[:], ggood[:]) < 0 {
			bad = g.ID
		}
	}
	if bad == "" {
		r.stop()
		return false
	}
	for i := range rv23BadPosts {
		if _, err := alice.SendGroup(ctx, bad, fmt.Sprint("refused post ", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendGroup(ctx, good.ID, "live"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the live post at the relay", func() (bool, error) {
		n, err := rv23Posts(ctx, hc, r, ggood)
		return err == nil && n == 1, nil
	})
	r.stop()
	if _, err := alice.SendGroup(ctx, good.ID, "while the relay restarts"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // past gossipsub's message cache
	r.start(t)
	deadline := time.Now().Add(25 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		n, _ = rv23Posts(ctx, hc, r, ggood)
		if n >= 2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("the relay holds %d of 2 posts of the group it keeps; Alice's unconfirmed posts: %d", n, rv22Unconfirmed(t, alice))
	if n < 2 {
		t.Errorf("a post made while the home relay restarted never reaches it: %d own posts of a group the relay refuses (kept as 'unknown') take every one of the 256 Store slots each round", rv22Unconfirmed(t, alice)-1)
	}
	return true
}

// rv23BadPosts is how many posts go to the refused group (0: the
// control, where the missed post does reach the relay).
var rv23BadPosts = 260
