package directory

import (
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

func TestConfig(t *testing.T) {
	db, err := storage.Open(storage.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := newHost(t)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"no DB", Config{DB: nil}, false},
		{"max one-time above pqxdh's", Config{MaxOneTime: pqxdh.MaxOneTime + 1}, false},
		{"negative max one-time", Config{MaxOneTime: -1}, false},
		{"quota below the objects", Config{AccountQuota: MinAccountQuota - 1}, false},
		{"quota at the objects", Config{AccountQuota: MinAccountQuota}, true},
		{"negative expiry", Config{Expiry: -time.Second}, false},
		{"unlimited rates", Config{PublishRate: Unlimited, FetchRate: Unlimited, OneTimePerPeer: Unlimited, OneTimePerDevice: Unlimited}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Host = h
			if tt.name != "no DB" {
				cfg.DB = db
			}
			s, err := NewServer(cfg)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("NewServer: %v, want ok=%v", err, tt.ok)
			}
			if s != nil {
				if tt.name == "defaults" && (s.cfg.MaxOneTime != DefaultMaxOneTime || s.cfg.AccountQuota != DefaultAccountQuota ||
					s.cfg.Expiry != DefaultExpiry || s.cfg.PublishRate != DefaultPublishRate || s.cfg.OneTimePerDevice != DefaultOneTimePerDevice) {
					t.Errorf("defaults not applied: %+v", s.cfg)
				}
				_ = s.Close()
			}
		})
	}
}
