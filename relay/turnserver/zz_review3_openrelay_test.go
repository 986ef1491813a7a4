package turnserver

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v4"
)

// TestReview3OpenRelay: anyone (a freshly minted account and device,
// no registration with the relay) gets credentials, and the TURN server
// then relays UDP to any address, including loopback services of the
// relay's own host (no PermissionHandler: pion's default allows every
// peer IP).
func TestReview3OpenRelay(t *testing.T) {
	rh, ch := newHost(t), newHost(t)
	// The TURN server on 127.0.0.2, standing for a relay's public
	// address; the host's own services on 127.0.0.1.
	s, err := New(Config{Host: rh, Listen: "127.0.0.2:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connect(t, ch, rh)

	// A UDP "internal service" on the relay's loopback: echoes.
	svc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := svc.ReadFrom(buf)
			if err != nil {
				return
			}
			svc.WriteTo(append([]byte("internal-secret:"), buf[:n]...), from)
		}
	}()

	dev, cert := newDevice(t) // a brand-new self-made account
	c, err := Fetch(context.Background(), ch, rh.ID(), dev, cert)
	if err != nil {
		t.Fatalf("no credentials: %v", err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: s.Addr().String(), TURNServerAddr: s.Addr().String(),
		Conn: conn, Username: c.Username, Password: c.Password, Realm: "peergram",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayed.Close()
	// Send through the relay to the loopback service (and to the TURN
	// server's own port as a second target).
	if _, err := relayed.WriteTo([]byte("ping"), svc.LocalAddr()); err != nil {
		t.Logf("write refused: %v", err)
		return
	}
	relayed.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := relayed.ReadFrom(buf)
	if err != nil {
		t.Logf("no reply through the relay (refused): %v", err)
		return
	}
	t.Fatalf("ATTACK WORKS: the TURN server relayed to the relay host's loopback service %s (relay socket %s) and returned %q from %s",
		svc.LocalAddr(), relayed.LocalAddr(), buf[:n], from)
}
