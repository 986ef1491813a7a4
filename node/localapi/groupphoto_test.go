package localapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/peergram/peergram/node/localapi"
)

// TestGroupPhotoRoutes: PUT takes the image as the body, GET answers it
// as an unsniffed JPEG in a sandbox, DELETE removes it (then 404); an
// empty or oversized body and a missing token are refused; the client
// goes through the same routes.
func TestGroupPhotoRoutes(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	g, err := f.backend.CreateGroup(ctx, "pics")
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/groups/" + g.ID + "/photo"
	img := "\xff\xd8\xff\xe0 a jpeg"
	tests := []struct {
		name, method, body string
		header             map[string]string
		want               int
		check              func(t *testing.T, resp *http.Response, body string)
	}{
		{"no photo yet", "GET", "", auth(), 404, nil},
		{"no token", "PUT", img, nil, 401, nil},
		{"empty body", "PUT", "", auth(), 400, nil},
		{"oversized", "PUT", strings.Repeat("x", localapi.MaxGroupPhotoBytes+1), auth(), 413, nil},
		{"set", "PUT", img, auth(), 200, func(t *testing.T, _ *http.Response, body string) {
			if !strings.Contains(body, `"photo":"`) {
				t.Errorf("no photo in the group: %s", body)
			}
		}},
		{"get", "GET", "", auth(), 200, func(t *testing.T, resp *http.Response, body string) {
			h := resp.Header
			if body != img || h.Get("Content-Type") != "image/jpeg" || h.Get("X-Content-Type-Options") != "nosniff" ||
				!strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") {
				t.Errorf("answer %q with %v", body, h)
			}
		}},
		{"remove", "DELETE", "", auth(), 200, func(t *testing.T, _ *http.Response, body string) {
			if strings.Contains(body, `"photo"`) {
				t.Errorf("a photo after removing it: %s", body)
			}
		}},
		{"gone", "GET", "", auth(), 404, nil},
		{"remove none", "DELETE", "", auth(), 400, nil},
	}
	for _, tc := range tests {
		resp, body := f.do(t, tc.method, path, tc.body, tc.header)
		if resp.StatusCode != tc.want {
			t.Fatalf("%s: status %d, want %d; body %.200s", tc.name, resp.StatusCode, tc.want, body)
		}
		if tc.check != nil {
			tc.check(t, resp, body)
		}
	}
	if _, err := f.client.SetGroupPhoto(ctx, g.ID, []byte(img)); err != nil {
		t.Fatal(err)
	}
	got, err := f.client.GroupPhoto(ctx, "pics")
	if err != nil || !bytes.Equal(got, []byte(img)) {
		t.Fatalf("client: %q, %v", got, err)
	}
	if g, err := f.client.SetGroupPhoto(ctx, g.ID, nil); err != nil || g.Photo != "" {
		t.Fatalf("client remove: %+v, %v", g, err)
	}
	var ae *localapi.Error
	if _, err := f.client.GroupPhoto(ctx, g.ID); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("client, no photo: %v", err)
	}
}
