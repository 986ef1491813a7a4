package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

type groupCallRow struct {
	ID, State    string
	Participants []struct {
		Device, Account string
		Muted           bool
	}
	Tracks []struct {
		Name, Device, Kind, Direction, File string
		Packets, Frames, Undecryptable      uint64
	}
}

// longAudio writes an Ogg/Opus file of n 20 ms packets (nothing on the
// path decodes them).
func longAudio(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "long.ogg")
	w, err := oggwriter.New(p, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pl := append([]byte{0xfc}, fmt.Sprintf("frame %05d %s", i, marker)...)
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(i * 960), SequenceNumber: uint16(i)}, Payload: pl}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGroupCallWithBinaries: four daemons and the relay binary; Alice
// starts a call in the group with 'peergram group call start', the others
// join with 'group call join'; each receives the other three audio
// tracks, recorded as Ogg; Dave leaves and is gone from the others'
// rosters.
func TestGroupCallWithBinaries(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	homes := map[string]string{"alice": c.alice, "bob": c.bob}
	for _, name := range []string{"carol", "dave"} {
		homes[name] = filepath.Join(e.root, name)
		e.must("peergram", "init", "--home", homes[name], "--name", name)
	}
	ids := map[string]string{}
	for name, home := range homes {
		c.startDaemon(home, "--call-loopback")
		ids[name] = strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", home), "\n", 2)[0])
	}
	for a, ha := range homes {
		for b := range homes {
			if a == b {
				continue
			}
			eventually(t, a+" adds "+b, 30*time.Second, func() error {
				out, err := e.run("peergram", "contacts", "add", "--home", ha, ids[b], "--name", b)
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
	}
	gid := strings.TrimSpace(strings.SplitN(e.must("peergram", "group", "create", "--home", c.alice, "choir"), "\n", 2)[0])
	e.must("peergram", "group", "add", "--home", c.alice, gid, "bob", "carol", "dave")
	for name, home := range homes {
		eventually(t, "the group at "+name, 30*time.Second, func() error {
			var g groupInfo
			out, err := e.run("peergram", "group", "info", "--home", home, gid, "--json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if err := json.Unmarshal([]byte(out), &g); err != nil {
				return err
			}
			if len(g.Members) != 4 {
				return fmt.Errorf("group %+v", g)
			}
			return nil
		})
	}
	audio := longAudio(t, 1500) // 30 s
	recs := map[string]string{}
	for name := range homes {
		recs[name] = t.TempDir()
	}
	var callID string
	eventually(t, "Alice starts the call", 30*time.Second, func() error {
		out, err := e.run("peergram", "group", "call", "start", "--home", c.alice, "choir", "--audio", audio, "--record", recs["alice"])
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		callID = strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
		return nil
	})
	if len(callID) != 32 {
		t.Fatalf("group call start printed %q", callID)
	}
	for _, name := range []string{"bob", "carol", "dave"} {
		eventually(t, name+" joins", 30*time.Second, func() error {
			out, err := e.run("peergram", "group", "call", "join", "--home", homes[name], gid, "--audio", audio, "--record", recs[name])
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if got := strings.TrimSpace(out); got != callID {
				return fmt.Errorf("joined %q, not %q", got, callID)
			}
			return nil
		})
	}
	status := func(home string) groupCallRow {
		var g groupCallRow
		out, err := e.run("peergram", "group", "call", "status", "--home", home, gid, "--json")
		if err == nil {
			_ = json.Unmarshal([]byte(out), &g)
		}
		return g
	}
	devices := map[string]string{} // name → device, from the rosters
	for name, home := range homes {
		eventually(t, name+" hears the other three", 60*time.Second, func() error {
			g := status(home)
			if len(g.Participants) != 4 {
				return fmt.Errorf("%d participants", len(g.Participants))
			}
			hearing := 0
			for _, tr := range g.Tracks {
				if tr.Direction == "received" && tr.Kind == "audio" && tr.Frames > 100 {
					hearing++
				}
			}
			if hearing != 3 {
				return fmt.Errorf("%d tracks heard: %+v", hearing, g.Tracks)
			}
			for _, p := range g.Participants {
				if p.Account == ids[name] {
					devices[name] = p.Device
				}
			}
			return nil
		})
	}
	out := e.must("peergram", "group", "call", "leave", "--home", homes["dave"], "choir")
	if !strings.Contains(out, "left") {
		t.Errorf("leave printed %q", out)
	}
	eventually(t, "Dave gone from Alice's roster", 15*time.Second, func() error {
		g := status(c.alice)
		for _, p := range g.Participants {
			if p.Device == devices["dave"] {
				return fmt.Errorf("still there: %+v", g.Participants)
			}
		}
		return nil
	})
	// Bob's recordings: valid Ogg, one per other member, with the frames
	// that opened.
	g := status(c.bob)
	files := 0
	for _, tr := range g.Tracks {
		if tr.Direction != "received" || tr.Kind != "audio" {
			continue
		}
		if tr.Undecryptable > 5 {
			t.Errorf("%s: %d frames did not open", tr.Name, tr.Undecryptable)
		}
		if filepath.Dir(tr.File) != recs["bob"] {
			t.Errorf("recorded into %s", tr.File)
		}
		files++
	}
	if files != 3 {
		t.Errorf("Bob recorded %d audio tracks", files)
	}
	e.must("peergram", "group", "call", "leave", "--home", c.bob, "choir")
	for _, tr := range g.Tracks {
		if tr.Direction == "received" && tr.Kind == "audio" {
			if n := countOgg(t, tr.File); n < 100 {
				t.Errorf("%s: %d Ogg packets", tr.File, n)
			}
		}
	}
}
