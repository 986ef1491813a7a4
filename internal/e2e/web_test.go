package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
)

// browserTestDir holds the browser tests (node/webclient/browsertest);
// .ci/run installs their npm packages and Debian's chromium.
var browserTestDir = filepath.Join("..", "..", "node", "webclient", "browsertest")

// browserTools finds node, the test's npm packages and chromium. They
// are part of the test environment that .ci/run sets up: a machine without
// them fails here with the command that installs them, rather than
// skipping the client's only end-to-end check.
func browserTools(t *testing.T) (nodeBin, chromium string) {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js) is needed for the browser tests: apt-get install nodejs npm (as .ci/run does)")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is needed for the browser tests: apt-get install chromium (as .ci/run does): %v", err)
	}
	if _, err := os.Stat(filepath.Join(browserTestDir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed: npm ci --prefix %s (as .ci/run does)", browserTestDir)
	}
	return nodeBin, chromium
}

// photo writes a JPEG with some structure (the node makes its thumbnail).
func photo(t *testing.T, path string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := range 480 {
		for x := range 640 {
			img.Set(x, y, color.RGBA{uint8(x / 3), uint8(y / 2), uint8((x + y) / 5), 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := jpeg.Encode(f, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
}

// webCluster is a relay and three daemons (alice, bob, carol), each a
// contact of the others, for the browser tests.
type webCluster struct {
	e     *env
	c     *cluster
	homes map[string]string
	procs map[string]*proc
}

func newWebCluster(t *testing.T, daemonFlags ...string) *webCluster {
	e := build(t)
	c := newCluster(t, e)
	carol := filepath.Join(e.root, "carol")
	e.must("peergram", "init", "--home", carol, "--name", "carol")
	homes := map[string]string{"alice": c.alice, "bob": c.bob, "carol": carol}
	procs := map[string]*proc{}
	for name, home := range homes {
		procs[name] = c.startDaemon(home, daemonFlags...)
	}
	ids := map[string]string{}
	for name, home := range homes {
		ids[name] = strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", home), "\n", 2)[0])
	}
	// Everyone a contact of everyone: Carol knows Alice, so Alice's group
	// invitation joins her automatically.
	for a := range homes {
		for b := range homes {
			if a == b {
				continue
			}
			eventually(t, a+" adds "+b, 30*time.Second, func() error {
				out, err := e.run("peergram", "contacts", "add", "--home", homes[a], ids[b], "--name", b)
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
	}
	return &webCluster{e: e, c: c, homes: homes, procs: procs}
}

// outDir is where a browser test writes screenshots and figures: under
// $PEERGRAM_TEST_OUT when set (to look at them), else a temp dir.
func outDir(t *testing.T) string {
	out := os.Getenv("PEERGRAM_TEST_OUT")
	if out == "" {
		out = t.TempDir()
	}
	return filepath.Join(out, "webclient")
}

// runBrowserTest runs one of browsertest's scripts with the cluster in its
// environment.
func (w *webCluster) runBrowserTest(t *testing.T, script string, env ...string) {
	t.Helper()
	nodeBin, chromium := browserTools(t)
	homesJSON, _ := json.Marshal(w.homes)
	pids := map[string]int{}
	for name, p := range w.procs {
		pids[name] = p.cmd.Process.Pid
	}
	pidsJSON, _ := json.Marshal(pids)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script)
	cmd.Dir = browserTestDir
	cmd.Env = append(append(os.Environ(),
		"PEERGRAM="+filepath.Join(w.e.bin, "peergram"),
		"HOMES="+string(homesJSON),
		"PIDS="+string(pidsJSON), // the daemons' processes (a test may pause one: SIGSTOP, SIGCONT)
		"CHROMIUM="+chromium,
		"MARKER="+marker,
	), env...)
	res, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", script, res)
	if err != nil {
		for name, home := range w.homes {
			st, _ := w.e.run("peergram", "status", "--home", home, "--json")
			cs, _ := w.e.run("peergram", "calls", "--home", home, "--json")
			t.Logf("%s status: %s\ncalls: %s", name, st, cs)
		}
		t.Fatalf("%s failed: %v", script, err)
	}
}

// TestWebClientChat runs node/webclient/browsertest/chat.test.mjs: three
// users in Chromium, each logged in to their own daemon with `peergram open
// --print`, chat, send a photo, make a group; logins, reloads and other
// origins are checked too. Screenshots and figures go to the test's output
// directory (kept under $PEERGRAM_TEST_OUT when set).
func TestWebClientChat(t *testing.T) {
	w := newWebCluster(t)
	e, c := w.e, w.c
	out := outDir(t)
	pic := filepath.Join(e.root, "beach.jpg")
	photo(t, pic)
	w.runBrowserTest(t, "chat.test.mjs", "PHOTO="+pic, "OUT="+out)
	var figures map[string]float64
	raw, err := os.ReadFile(filepath.Join(out, "figures.json"))
	if err != nil || json.Unmarshal(raw, &figures) != nil {
		t.Fatalf("figures.json: %v", err)
	}
	for _, shot := range []string{"chat-light.png", "chat-dark.png", "settings-light.png", "settings-dark.png", "chat-ar-rtl.png"} {
		if fi, err := os.Stat(filepath.Join(out, shot)); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s: %v", shot, err)
		}
	}
	t.Logf("first load: %.0f bytes, %.0f ms to the chat list", figures["first_load_bytes"], figures["first_load_ms"])
	// The relay held ciphertext only: every text and the group's title
	// carried the marker.
	c.relay.kill(syscall.SIGTERM)
	assertNoPlaintext(t, c.relayHome)
}

// TestWebClientCalls runs browsertest/calls.test.mjs: Alice and Bob call
// each other from Chromium (fake camera and microphone); Alice calls
// Carol's headless daemon and Carol calls her; RTP grows on both sides,
// both show the same verification code, a hang-up ends the call on both.
func TestWebClientCalls(t *testing.T) {
	w := newWebCluster(t, "--call-loopback")
	rec := filepath.Join(w.e.root, "carol-rec")
	if err := os.MkdirAll(rec, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	w.runBrowserTest(t, "calls.test.mjs", "OUT="+outDir(t), "AUDIO="+abs(sample("audio.ogg")), "VIDEO="+abs(sample("video.ivf")), "SCREEN="+abs(sample("screen.ivf")), "RECORD="+rec)
}

// TestWebClientGroupCall runs browsertest/groupcall.test.mjs: Carol's
// headless daemon runs a call in a group of three; Alice and Bob join it
// from Chromium through their daemons' bridges, hear each other and
// Carol, and Carol's daemon opens every frame they sent; mute, leave and
// a reload reach Carol's roster.
func TestWebClientGroupCall(t *testing.T) {
	w := newWebCluster(t, "--call-loopback")
	e := w.e
	const title = "web choir"
	gid := strings.TrimSpace(strings.SplitN(e.must("peergram", "group", "create", "--home", w.homes["carol"], title), "\n", 2)[0])
	e.must("peergram", "group", "add", "--home", w.homes["carol"], gid, "alice", "bob")
	for name, home := range w.homes {
		eventually(t, "the group at "+name, 30*time.Second, func() error {
			var g groupInfo
			out, err := e.run("peergram", "group", "info", "--home", home, gid, "--json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if err := json.Unmarshal([]byte(out), &g); err != nil {
				return err
			}
			if len(g.Members) != 3 {
				return fmt.Errorf("group %+v", g)
			}
			return nil
		})
	}
	audio := longAudio(t, 3000) // 60 s
	video := longVideo(t, 20)   // 60 s of real VP8: the browsers decode it
	rec := t.TempDir()
	eventually(t, "Carol starts the call", 30*time.Second, func() error {
		out, err := e.run("peergram", "group", "call", "start", "--home", w.homes["carol"], gid, "--audio", audio, "--video", video, "--record", rec)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// Alice's and Bob's daemons know of the call before their pages load.
	for _, name := range []string{"alice", "bob"} {
		eventually(t, name+" hears of the call", 30*time.Second, func() error {
			out, err := e.run("peergram", "group", "call", "status", "--home", w.homes[name], gid, "--json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	w.runBrowserTest(t, "groupcall.test.mjs", "OUT="+outDir(t), "GROUP="+gid, "TITLE="+title)
}

// TestWebLoginSurvivesDaemonRestart: a browser logged in to the web
// client stays logged in when the daemon restarts (same port, session kept
// in the store), and so do the preferences every browser shares; the
// cookie alone is still refused.
func TestWebLoginSurvivesDaemonRestart(t *testing.T) {
	e := build(t)
	c := newCluster(t, e)
	d := c.startDaemon(c.alice)
	link := strings.TrimSpace(e.must("peergram", "open", "--print", "--home", c.alice))
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	origin := u.Scheme + "://" + u.Host
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", link, nil)
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	frag, _ := url.ParseQuery(loc.Fragment)
	csrf := frag.Get("csrf")
	if resp.StatusCode != http.StatusSeeOther || csrf == "" || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookie := resp.Cookies()[0]
	call := func(method, path, body string, withCSRF bool) (int, string) {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, origin+path, r)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", origin)
		if withCSRF {
			req.Header.Set("X-Peergram-Csrf", csrf)
		}
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
		resp, err := noRedirect.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/v1/identity", "", true); code != http.StatusOK {
		t.Fatalf("logged in: %d %s", code, body)
	}
	if code, body := call("PUT", "/v1/web/prefs", `{"pinned":["c:x"]}`, true); code != http.StatusNoContent {
		t.Fatalf("prefs: %d %s", code, body)
	}
	d.kill(syscall.SIGTERM)
	c.startDaemon(c.alice)
	api, err := os.ReadFile(filepath.Join(c.alice, "api"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.SplitN(strings.TrimSpace(string(api)), "\n", 2)[0]; got != origin {
		t.Fatalf("the restarted daemon serves on %s, not on %s as before: the browser's login is lost", got, origin)
	}
	if code, body := call("GET", "/v1/identity", "", true); code != http.StatusOK {
		t.Fatalf("after a restart the browser is logged out: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/web/prefs", "", true); code != http.StatusOK || body != `{"pinned":["c:x"]}` {
		t.Fatalf("prefs after a restart: %d %s", code, body)
	}
	if code, _ := call("GET", "/v1/identity", "", false); code != http.StatusUnauthorized {
		t.Fatalf("ATTACK WORKS: the cookie alone after a restart: %d", code)
	}
}

// longVideo writes calls/testdata/video.ivf (3 s of VP8, a key frame
// every second) loops times over, as one IVF file.
func longVideo(t *testing.T, loops int) string {
	t.Helper()
	f, err := os.Open(sample("video.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		frames = append(frames, fr)
	}
	p := filepath.Join(t.TempDir(), "long.ivf")
	w, err := ivfwriter.New(p, ivfwriter.WithCodec(webrtc.MimeTypeVP8))
	if err != nil {
		t.Fatal(err)
	}
	step := uint32(90000) * hdr.TimebaseNumerator / hdr.TimebaseDenominator // one frame in 90 kHz ticks
	n := 0
	for range loops {
		for _, fr := range frames {
			// One RTP packet per frame, with a VP8 descriptor starting
			// partition 0: the writer takes the frame from it whole.
			if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: uint32(n) * step, Marker: true, SequenceNumber: uint16(n)}, Payload: append([]byte{0x10}, fr...)}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}
