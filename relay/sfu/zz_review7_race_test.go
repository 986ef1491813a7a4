package sfu_test

import (
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/calls"
)

// TestReview7BridgeOutRace: groupRecv.out is documented as guarded by the
// groupRecv's mu, and bridgeOutFor / bridgeDrop write it under r.mu only;
// but bridgeOfferLocked (calls/bridge.go:194-199) reads r.out of every
// received track under Engine.mu (and b.mu), not r.mu. When tracks come
// and go together (a participant with audio and video joins or leaves,
// or two leave at once) a re-offer reads a track's out while that
// track's goroutine writes it. Run with -race: the detector reports it
// (the test then fails with "race detected during execution of test").
func TestReview7BridgeOutRace(t *testing.T) {
	env := r7Setup(t, 90*time.Second, nil)
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	br := newR7Browser(t, false, nil)
	env.connectBrowser(br)
	audio, video := patternOgg(t, 1500), patternIVF(t, 900, 800)
	for round := 0; round < 3; round++ {
		ms := []*member{env.mk(), env.mk()}
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := env.joinMember(m, calls.Media{Audio: audio, Video: video, VideoCall: true}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		waitFor(t, 15*time.Second, "the bridge to offer the four tracks", func() bool {
			o, err := env.c.e.BridgeOffer(env.call)
			return err == nil && len(o.Tracks) == 4
		})
		for _, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := m.e.LeaveGroup(env.ctx, env.call); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		waitFor(t, 15*time.Second, "the bridge to drop the tracks", func() bool {
			o, err := env.c.e.BridgeOffer(env.call)
			return err == nil && len(o.Tracks) == 0
		})
	}
}
