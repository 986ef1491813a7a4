package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/localapi"
)

// requestTimeout bounds one API call of a command.
const requestTimeout = 30 * time.Second

// daemon is a connection to the running daemon of a home.
type daemon struct {
	home string
	url  string
	*localapi.Client
}

// connect reads DIR/api and DIR/token. It does not dial: the first call
// does, and explain turns its failure into advice.
func (a *app) connect() (*daemon, error) {
	home, err := a.home()
	if err != nil {
		return nil, err
	}
	apiFile := filepath.Join(home, "api")
	raw, err := os.ReadFile(apiFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notRunning(home, "no "+apiFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", apiFile, err)
	}
	url := strings.TrimSpace(string(raw))
	tok, err := os.ReadFile(filepath.Join(home, "token"))
	if err != nil {
		return nil, fmt.Errorf("read the API token: %w", err)
	}
	return &daemon{home: home, url: url, Client: localapi.NewClient(url, string(tok))}, nil
}

func notRunning(home, why string) error {
	return fmt.Errorf("daemon not running (%s; start it with 'peergram daemon --home %s')", why, home)
}

// explain turns an API call's error into a message for the user.
func (d *daemon) explain(err error) error {
	var apiErr *localapi.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return notRunning(d.home, "nothing answers at "+d.url+" from "+filepath.Join(d.home, "api"))
	case errors.Is(err, localapi.ErrUnauthorized):
		return fmt.Errorf("the daemon at %s refused the token in %s", d.url, filepath.Join(d.home, "token"))
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the daemon at %s did not answer within %s", d.url, requestTimeout)
	case errors.As(err, &apiErr):
		return errors.New(clean(apiErr.Message))
	}
	return err
}

// contactError explains an error of a call about one contact.
func (d *daemon) contactError(err error, contact string) error {
	if errors.Is(err, chat.ErrUnknownContact) {
		return fmt.Errorf("unknown contact %q (see 'peergram contacts list', or add it with 'peergram contacts add')", clean(contact))
	}
	return d.explain(err)
}

// call runs f with the request timeout.
func call[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return f(ctx)
}
