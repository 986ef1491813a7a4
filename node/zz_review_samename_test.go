package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
)

// TestReviewSameNameConcurrentDownloads: downloadPath picks a free name
// by Stat (NAME and NAME.part absent) and the .part is created later, in
// fetchChunks (O_CREATE without O_EXCL), after a database update. Two
// downloads of files with the same name started together (a sender sends
// two "report.bin"; a client downloads both) can pick the same path and
// write into the same .part: chunks interleave, one fails its SHA-256 or,
// worse, one is reported downloaded at a path whose bytes the other
// download then overwrites.
func TestReviewSameNameConcurrentDownloads(t *testing.T) {
	mal, bob, _ := reviewPair(t)
	ctx := context.Background()
	for round := 0; round < 6; round++ {
		name := fmt.Sprintf("report%d.bin", round)
		a := make([]byte, 2*filecrypt.ChunkSize+1)
		b := make([]byte, 2*filecrypt.ChunkSize+1)
		for i := range b {
			a[i], b[i] = 'a', 'b'
		}
		ma := reviewForgeSend(t, mal, "bob", name, a, nil, chat.MessageID{})
		mb := reviewForgeSend(t, mal, "bob", name, b, nil, chat.MessageID{})
		reviewWaitFile(t, bob, ma.ID)
		reviewWaitFile(t, bob, mb.ID)
		dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		var wg sync.WaitGroup
		res := make([]chat.File, 2)
		errs := make([]error, 2)
		startGate := make(chan struct{})
		for i, id := range []string{ma.ID, mb.ID} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startGate
				res[i], errs[i] = bob.Download(dctx, id, "")
			}()
		}
		close(startGate)
		wg.Wait()
		cancel()
		time.Sleep(200 * time.Millisecond)
		want := [][32]byte{sha(a), sha(b)}
		for i := range res {
			if errs[i] != nil {
				t.Errorf("ATTACK WORKS (round %d): download %d of two same-named files failed: %v (paths %q %q)", round, i, errs[i], res[0].Path, res[1].Path)
				continue
			}
			if got := fileSum(t, res[i].Path); got != want[i] {
				t.Errorf("ATTACK WORKS (round %d): download %d reported done at %s, but the file there is not its content", round, i, res[i].Path)
			}
		}
		if errs[0] == nil && errs[1] == nil && res[0].Path == res[1].Path {
			t.Errorf("ATTACK WORKS (round %d): both downloads reported at %s", round, res[0].Path)
		}
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }
