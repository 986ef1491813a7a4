package turnserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/pion/turn/v4"

	"github.com/peergram/peergram/crypto/identity"
)

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newDevice(t *testing.T) (*identity.DeviceKey, *identity.DeviceCert) {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, "test", time.Now().Unix())
	if err != nil {
		t.Fatal(err)
	}
	return dev, cert
}

func connect(t *testing.T, a, b host.Host) {
	t.Helper()
	if err := a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// allocate makes a TURN allocation with the credentials.
func allocate(t *testing.T, s *Server, user, pass string) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: s.Addr().String(), TURNServerAddr: s.Addr().String(),
		Conn: conn, Username: user, Password: pass, Realm: "peergram",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := c.Allocate()
	if err != nil {
		return err
	}
	relayed.Close()
	return nil
}

// TestCredentials: a certified device gets credentials that allocate;
// wrong, forged and expired ones are refused by the TURN server; a
// request signed for another peer, with a bad certificate or too often is
// refused by the relay.
func TestCredentials(t *testing.T) {
	rh, ch, mallory := newHost(t), newHost(t), newHost(t)
	s, err := New(Config{Host: rh, Listen: "127.0.0.1:0", TTL: 2 * time.Second, Burst: 3, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connect(t, ch, rh)
	connect(t, mallory, rh)
	ctx := context.Background()
	dev, cert := newDevice(t)
	c, err := Fetch(ctx, ch, rh.ID(), dev, cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.URLs) != 2 || !strings.HasPrefix(c.URLs[0], "turn:127.0.0.1:") || c.Expires.IsZero() {
		t.Fatalf("credentials %+v", c)
	}
	if err := allocate(t, s, c.Username, c.Password); err != nil {
		t.Fatalf("allocating with the credentials: %v", err)
	}
	if err := allocate(t, s, c.Username, c.Password+"x"); err == nil {
		t.Fatal("ATTACK WORKS: a wrong password allocated")
	}
	forged := strings.Replace(c.Username, ":", "9:", 1) // a later expiry, same password
	if err := allocate(t, s, forged, c.Password); err == nil {
		t.Fatal("ATTACK WORKS: a username with a later expiry allocated")
	}
	if err := allocate(t, s, "", ""); err == nil {
		t.Fatal("ATTACK WORKS: no credentials allocated")
	}

	// Mallory replays the client's request (same certificate, time and
	// signature) from her own peer.
	raw, _ := cert.MarshalBinary()
	now := time.Now().UnixMilli()
	req := Request{Cert: raw, Time: now, Sig: dev.Sign(RequestLabel, Signed(rh.ID(), ch.ID(), now))}
	if got := rawRequest(t, mallory, rh.ID(), req); got.Error == "" {
		t.Fatalf("ATTACK WORKS: a request signed for another peer got %+v", got)
	}
	// A certificate not signed by its account.
	bad := *cert
	bad.Sig = append([]byte(nil), cert.Sig...)
	bad.Sig[0] ^= 1
	rawBad, _ := bad.MarshalBinary()
	req2 := Request{Cert: rawBad, Time: now, Sig: dev.Sign(RequestLabel, Signed(rh.ID(), mallory.ID(), now))}
	if got := rawRequest(t, mallory, rh.ID(), req2); got.Error == "" {
		t.Fatalf("ATTACK WORKS: a forged certificate got %+v", got)
	}
	// An old request.
	old := time.Now().Add(-time.Hour).UnixMilli()
	req3 := Request{Cert: raw, Time: old, Sig: dev.Sign(RequestLabel, Signed(rh.ID(), ch.ID(), old))}
	if got := rawRequest(t, ch, rh.ID(), req3); got.Error == "" {
		t.Fatalf("an hour-old request got %+v", got)
	}
	// The rate limit (burst 3; one used above).
	for i := 0; i < 2; i++ {
		if _, err := Fetch(ctx, ch, rh.ID(), dev, cert); err != nil {
			t.Fatalf("request %d: %v", i+2, err)
		}
	}
	if _, err := Fetch(ctx, ch, rh.ID(), dev, cert); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("a fourth request: %v", err)
	}
	// Expired (TTL 2 s).
	time.Sleep(3 * time.Second)
	if err := allocate(t, s, c.Username, c.Password); err == nil {
		t.Fatal("expired credentials allocated")
	}
}

func rawRequest(t *testing.T, h host.Host, relay peer.ID, req Request) Credentials {
	t.Helper()
	st, err := h.NewStream(context.Background(), relay, ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := json.NewEncoder(st).Encode(req); err != nil {
		t.Fatal(err)
	}
	st.CloseWrite()
	var c Credentials
	if err := json.NewDecoder(st).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}
