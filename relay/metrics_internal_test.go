package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestTrimBuildPath(t *testing.T) {
	tests := []struct {
		in, want string
		trimmed  bool
	}{
		{"/root/go/pkg/mod/github.com/libp2p/go-libp2p/p2p/protocol/autonatv2/autonat.go-L156", "libp2p/go-libp2p/p2p/protocol/autonatv2/autonat.go-L156", true},
		{"/home/op/go/pkg/mod/github.com/libp2p/go-libp2p@v0.51.0/p2p/host/basic/basic_host.go-L300", "libp2p/go-libp2p@v0.51.0/p2p/host/basic/basic_host.go-L300", true},
		{"/work/src/peergram/relay/relay.go-L12", "relay/relay.go-L12", true},
		{`C:\Users\op\peergram\relay\relay.go-L12`, "relay/relay.go-L12", true},
		{"libp2p/go-libp2p/p2p/host/basic/basic_host.go-L300", "libp2p/go-libp2p/p2p/host/basic/basic_host.go-L300", false}, // -trimpath build
		{"/peergram/mailbox/1.0.0", "/peergram/mailbox/1.0.0", false},
		{"subscriber-3", "subscriber-3", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := trimBuildPath(tt.in)
		if got != tt.want || ok != tt.trimmed {
			t.Errorf("trimBuildPath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.trimmed)
		}
	}
}

// Two build paths that trim to the same value keep one series: a family
// with two series of equal labels fails the whole scrape.
func TestPathFreeGatherer(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "subscriber_queue_length"}, []string{"subscriber_name"})
	reg.MustRegister(g)
	g.WithLabelValues("/a/go/pkg/mod/github.com/libp2p/go-libp2p/p2p/x.go-L1").Set(1)
	g.WithLabelValues("/b/go/pkg/mod/github.com/libp2p/go-libp2p/p2p/x.go-L1").Set(2)
	g.WithLabelValues("/a/go/pkg/mod/github.com/libp2p/go-libp2p/p2p/y.go-L9").Set(3)
	mfs, err := pathFree{reg}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 {
		t.Fatalf("%d families", len(mfs))
	}
	var got []string
	for _, m := range mfs[0].Metric {
		got = append(got, m.Label[0].GetValue())
	}
	want := []string{"libp2p/go-libp2p/p2p/x.go-L1", "libp2p/go-libp2p/p2p/y.go-L9"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("labels %q, want %q", got, want)
	}
}
