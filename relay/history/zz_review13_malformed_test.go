package history

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
)

// r13MalformedRelay answers every request with a Log frame whose body
// does not decode (a group field of 5 bytes).
func r13MalformedRelay(t *testing.T) peer.AddrInfo {
	h := newHost(t)
	h.SetStreamHandler(ProtocolID, func(str network.Stream) {
		defer str.Close()
		_, _ = io.Copy(io.Discard, str) // the client closes its write side
		b := protowire.AppendTag(nil, fGroup, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte{1, 2, 3, 4, 5})
		_, _ = str.Write(frame(typeLog, b))
	})
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
}

// TestReview13MalformedLogPagePanics: Client.log computes
// listsDone from m (m.Lists, m.ListsTotal) BEFORE checking decodeRegister's
// error; decodeRegister returns a nil *registerMsg on error, so with lists
// asked for (Client.Log: the whole-log fetch, acceptLongInvitation,
// invite links) any relay — a member-named one included — that answers
// one undecodable Log page makes the client dereference nil and panic,
// taking the whole node process down (the fetch goroutine has no
// recover). Right: an ErrMalformed error. (LogFrom short-circuits on
// !withLists and is not affected.)
func TestReview13MalformedLogPagePanics(t *testing.T) {
	evil := r13MalformedRelay(t)
	h := newHost(t)
	h.Peerstore().AddAddrs(evil.ID, evil.Addrs, time.Hour)
	c := NewClient(h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var group [32]byte
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Client.Log panicked on a malformed page from the relay: %v", r)
			}
		}()
		if _, _, err := c.Log(ctx, evil.ID, group); err == nil {
			t.Fatal("a malformed page was taken")
		}
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Client.LogFrom panicked: %v", r)
			}
		}()
		if _, err := c.LogFrom(ctx, evil.ID, group, 3); err == nil {
			t.Fatal("a malformed page was taken by LogFrom")
		}
	}()
}
