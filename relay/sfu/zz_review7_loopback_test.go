package sfu_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/peergram/peergram/calls"
)

// TestReview7BridgeNotLoopbackOnly: the bridge is meant to be a loopback
// connection between the daemon and its browser, but openBridge
// (calls/bridge.go:120-124) builds it from the engine's own setting
// engine — the one the SFU connection uses — so in a daemon run without
// --call-loopback it gathers, offers and listens on every interface (LAN
// addresses, and TURN/srflx if the settings add them). Here the client's
// engine has Pion's default interface settings, as in production.
func TestReview7BridgeNotLoopbackOnly(t *testing.T) {
	env := r7Setup(t, 30*time.Second, func(c *calls.Config) {
		c.Settings = func(se *webrtc.SettingEngine) {
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		}
	})
	if err := env.joinClient(); err != nil {
		t.Fatal(err)
	}
	o, err := env.c.e.BridgeOffer(env.call)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(o.SDP, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			continue
		}
		f := strings.Fields(l)
		if len(f) > 4 && !strings.HasPrefix(f[4], "127.") && f[4] != "::1" {
			t.Errorf("the bridge offers a non-loopback candidate: %s", l)
		}
	}
}
