package localapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/node/localapi"
)

// TestReview15PhotoRoutesCSRFHeld (held): the photo routes sit behind the
// same guard as every other: a browser session without its CSRF header,
// another site or another port of 127.0.0.1 cannot set, remove or read a
// group's photo; a body without Content-Length over the bound is 413
// (MaxBytesReader), not read whole.
func TestReview15PhotoRoutesCSRFHeld(t *testing.T) {
	wf := newWebFixture(t)
	ctx := context.Background()
	g, err := wf.backend.CreateGroup(ctx, "pics")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.backend.SetGroupPhoto(ctx, g.ID, []byte("\xff\xd8\xff original")); err != nil {
		t.Fatal(err)
	}
	cookie, csrf := wf.login(t)
	path := "/v1/groups/" + g.ID + "/photo"
	img := "\xff\xd8\xff\xe0 evil"
	for _, tc := range []struct {
		name, method string
		h            map[string]string
		want         int
	}{
		{"PUT, cookie only (form/no-cors)", "PUT", map[string]string{"Sec-Fetch-Site": "same-origin"}, 401},
		{"DELETE, cookie only", "DELETE", map[string]string{"Sec-Fetch-Site": "same-origin"}, 401},
		{"PUT cross-site with csrf", "PUT", map[string]string{"Sec-Fetch-Site": "cross-site", localapi.CSRFHeader: csrf}, 403},
		{"DELETE other port", "DELETE", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1", localapi.CSRFHeader: csrf}, 403},
		{"GET cross-site (img tag)", "GET", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"}, 403},
	} {
		body := ""
		if tc.method == "PUT" {
			body = img
		}
		resp, b := wf.raw(t, tc.method, path, body, tc.h, cookie)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d (%.100s)", tc.name, resp.StatusCode, tc.want, b)
		}
	}
	if got, _ := wf.backend.GroupPhoto(ctx, g.ID); string(got) != "\xff\xd8\xff original" {
		t.Fatalf("the photo changed: %q", got)
	}

	// Chunked, over the bound: refused without buffering it all.
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	big := io.MultiReader(strings.NewReader("\xff\xd8\xff"), io.LimitReader(zeros{}, localapi.MaxGroupPhotoBytes+1))
	req, err := http.NewRequestWithContext(rctx, "PUT", wf.srv.URL+path, big)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range auth() {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked oversize body: %d", resp.StatusCode)
		}
	} // (an error: the server closed while the body was still sent — refused too)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
