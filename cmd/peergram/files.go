package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/peergram/peergram/node/chat"
)

func (a *app) newSendFileCmd() *cobra.Command {
	var (
		asJSON, asFile bool
		caption        string
	)
	cmd := &cobra.Command{
		Use:   "send-file CHAT PATH",
		Short: "Send a file (up to 2 GB) to a contact",
		Long: `Send a file of up to 2 GB to a contact (alias or account ID). The daemon
encrypts it chunk by chunk into its own store — a progress bar shows it on a
terminal — and commits the message to its outbox; then the command prints the
message ID and exits, and the source may change or go. The recipient fetches
the file from this daemon while it is online, or from the relay the daemon
uploads it to when the recipient does not fetch it soon (see 'peergram files').`,
		Args:              args(2, "a contact and a file"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			contact := argv[0]
			path, err := filepath.Abs(argv[1])
			if err != nil {
				return err
			}
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			var raw [16]byte
			if _, err := rand.Read(raw[:]); err != nil {
				return err
			}
			id := hex.EncodeToString(raw[:])
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			stop := a.progress(ctx, d, id, fi.Size(), "encrypting")
			m, err := d.SendFile(ctx, chat.FileSend{Chat: contact, Path: path, Caption: caption, AsFile: asFile, ID: id})
			stop()
			if err != nil {
				return d.contactError(err, contact)
			}
			if asJSON {
				return printJSON(a.stdout, m)
			}
			_, err = fmt.Fprintln(a.stdout, m.ID)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stored message as JSON")
	cmd.Flags().BoolVar(&asFile, "as-file", false, "send the original bytes, not a compressed photo")
	cmd.Flags().StringVar(&caption, "caption", "", "a text sent with the file")
	return cmd
}

func (a *app) newFilesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "files CHAT",
		Short: "List the files of a chat, oldest first",
		Long: `List the files sent and received in the chat with a contact, oldest first:
message ID, name, size, type and state (uploading, uploaded, available,
downloading, downloaded, failed).`,
		Args:              args(1, "a contact"),
		ValidArgsFunction: a.completeContact,
		RunE: func(cmd *cobra.Command, argv []string) error {
			contact := argv[0]
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			fs, err := call(cmd.Context(), func(ctx context.Context) ([]chat.File, error) { return d.Files(ctx, contact) })
			if err != nil {
				return d.contactError(err, contact)
			}
			if asJSON {
				if fs == nil {
					fs = []chat.File{}
				}
				return printJSON(a.stdout, fs)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			for _, f := range fs {
				from := "them"
				if f.Outgoing {
					from = "you"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", f.ID, from, clean(f.Name), f.Size, clean(f.Mime), f.State)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array of files)")
	return cmd
}

func (a *app) newDownloadCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "download MESSAGE_ID",
		Short: "Download a received file and print where it was written",
		Long: `Download the file of a received message: from the sender's daemon while it
answers, else from the relay that holds it. Every chunk is checked before it
is written, and the whole file at the end. Blocks until the file is complete
(a progress bar shows it on a terminal), then prints its path. Interrupted —
Ctrl-C, or the daemon killed — it resumes where it stopped when run again.
Without --out the file goes to the home's downloads directory.`,
		Args: args(1, "a message ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			id := argv[0]
			if out != "" {
				abs, err := filepath.Abs(out)
				if err != nil {
					return err
				}
				out = abs
			}
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			stop := a.progress(ctx, d, id, -1, "downloading")
			f, err := d.Download(ctx, id, out)
			stop()
			if err != nil {
				return d.explain(err)
			}
			_, err = fmt.Fprintln(a.stdout, f.Path)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "where to write the file (default: the home's downloads directory)")
	return cmd
}

// progress shows a progress bar on a terminal for the file events of
// message id until stop is called; size −1 takes the size from the
// events. Off a terminal it does nothing.
func (a *app) progress(ctx context.Context, d *daemon, id string, size int64, what string) (stop func()) {
	f, ok := a.stderr.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	evs, err := d.Events(ctx)
	if err != nil {
		cancel()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		newBar := func(n int64) *progressbar.ProgressBar {
			// On stderr: stdout carries the answer.
			return progressbar.NewOptions64(n, progressbar.OptionSetWriter(f), progressbar.OptionShowBytes(true),
				progressbar.OptionSetDescription(what), progressbar.OptionThrottle(100*time.Millisecond))
		}
		var bar *progressbar.ProgressBar
		if size >= 0 {
			bar = newBar(size)
		}
		for ev := range evs {
			if ev.Type != chat.EventFile || ev.File == nil || ev.File.ID != id {
				continue
			}
			if bar == nil {
				bar = newBar(ev.File.Size)
			}
			_ = bar.Set64(ev.File.Done)
		}
		if bar != nil {
			_ = bar.Finish()
			_, _ = io.WriteString(f, "\n")
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func (a *app) newDeleteFileCmd() *cobra.Command {
	var everyone bool
	cmd := &cobra.Command{
		Use:   "delete-file MESSAGE_ID",
		Short: "Delete a file of a chat, for you or (its sender) for everyone",
		Long: `Delete the file of a message from your chat (its record, its chunks in the
daemon's store). With --everyone — the sender only — the recipients' daemons drop
it too, and the relays drop its blobs.`,
		Args: args(1, "a message ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.connect()
			if err != nil {
				return err
			}
			defer d.Close()
			_, err = call(cmd.Context(), func(ctx context.Context) (struct{}, error) {
				return struct{}{}, d.DeleteFile(ctx, argv[0], everyone)
			})
			return d.explain(err)
		},
	}
	cmd.Flags().BoolVar(&everyone, "everyone", false, "delete it for every recipient too (the sender only)")
	return cmd
}
