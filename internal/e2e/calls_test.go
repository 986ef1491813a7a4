package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

type callTrack struct {
	Name, Kind, Direction, File string
	Packets, Frames             uint64
}

type callRow struct {
	ID, Peer, Direction, State, Reason, Verification string
	StartedAt                                        time.Time  `json:"started_at"`
	EndedAt                                          *time.Time `json:"ended_at"`
	Tracks                                           []callTrack
}

func (e *env) calls(home string) []callRow {
	out, err := e.run("peergram", "calls", "--home", home, "--json")
	if err != nil {
		return nil
	}
	var cs []callRow
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		e.t.Fatalf("calls --json: %v: %s", err, out)
	}
	return cs
}

func (e *env) call(home, id string) callRow {
	for _, c := range e.calls(home) {
		if c.ID == id {
			return c
		}
	}
	return callRow{}
}

func (e *env) waitCallState(home, id, state string) callRow {
	var c callRow
	eventually(e.t, fmt.Sprintf("call %s %s at %s", id, state, filepath.Base(home)), 30*time.Second, func() error {
		if c = e.call(home, id); c.State != state {
			return fmt.Errorf("%+v", c)
		}
		return nil
	})
	return c
}

func sample(name string) string { return filepath.Join("..", "..", "calls", "testdata", name) }

func countIVF(t *testing.T, p string) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := ivfreader.NewWith(f)
	if err != nil || h.FourCC != "VP80" {
		t.Fatalf("%s is not IVF/VP8: %v", p, err)
	}
	n := 0
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) || err == nil && frame == nil {
			return n
		}
		if err != nil {
			t.Fatalf("%s: frame %d: %v", p, n, err)
		}
		n++
	}
}

func countOgg(t *testing.T, p string) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s is not Ogg/Opus: %v", p, err)
	}
	n := 0
	for {
		page, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("%s: page %d: %v", p, n, err)
		}
		if len(page) > 0 && !strings.HasPrefix(string(page), "OpusTags") {
			n++
		}
	}
}

// TestCallWithBinaries: two daemons on loopback; `call start` prints
// the call ID once it rings at Bob; `call answer` takes it; audio and
// video from the test files go both ways for their 3 s and are recorded
// as valid Ogg and IVF holding the files' frames (at least 90 %, never
// more); the verification codes match; Alice shares a screen and stops;
// `call hangup` ends it on both sides. A declined call and a missed one
// (no answer within --call-ring-timeout) show those states on both
// sides.
func TestCallWithBinaries(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	alice, bob := c.alice, c.bob
	flags := []string{"--call-loopback", "--call-ring-timeout", "4s"}
	aliceD, bobD := c.startDaemon(alice, flags...), c.startDaemon(bob, flags...)
	c.addContacts()
	recA, recB := t.TempDir(), t.TempDir()

	out := e.must("peergram", "call", "start", "--home", alice, "bob", "--audio", sample("audio.ogg"), "--video", sample("video.ivf"), "--record", recA)
	id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if len(id) != 32 {
		t.Fatalf("call start printed %q", out)
	}
	if in := e.call(bob, id); in.State != "ringing" || in.Direction != "incoming" {
		t.Fatalf("Bob's side once call start returned: %+v", in)
	}
	ans := strings.Fields(e.must("peergram", "call", "answer", "--home", bob, id, "--audio", sample("audio.ogg"), "--video", sample("video.ivf"), "--record", recB))
	if len(ans) < 2 || ans[0] != id {
		t.Fatalf("call answer printed %q", ans)
	}
	a, b := e.waitCallState(alice, id, "accepted"), e.waitCallState(bob, id, "accepted")
	if a.Verification == "" || a.Verification != b.Verification {
		t.Fatalf("verification %q at Alice, %q at Bob", a.Verification, b.Verification)
	}
	sentAll := func(home string) error {
		var n uint64
		for _, tr := range e.call(home, id).Tracks {
			if tr.Direction == "sent" {
				n += tr.Frames
			}
		}
		if n < 151+45 {
			return fmt.Errorf("%d frames sent", n)
		}
		return nil
	}
	eventually(t, "Alice's files sent", 30*time.Second, func() error { return sentAll(alice) })
	eventually(t, "Bob's files sent", 30*time.Second, func() error { return sentAll(bob) })

	// A screen shared and unshared in the running call.
	if got := strings.TrimSpace(e.must("peergram", "call", "share", "--home", alice, id, sample("screen.ivf"))); got != "accepted" {
		t.Fatalf("share: %q", got)
	}
	eventually(t, "the screen at Bob", 30*time.Second, func() error {
		for _, tr := range e.call(bob, id).Tracks {
			if tr.Direction == "received" && tr.Name == "screen" && tr.Packets > 20 {
				return nil
			}
		}
		return fmt.Errorf("%+v", e.call(bob, id).Tracks)
	})
	eventually(t, "the screen sent", 30*time.Second, func() error {
		for _, tr := range e.call(alice, id).Tracks {
			if tr.Name == "screen" && tr.Frames == 30 {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	time.Sleep(500 * time.Millisecond)
	e.must("peergram", "call", "unshare", "--home", alice, id)
	if got := strings.TrimSpace(e.must("peergram", "call", "hangup", "--home", alice, id)); got != "ended" {
		t.Fatalf("hangup: %q", got)
	}
	e.waitCallState(bob, id, "ended")
	for _, rec := range []string{recA, recB} {
		if n := countIVF(t, filepath.Join(rec, "video.ivf")); n < 45*9/10 || n > 45 {
			t.Errorf("%s: %d video frames, want 41–45", rec, n)
		}
		if n := countOgg(t, filepath.Join(rec, "audio.ogg")); n < 151*9/10 || n > 151 {
			t.Errorf("%s: %d audio packets, want 136–151", rec, n)
		}
	}
	if n := countIVF(t, filepath.Join(recB, "screen.ivf")); n < 30*9/10 || n > 30 {
		t.Errorf("screen: %d frames, want 27–30", n)
	}
	for _, tr := range e.call(alice, id).Tracks {
		if tr.Packets == 0 {
			t.Errorf("Alice's %s track %s: no packets counted", tr.Direction, tr.Name)
		}
	}

	// Declined.
	id2 := strings.TrimSpace(e.must("peergram", "call", "start", "--home", alice, "bob"))
	if got := strings.TrimSpace(e.must("peergram", "call", "decline", "--home", bob, id2)); got != "declined" {
		t.Fatalf("decline: %q", got)
	}
	e.waitCallState(alice, id2, "declined")

	// Missed: nobody answers within the ring timeout.
	id3 := strings.TrimSpace(e.must("peergram", "call", "start", "--home", alice, "bob"))
	e.waitCallState(alice, id3, "missed")
	e.waitCallState(bob, id3, "missed")

	// Newest first, with the fields the issue names.
	cs := e.calls(alice)
	if len(cs) != 3 || cs[0].ID != id3 || cs[2].ID != id || cs[2].EndedAt == nil || cs[2].Peer == "" {
		t.Fatalf("calls: %+v", cs)
	}
	aliceD.kill(syscall.SIGTERM)
	bobD.kill(syscall.SIGTERM)
}
