package localapi_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/node/localapi/localapitest"
)

func TestListen(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"", true},
		{"127.0.0.1:0", true},
		{"127.0.0.2:0", true},
		{"localhost:0", true},
		{"[::1]:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"[::]:0", false},
		{"192.0.2.2:0", false},
		{"[fd00::2]:0", false},
		{"example.com:0", false},
		{"127.0.0.1.nip.io:0", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			ln, err := localapi.Listen(tt.addr)
			if !tt.ok {
				if !errors.Is(err, localapi.ErrNotLoopback) {
					t.Fatalf("Listen(%q) = %v, want ErrNotLoopback", tt.addr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Listen(%q): %v", tt.addr, err)
			}
			defer ln.Close()
			if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
				t.Fatalf("listening on %v", ip)
			}
		})
	}
	if _, err := localapi.Listen("127.0.0.1"); err == nil || errors.Is(err, localapi.ErrNotLoopback) {
		t.Errorf("Listen without port: %v, want a parse error", err)
	}
}

// fakeListener reports any address; Serve must check before accepting.
type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeListener) Addr() net.Addr { return l.addr }

func TestServeRefusesNonLoopback(t *testing.T) {
	s, err := localapi.New(localapi.Config{Backend: localapitest.New(testIdentity), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4zero, Port: 80},
		&net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 80},
		&net.TCPAddr{IP: net.IPv6unspecified, Port: 80},
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80},
	} {
		if err := s.Serve(context.Background(), fakeListener{addr: a}); !errors.Is(err, localapi.ErrNotLoopback) {
			t.Errorf("Serve on %v: %v, want ErrNotLoopback", a, err)
		}
	}
	// A real listener on all interfaces.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.Serve(context.Background(), ln); !errors.Is(err, localapi.ErrNotLoopback) {
		t.Errorf("Serve on %v: %v, want ErrNotLoopback", ln.Addr(), err)
	}
}
