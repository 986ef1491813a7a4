package mailbox

import (
	"bytes"
	"testing"
)

func TestDepositSubscribeAck(t *testing.T) {
	r := startRelay(t, t.TempDir(), nil, Config{})
	c, _ := newClient(t, r)
	key, addr := newDevice(t)
	ctx := testCtx(t)
	for i := range 5 {
		if err := c.Deposit(ctx, r.h.ID(), addr, envID(i), envBody(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := r.stats(addr); n != 5 || b != 500 {
		t.Fatalf("stats = %d, %d; want 5, 500", n, b)
	}
	col := subscribe(t, c, r, key, nil)
	got := col.waitFor(t, 5)
	for i, d := range got {
		if d.ID != envID(i) || !bytes.Equal(d.Envelope, envBody(i, 100)) {
			t.Fatalf("delivery %d = %v, want %v in deposit order", i, d.ID, envID(i))
		}
		if d.Deposited.IsZero() {
			t.Fatalf("delivery %d has no deposit time", i)
		}
	}
	if err := col.stop(); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.stats(addr); n != 0 {
		t.Fatalf("after acks the mailbox holds %d envelopes", n)
	}
}
