package main

// W1: the web client opening a long chat. Bob's daemon holds a chat with
// Alice; a fresh Chromium logs in to Bob's web client and opens the chat
// until its newest message is on screen. The anchor is the same with a
// chat of 50 messages, measured first in the same run on the same daemons;
// the target says a chat of 10,000 opens about as fast (the client loads and
// draws the newest page only).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/peergram/peergram/node/localapi"
)

const (
	w1Small = 50
	w1Large = 10_000 // the default of -w1
)

// browserTestDir finds node/webclient/browsertest from the working
// directory up (the bench runs from the repository).
func browserTestDir() (string, error) {
	if d := os.Getenv("PEERGRAM_BROWSERTEST"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "node", "webclient", "browsertest")
		if _, err := os.Stat(filepath.Join(p, "node_modules", "playwright-core")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("W1 needs node/webclient/browsertest with its npm packages (npm ci --prefix node/webclient/browsertest) and Debian's chromium; run from the repository")
		}
		dir = parent
	}
}

type renderResult struct {
	LoadMS   float64 `json:"load_ms"`
	OpenMS   float64 `json:"open_ms"`
	Rendered int     `json:"rendered"`
	Bytes    int     `json:"bytes"`
}

// openChat runs render.bench.mjs once against d's web client.
func openChat(ctx context.Context, dir string, d *daemon, chatName, newest string) (renderResult, error) {
	link, err := d.api.WebLogin(ctx)
	if err != nil {
		return renderResult{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "node", "render.bench.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "URL="+link.URL, "CHAT="+chatName, "NEWEST="+newest)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return renderResult{}, fmt.Errorf("render.bench.mjs: %w: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r renderResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return renderResult{}, fmt.Errorf("render.bench.mjs printed %q: %w", out, err)
	}
	return r, nil
}

// sendAndWait posts n texts from Alice to Bob and a last one, newest, and
// waits until Bob has received all of them.
func (r *daemonRig) sendAndWait(ctx context.Context, n int, newest string) error {
	st, err := r.bob.status(ctx)
	if err != nil {
		return err
	}
	want := st.Received + int64(n) + 1
	if err := r.alice.post(ctx, "bob", n); err != nil {
		return err
	}
	if _, err := r.alice.api.Send(ctx, "bob", newest); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return r.bob.waitStatus(wctx, "Bob has every message", func(s localapi.Status) bool { return s.Received >= want })
}

func runW1(ctx context.Context, cfg config) (string, error) {
	dir, err := browserTestDir()
	if err != nil {
		return "", err
	}
	large := cfg.w1
	if large == 0 {
		large = w1Large
	}
	if large <= w1Small {
		return "", fmt.Errorf("W1: -w1 %d is not more than the anchor's %d messages", large, w1Small)
	}
	r, err := newDaemonRig(ctx)
	if err != nil {
		return "", err
	}
	defer r.close()
	measure := func(newest string) ([]renderResult, error) {
		var rs []renderResult
		for range cfg.rounds {
			res, err := openChat(ctx, dir, r.bob, "alice", newest)
			if err != nil {
				return nil, err
			}
			rs = append(rs, res)
		}
		return rs, nil
	}
	// The chat holds Bob's "hello" and then these.
	if err := r.sendAndWait(ctx, w1Small-2, "newest-small"); err != nil {
		return "", err
	}
	small, err := measure("newest-small")
	if err != nil {
		return "", err
	}
	if err := r.sendAndWait(ctx, large-w1Small-1, "newest-large"); err != nil {
		return "", err
	}
	big, err := measure("newest-large")
	if err != nil {
		return "", err
	}
	pick := func(rs []renderResult, f func(renderResult) float64) float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	open := func(r renderResult) float64 { return r.OpenMS }
	load := func(r renderResult) float64 { return r.LoadMS }
	bytes := func(r renderResult) float64 { return float64(r.Bytes) }
	ours, anchor := pick(big, open), pick(small, open)
	return fmt.Sprintf("W1 ratio=%.2f target=<=2 ours=%.0fms anchor=%.0fms msgs=%d/%d load=%.0fms/%.0fms bytes=%.0f/%.0f rendered=%d",
		ours/anchor, ours, anchor, large, w1Small, pick(big, load), pick(small, load), pick(big, bytes), pick(small, bytes), big[0].Rendered), nil
}
