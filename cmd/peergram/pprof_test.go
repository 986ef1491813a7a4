package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPprofLoopbackOnly: --pprof serves the profiles on loopback and
// refuses any other address.
func TestPprofLoopbackOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, bad := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:6060", "example.com:6060", "nonsense"} {
		if _, err := servePprof(ctx, bad, nil); err == nil {
			t.Errorf("--pprof %q accepted", bad)
		}
	}
	addr, err := servePprof(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("status %d: %.200s", resp.StatusCode, body)
	}
	cancel()
}
