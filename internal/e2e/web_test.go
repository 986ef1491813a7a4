package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestWebClientChat runs node/webclient/browsertest/chat.test.mjs: three
// users in Chromium, each logged in to their own daemon with `peergram open
// --print`, chat, send a photo, make a group; logins, reloads and other
// origins are checked too. Screenshots and figures go to the test's output
// directory (kept under $PEERGRAM_TEST_OUT when set).
func TestWebClientChat(t *testing.T) {
	nodeBin, chromium := browserTools(t)
	e := build(t)
	c := newCluster(t, e)
	carol := filepath.Join(e.root, "carol")
	e.must("peergram", "init", "--home", carol, "--name", "carol")
	homes := map[string]string{"alice": c.alice, "bob": c.bob, "carol": carol}
	for _, home := range homes {
		c.startDaemon(home)
	}
	ids := map[string]string{}
	for name, home := range homes {
		ids[name] = strings.TrimSpace(strings.SplitN(e.must("peergram", "id", "--home", home), "\n", 2)[0])
	}
	// Alice and Bob know each other; Carol knows Alice (so Alice's group
	// invitation joins her automatically), Alice knows Carol.
	for _, pair := range [][2]string{{"alice", "bob"}, {"bob", "alice"}, {"carol", "alice"}, {"alice", "carol"}, {"bob", "carol"}, {"carol", "bob"}} {
		eventually(t, pair[0]+" adds "+pair[1], 30*time.Second, func() error {
			out, err := e.run("peergram", "contacts", "add", "--home", homes[pair[0]], ids[pair[1]], "--name", pair[1])
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	out := os.Getenv("PEERGRAM_TEST_OUT")
	if out == "" {
		out = t.TempDir()
	}
	out = filepath.Join(out, "webclient")
	pic := filepath.Join(e.root, "beach.jpg")
	photo(t, pic)
	homesJSON, _ := json.Marshal(homes)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "chat.test.mjs")
	cmd.Dir = browserTestDir
	cmd.Env = append(os.Environ(),
		"PEERGRAM="+filepath.Join(e.bin, "peergram"),
		"HOMES="+string(homesJSON),
		"PHOTO="+pic,
		"OUT="+out,
		"CHROMIUM="+chromium,
		"MARKER="+marker,
	)
	res, err := cmd.CombinedOutput()
	t.Logf("browser test output:\n%s", res)
	if err != nil {
		for name, home := range homes {
			st, _ := e.run("peergram", "status", "--home", home, "--json")
			t.Logf("%s status: %s", name, st)
		}
		ms, _ := e.run("peergram", "messages", "--home", c.alice, "bob", "--json")
		t.Logf("alice's chat with bob: %s", ms)
		t.Fatalf("browser test failed: %v", err)
	}
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
