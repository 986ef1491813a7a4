package sfu_test

import (
	"crypto/rand"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/relay/sfu"
)

// r4Server runs an SFU on cfg.Host with an in-memory member list.
func r4Server(t *testing.T, cfg sfu.Config) (*sfu.Server, *members, func(group [32]byte) [32]byte) {
	t.Helper()
	ms := &members{dev: map[identity.DeviceID]identity.AccountID{}}
	if cfg.Members == nil {
		cfg.Members = ms
	}
	if cfg.Settings == nil {
		cfg.Settings = loopback
	}
	srv, err := sfu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, ms, func(g [32]byte) [32]byte { return g }
}

func r4Group() [32]byte {
	var g [32]byte
	rand.Read(g[:])
	return g
}
