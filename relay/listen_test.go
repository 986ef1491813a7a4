package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/relay"
)

// freePort returns a port on loopback that was free for TCP and UDP a
// moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// A second relay (another home) on a TCP port the first one listens on
// must refuse to start: with SO_REUSEPORT both would bind, and the kernel
// would split incoming connections between two relays with different
// identities and stores.
func TestSecondRelayOnPortInUse(t *testing.T) {
	for _, format := range []string{"/ip4/127.0.0.1/tcp/%d", "/ip4/127.0.0.1/udp/%d/quic-v1"} {
		t.Run(format, func(t *testing.T) {
			testSecondRelayOnPort(t, fmt.Sprintf(format, freePort(t)))
		})
	}
}

func testSecondRelayOnPort(t *testing.T, addr string) {
	listen := []string{addr}
	first, err := relay.New(relay.Config{Home: initHome(t), Listen: listen, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runRelay(t, first)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()

	second, err := relay.New(relay.Config{Home: initHome(t), Listen: listen, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	select {
	case <-second.Ready():
		cancel()
		<-done
		t.Fatalf("second relay on %s started", addr)
	case err = <-done:
	case <-time.After(testTimeout):
		t.Fatal("second relay neither started nor failed")
	}
	if !errors.Is(err, relay.ErrAddrInUse) || !strings.Contains(err.Error(), listen[0]) {
		t.Errorf("second relay: %v, want an address-in-use error naming %s", err, listen[0])
	}
}
