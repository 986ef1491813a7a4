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

// connect reads DIR/token and finds the daemon: its Unix socket DIR/api.sock
// (only the home's owner can enter the home, so nobody else can answer
// there and receive the token), else the loopback URL in DIR/api (a daemon
// whose home path is too long for a socket). It does not dial: the first
// call does, and explain turns its failure into advice.
func (a *app) connect() (*daemon, error) {
	home, err := a.home()
	if err != nil {
		return nil, err
	}
	token := func() (string, error) {
		tok, err := os.ReadFile(filepath.Join(home, "token"))
		if err != nil {
			return "", fmt.Errorf("read the API token: %w", err)
		}
		return string(tok), nil
	}
	sock := filepath.Join(home, "api.sock")
	if fi, err := os.Stat(sock); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		tok, err := token()
		if err != nil {
			return nil, err
		}
		return &daemon{home: home, url: "unix:" + sock, Client: localapi.NewUnixClient(sock, tok)}, nil
	}
	apiFile := filepath.Join(home, "api")
	raw, err := os.ReadFile(apiFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notRunning(home, "no "+sock)
	}
	// DIR/api outlives a daemon killed with -9, and its port may then
	// belong to anyone: send the token there only while a daemon holds the
	// home's lock (and so wrote that file at its start).
	if !daemonLocked(home) {
		return nil, notRunning(home, "no daemon holds "+filepath.Join(home, "daemon.lock"))
	}
	tok, err := token()
	if err != nil {
		return nil, err
	}
	// A starting daemon writes its new token before its DIR/api: until
	// then DIR/api may still be the dead daemon's. DIR/api names the token
	// it goes with.
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[1]) != localapi.TokenTag(tok) {
		return nil, notRunning(home, apiFile+" does not belong to the current token (the daemon is starting, or died)")
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", apiFile, err)
	}
	url := strings.TrimSpace(lines[0])
	return &daemon{home: home, url: url, Client: localapi.NewClient(url, tok)}, nil
}

// daemonLocked reports whether a daemon holds the home's lock.
func daemonLocked(home string) bool {
	f, err := os.Open(filepath.Join(home, "daemon.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func notRunning(home, why string) error {
	return fmt.Errorf("daemon not running (%s; start it with 'peergram daemon --home %s')", why, home)
}

// explain turns an API call's error into a message for the user.
func (d *daemon) explain(err error) error {
	var apiErr *localapi.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
		return notRunning(d.home, "nothing answers at "+d.url)
	case errors.Is(err, localapi.ErrUnauthorized):
		return fmt.Errorf("the daemon at %s refused the token in %s (it writes a new one at every start: try again)", d.url, filepath.Join(d.home, "token"))
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
