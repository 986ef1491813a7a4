// Command peergram is the Peergram node daemon and its client CLI.
//
// "peergram daemon" runs a node; every other command that needs the node
// (contacts, send, messages, ...) talks to the running daemon only through
// its local HTTP API (package node/localapi), whose URL and token it reads
// from the home directory: DIR/api and DIR/token.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()
	a := &app{
		stdin:    os.Stdin,
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		getenv:   os.Getenv,
		userHome: os.UserHomeDir,
		initNode: initNode,
		runNode:  runNode,
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
