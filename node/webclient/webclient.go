// Package webclient is the browser client the daemon serves on its local API
// address: plain ES modules, HTML and CSS embedded in the binary, so `go
// build` needs no npm step and the client always matches its daemon.
//
// Why no framework and no bundle: the client is small, loads from
// loopback, and every file in app/ is what the browser runs, so a reviewer
// reads the same code the user executes. The page talks only to the local
// API (package localapi), which holds the login, session and CSRF checks.
package webclient

import (
	"embed"
	"io/fs"
)

//go:embed app
var app embed.FS

// Files returns the client's files, index.html at the root.
func Files() fs.FS {
	sub, err := fs.Sub(app, "app")
	if err != nil { // only a wrong literal above gets here
		panic(err)
	}
	return sub
}
