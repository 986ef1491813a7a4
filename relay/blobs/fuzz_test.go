package blobs

import "testing"

// FuzzDecode: request and answer bodies from the network decode or
// fail, never panic, and decoded requests encode again.
func FuzzDecode(f *testing.F) {
	var h [32]byte
	f.Add((&putMsg{Hash: h, TokenHash: h, Cert: []byte("c"), Time: 1, Sig: []byte("s"), Data: []byte("d")}).appendBody(nil))
	f.Add((&getMsg{Hash: h, Offset: 3, Length: 9}).appendBody(nil))
	f.Add((&hasMsg{Hashes: [][32]byte{h, h}}).appendBody(nil))
	f.Add((&deleteMsg{Hashes: [][32]byte{h}, Cert: []byte("c"), Time: 5}).appendBody(nil))
	f.Add((&haveMsg{Index: []int{0, 1}}).appendBody(nil))
	f.Add((&statusMsg{Code: CodeQuota, Text: "over"}).appendBody(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodePut(b); err == nil {
			if _, err := decodePut(m.appendBody(nil)); err != nil {
				t.Fatalf("put: %v", err)
			}
		}
		if m, err := decodeGet(b); err == nil {
			if _, err := decodeGet(m.appendBody(nil)); err != nil {
				t.Fatalf("get: %v", err)
			}
		}
		if m, err := decodeHas(b); err == nil && len(m.Hashes) > MaxHashes {
			t.Fatalf("%d hashes", len(m.Hashes))
		}
		if m, err := decodeDelete(b); err == nil && len(m.Hashes) > MaxHashes {
			t.Fatalf("%d hashes", len(m.Hashes))
		}
		if m, err := decodeHave(b, 4); err == nil {
			for _, i := range m.Index {
				if i < 0 || i >= 4 {
					t.Fatalf("index %d", i)
				}
			}
		}
		_, _ = decodeData(b)
		_, _ = decodeStatus(b)
	})
}
