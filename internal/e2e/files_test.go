package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type fileRow struct {
	ID, Name, Mime, From, State, Path, Kind string
	Size, Done                              int64
	Width, Height                           int
	Duration                                float64
	Thumb                                   []byte
	SentAt                                  time.Time `json:"sent_at"`
}

func (e *env) files(home, contact string) []fileRow {
	out, err := e.run("peergram", "files", "--home", home, contact, "--json")
	if err != nil {
		return nil
	}
	var fs []fileRow
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		e.t.Fatalf("files --json: %v: %s", err, out)
	}
	return fs
}

// bigFile writes n random bytes with the marker at the start and in the
// middle, and returns its path and SHA-256.
func bigFile(t *testing.T, dir string, n int) (string, [32]byte) {
	t.Helper()
	p := filepath.Join(dir, "video.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for written := 0; written < n; written += len(buf) {
		rand.Read(buf)
		if written == 0 || written == n/2/len(buf)*len(buf) {
			copy(buf, marker)
		}
		b := buf[:min(len(buf), n-written)]
		f.Write(b)
		h.Write(b)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return p, sum
}

func sumOf(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// TestFileDirectAndThroughRelay drives send-file, files and download
// with the real binaries: a 200 MB file from Alice to Bob with both
// online goes directly (no blob reaches the relay); then, with Bob
// offline, a file goes to the relay, Alice's daemon stops once it is
// uploaded, and Bob, started afterwards, downloads it from the relay
// alone. Same SHA-256 both times; the marker written through the files
// is in no file of the relay's data.
func TestFileDirectAndThroughRelay(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	alice, bob := c.alice, c.bob
	aliceD, bobD := c.startDaemon(alice), c.startDaemon(bob)
	c.addContacts()
	src := t.TempDir()

	path, sum := bigFile(t, src, 200<<20)
	out := strings.TrimSpace(e.must("peergram", "send-file", "--home", alice, "bob", path, "--caption", "the video"))
	id := strings.SplitN(out, "\n", 2)[0]
	if len(id) != 32 {
		t.Fatalf("send-file printed %q", out)
	}
	os.Remove(path) // committed: the source may go
	eventually(t, "the file at Bob", 30*time.Second, func() error {
		fs := e.files(bob, "alice")
		if len(fs) != 1 || fs[0].ID != id || fs[0].State != "available" || fs[0].Size != 200<<20 || fs[0].Name != "video.bin" {
			return fmt.Errorf("Bob's files: %+v", fs)
		}
		return nil
	})
	dest := filepath.Join(t.TempDir(), "got.bin")
	start := time.Now()
	if got := strings.TrimSpace(e.must("peergram", "download", "--home", bob, id, "--out", dest)); got != dest {
		t.Fatalf("download printed %q", got)
	}
	t.Logf("200 MB downloaded directly in %v", time.Since(start).Round(time.Millisecond))
	if sumOf(t, dest) != sum {
		t.Fatal("the downloaded file differs")
	}
	assertNoString(t, c.relayHome, marker)
	if fs := e.files(bob, "alice"); len(fs) != 1 || fs[0].State != "downloaded" || fs[0].Path != dest {
		t.Fatalf("Bob's files after the download: %+v", fs)
	}

	// Through the relay, the sender gone.
	bobD.kill(syscall.SIGTERM)
	path2, sum2 := bigFile(t, src, 24<<20+5)
	id2 := strings.TrimSpace(e.must("peergram", "send-file", "--home", alice, "bob", path2))
	eventually(t, "uploaded to the relay", 90*time.Second, func() error {
		for _, f := range e.files(alice, "bob") {
			if f.ID == id2 && f.State == "uploaded" {
				return nil
			}
		}
		return fmt.Errorf("Alice's files: %+v", e.files(alice, "bob"))
	})
	eventually(t, "the message deposited", 30*time.Second, func() error {
		for _, m := range e.messages(alice, "bob") {
			if m.ID == id2 && m.Status == "sent" {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	aliceD.kill(syscall.SIGTERM)
	bobD = c.startDaemon(bob)
	eventually(t, "the second file at Bob", 60*time.Second, func() error {
		for _, f := range e.files(bob, "alice") {
			if f.ID == id2 {
				return nil
			}
		}
		return fmt.Errorf("Bob's files: %+v", e.files(bob, "alice"))
	})
	got := strings.TrimSpace(e.must("peergram", "download", "--home", bob, id2))
	if filepath.Dir(got) != filepath.Join(bob, "downloads") || sumOf(t, got) != sum2 {
		t.Fatalf("downloaded to %q, or it differs", got)
	}
	bobD.kill(syscall.SIGTERM)
	c.relay.kill(syscall.SIGTERM)
	assertNoString(t, c.relayHome, marker)
}

// relayBlobBytes reads the relay's peergram_blob_bytes_total{op}.
func (c *cluster) relayBlobBytes(op string) float64 {
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := fmt.Sprintf(`peergram_blob_bytes_total{op=%q} `, op)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// peakRSS is a process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, p *proc) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestFileResumeAfterKill: Alice sends a 1 GB file to Bob, who is
// offline; her daemon, uploading it to the relay, is killed (-9) a part
// of the way and restarted: the upload resumes, and all it put on the
// relay is under 1.3 × the file; her daemon's peak RSS stays under 256
// MiB. Bob's daemon, downloading it from the relay, is killed (-9) a part
// of the way too, and his next `download` resumes: under 1.3 × the file
// fetched in all, and the same SHA-256.
func TestFileResumeAfterKill(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	alice, bob := c.alice, c.bob
	up := []string{"--file-upload-after", "300ms"}
	aliceD, bobD := c.startDaemon(alice, up...), c.startDaemon(bob)
	c.addContacts()
	bobD.kill(syscall.SIGTERM)
	const size = 1 << 30
	path, sum := bigFile(t, t.TempDir(), size)
	id := strings.TrimSpace(e.must("peergram", "send-file", "--home", alice, "bob", path))
	os.Remove(path)
	eventually(t, "a part uploaded", 60*time.Second, func() error {
		if got := c.relayBlobBytes("put"); got < size/5 {
			return fmt.Errorf("%.0f bytes on the relay", got)
		}
		return nil
	})
	if rss := peakRSS(t, aliceD); rss > 256<<20 {
		t.Errorf("Alice's daemon peaked at %d MiB sending a 1 GB file", rss>>20)
	} else {
		t.Logf("Alice's daemon peak RSS while sending 1 GB: %d MiB", rss>>20)
	}
	aliceD.kill(syscall.SIGKILL)
	before := c.relayBlobBytes("put")
	if before >= size {
		t.Fatalf("setup: the upload was done (%.0f bytes) before the kill", before)
	}
	aliceD = c.startDaemon(alice, up...)
	eventually(t, "uploaded after the restart", 120*time.Second, func() error {
		for _, f := range e.files(alice, "bob") {
			if f.ID == id && f.State == "uploaded" {
				return nil
			}
		}
		return fmt.Errorf("Alice's files: %+v", e.files(alice, "bob"))
	})
	if put := c.relayBlobBytes("put"); put > 1.3*size {
		t.Fatalf("%.0f bytes uploaded for a %d-byte file (killed at %.0f)", put, size, before)
	} else {
		t.Logf("killed at %.0f bytes; %.0f bytes uploaded in all (%.2f × the file)", before, put, put/size)
	}
	eventually(t, "the message deposited", 30*time.Second, func() error {
		for _, m := range e.messages(alice, "bob") {
			if m.ID == id && m.Status == "sent" {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	aliceD.kill(syscall.SIGTERM)

	bobD = c.startDaemon(bob)
	eventually(t, "the file at Bob", 60*time.Second, func() error {
		for _, f := range e.files(bob, "alice") {
			if f.ID == id {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	dest := filepath.Join(t.TempDir(), "got.bin")
	dl := e.start("peergram", "download", "--home", bob, id, "--out", dest)
	eventually(t, "a part downloaded", 60*time.Second, func() error {
		if got := c.relayBlobBytes("get"); got < size/5 {
			return fmt.Errorf("%.0f bytes fetched", got)
		}
		for _, f := range e.files(bob, "alice") {
			if f.ID == id && f.State == "downloading" && f.Done > 0 {
				return nil
			}
		}
		return fmt.Errorf("no progress recorded")
	})
	bobD.kill(syscall.SIGKILL)
	dl.kill(syscall.SIGKILL)
	killedAt := c.relayBlobBytes("get")
	bobD = c.startDaemon(bob)
	got := strings.TrimSpace(e.must("peergram", "download", "--home", bob, id, "--out", dest))
	if got != dest || sumOf(t, dest) != sum {
		t.Fatalf("downloaded to %q, or it differs", got)
	}
	if fetched := c.relayBlobBytes("get"); fetched > 1.3*size {
		t.Fatalf("%.0f bytes fetched for a %d-byte file (killed at %.0f)", fetched, size, killedAt)
	} else {
		t.Logf("killed at %.0f bytes; %.0f fetched in all (%.2f × the file)", killedAt, fetched, fetched/size)
	}
	bobD.kill(syscall.SIGTERM)
}

// TestFileVideoAndInterruptedDownload: a video sent with the real
// binaries arrives with its duration, size and a JPEG thumbnail (ffmpeg
// is on the daemon's PATH: .ci/run installs it); and a `peergram
// download` stopped with Ctrl-C (SIGINT to the CLI) leaves the file
// resumable: the next `download` finishes it from where the first
// stopped — under 1.3 × the file fetched from the relay in all, the same
// SHA-256.
func TestFileVideoAndInterruptedDownload(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg is not on the PATH (.ci/run installs it)")
	}
	e := build(t)
	c := newCluster(t, e)
	alice, bob := c.alice, c.bob
	aliceD, bobD := c.startDaemon(alice, "--file-upload-after", "300ms"), c.startDaemon(bob)
	c.addContacts()
	src := t.TempDir()

	clip := filepath.Join(src, "clip.mp4")
	if out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=3:size=640x360:rate=10", "-c:v", "mpeg4", clip).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	vid := strings.TrimSpace(e.must("peergram", "send-file", "--home", alice, "bob", clip))
	eventually(t, "the video at Bob", 30*time.Second, func() error {
		for _, f := range e.files(bob, "alice") {
			if f.ID == vid {
				if f.Kind != "video" || f.Mime != "video/mp4" || f.Width != 640 || f.Height != 360 || f.Duration < 2.9 || f.Duration > 3.1 {
					t.Fatalf("the video at Bob: %+v", f)
				}
				if cfg, err := jpeg.DecodeConfig(bytes.NewReader(f.Thumb)); err != nil || cfg.Width == 0 {
					t.Fatalf("the video's thumbnail: %v (%d bytes)", err, len(f.Thumb))
				}
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})

	// Through the relay, then Ctrl-C in the middle of the download.
	bobD.kill(syscall.SIGTERM)
	const size = 400 << 20
	path, sum := bigFile(t, src, size)
	id := strings.TrimSpace(e.must("peergram", "send-file", "--home", alice, "bob", path))
	eventually(t, "uploaded to the relay", 120*time.Second, func() error {
		for _, f := range e.files(alice, "bob") {
			if f.ID == id && f.State == "uploaded" {
				return nil
			}
		}
		return fmt.Errorf("Alice's files: %+v", e.files(alice, "bob"))
	})
	eventually(t, "the message deposited", 30*time.Second, func() error {
		for _, m := range e.messages(alice, "bob") {
			if m.ID == id && m.Status == "sent" {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	aliceD.kill(syscall.SIGTERM)
	bobD = c.startDaemon(bob)
	eventually(t, "the file at Bob", 60*time.Second, func() error {
		for _, f := range e.files(bob, "alice") {
			if f.ID == id {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	base := c.relayBlobBytes("get")
	dest := filepath.Join(t.TempDir(), "got.bin")
	dl := e.start("peergram", "download", "--home", bob, id, "--out", dest)
	eventually(t, "a part downloaded", 60*time.Second, func() error {
		for _, f := range e.files(bob, "alice") {
			if f.ID == id && f.State == "downloading" && f.Done > 0 {
				return nil
			}
		}
		return fmt.Errorf("no progress recorded")
	})
	dl.kill(syscall.SIGINT)
	var row fileRow
	eventually(t, "the download stopped", 30*time.Second, func() error {
		a := c.relayBlobBytes("get")
		time.Sleep(500 * time.Millisecond)
		if b := c.relayBlobBytes("get"); b != a {
			return fmt.Errorf("still fetching: %.0f → %.0f", a, b)
		}
		for _, f := range e.files(bob, "alice") {
			if f.ID == id {
				row = f
			}
		}
		return nil
	})
	stoppedAt := c.relayBlobBytes("get") - base
	if row.State == "downloaded" || stoppedAt >= size {
		t.Fatalf("setup: the download ended (%+v, %.0f bytes) before Ctrl-C", row, stoppedAt)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("an interrupted download is at its destination")
	}
	// What it wrote is what it recorded: the next attempt fetches none of
	// it again.
	if fi, err := os.Stat(dest + ".part"); err != nil {
		t.Fatalf("after Ctrl-C: %v", err)
	} else if fi.Size() != row.Done {
		t.Fatalf("after Ctrl-C: %d bytes recorded, the .part holds %d", row.Done, fi.Size())
	}
	got := strings.TrimSpace(e.must("peergram", "download", "--home", bob, id, "--out", dest))
	if got != dest || sumOf(t, dest) != sum {
		t.Fatalf("downloaded to %q, or it differs", got)
	}
	if fetched := c.relayBlobBytes("get") - base; fetched > 1.3*size {
		t.Fatalf("%.0f bytes fetched for a %d-byte file (stopped at %.0f, state %q done %d)", fetched, size, stoppedAt, row.State, row.Done)
	} else {
		t.Logf("Ctrl-C at %.0f bytes (state %q, %d bytes recorded); %.0f fetched in all (%.2f × the file)", stoppedAt, row.State, row.Done, fetched, fetched/size)
	}
	bobD.kill(syscall.SIGTERM)
}
