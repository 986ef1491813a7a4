package history

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds every decoder of the protocol arbitrary bodies and
// whole frames: none may panic, and what decodes encodes to something
// that decodes to the same.
func FuzzDecode(f *testing.F) {
	var g [32]byte
	g[0] = 7
	f.Add(frame(typeRegister, (&registerMsg{Group: g, Entries: [][]byte{{1, 2}}, Lists: [][]byte{{3}}}).appendBody(nil)))
	f.Add(frame(typeRegister, (&registerMsg{Group: g, Entries: [][]byte{{1}}, From: 9, More: true, Time: 5, Sig: []byte("s")}).appendBody(nil)))
	f.Add(frame(typeLog, (&registerMsg{Group: g, Entries: [][]byte{{1}}, Lists: [][]byte{{2}}, From: 3, Total: 10, ListsFrom: 1, ListsTotal: 4}).appendBody(nil)))
	f.Add(frame(typeQuery, (&queryMsg{Group: g, After: 5, Limit: 10, IDsOnly: true}).appendBody(nil)))
	f.Add(frame(typeGetLog, (&queryMsg{Group: g, After: 5, ListsAt: 7}).appendBody(nil)))
	f.Add(frame(typeGet, (&getMsg{Group: g, Seqs: []uint64{1, 2, 3}}).appendBody(nil)))
	f.Add(frame(typeHeads, (&headsMsg{Heads: []Head{{Group: g, Seq: 9}, {Group: g, Unknown: true}}, WaitMS: 1000}).appendBody(nil)))
	f.Add(frame(typePage, (&Page{Items: []Item{{Seq: 1, ID: g, Stored: 5, Envelope: []byte("x")}}, First: 1, Head: 1, More: true}).appendBody(nil)))
	f.Add(frame(typeStatus, (&statusMsg{Code: CodeInvalid, Text: "no"}).appendBody(nil)))
	f.Add(frame(typeStore, (&storeMsg{Group: g, Envelope: []byte("env")}).appendBody(nil)))
	f.Add(frame(typeName, (&nameMsg{Name: "dailynews", Group: g, Link: "peergram://join/x/y", Time: 5, Sig: []byte("s")}).appendBody(nil)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 {
			if m, err := decodeRegister(b[1:]); err == nil {
				again, err := decodeRegister(m.appendBody(nil))
				if err != nil || again.Group != m.Group || len(again.Entries) != len(m.Entries) || len(again.Lists) != len(m.Lists) ||
					again.From != m.From || again.More != m.More || again.Total != m.Total || again.ListsFrom != m.ListsFrom || again.ListsTotal != m.ListsTotal {
					t.Fatalf("a register or log page does not survive encoding: %v", err)
				}
			}
			_, _ = decodeQuery(b[1:])
			_, _ = decodeGet(b[1:])
			_, _ = decodeHeads(b[1:])
			_, _ = decodeStatus(b[1:])
			_, _ = decodeStore(b[1:])
			_, _ = decodeName(b[1:])
			_, _ = linkKey(string(b[1:]), g)
			if p, err := decodePage(b[1:]); err == nil {
				again, err := decodePage(p.appendBody(nil))
				if err != nil || len(again.Items) != len(p.Items) || again.Head != p.Head || again.First != p.First || again.More != p.More {
					t.Fatalf("a page does not survive encoding: %v", err)
				}
			}
		}
		t2, body, err := readFrame(bytes.NewReader(b), typeRegister, typeQuery, typeGet, typeHeads, typePage, typeStatus, typeGetLog, typeLog, typeStore, typeName, typeLookup, typeNameRec)
		if err == nil {
			if bound, _ := maxBody(t2); len(body) > bound {
				t.Fatalf("a body of %d bytes over its bound %d", len(body), bound)
			}
		}
	})
}
