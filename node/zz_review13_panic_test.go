package node

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/relay/history"
)

// r13MalformedRelay answers every request with a Log frame that does
// not decode (a group field of 5 bytes), and counts the streams.
func r13MalformedRelay(t *testing.T) (string, *atomic.Int64) {
	h := rv10Host(t)
	var dialed atomic.Int64
	h.SetStreamHandler(history.ProtocolID, func(str network.Stream) {
		defer str.Close()
		dialed.Add(1)
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(str, hdr); err != nil {
			return
		}
		if _, err := io.ReadFull(str, make([]byte, binary.BigEndian.Uint32(hdr)-1)); err != nil {
			return
		}
		b := protowire.AppendTag(nil, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte{1, 2, 3, 4, 5})
		f := binary.BigEndian.AppendUint32(nil, uint32(1+len(b)))
		f = append(f, 0x08) // Log
		_, _ = str.Write(append(f, b...))
	})
	return rv10Addr(h), &dialed
}

// TestReview13FetchPanicsOnMalformedPage: the node-level reach of
// history.Client.log's nil dereference (relay/history
// TestReview13MalformedLogPagePanics): a long log's end from a contact or
// member names a relay; fetchLogOnce (run in runLogFetch's goroutine,
// no recover) asks it for the whole log with Client.Log, the relay
// answers one undecodable page, and the node panics — the whole process
// goes down. acceptLongInvitation and invite links reach the same call
// with the node's own relays. Right: an error, the next relay.
func TestReview13FetchPanicsOnMalformedPage(t *testing.T) {
	bobHome, _ := initHome(t, "bob")
	bob := startNode(t, bobHome)
	evil, _ := r13MalformedRelay(t)
	var group groupstate.GroupID
	group[0] = 7
	end := payload{Kind: "group-log", Group: hex.EncodeToString(group[:]), From: 40, Log: [][]byte{{0}}, Relays: []string{evil}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("fetchLogOnce panicked on a relay's malformed page (in runLogFetch this kills the node): %v", r)
		}
	}()
	if err := bob.fetchLogOnce(ctx, group, bob.keys.account.ID(), end); err == nil {
		t.Fatal("a malformed log was taken")
	}
}
