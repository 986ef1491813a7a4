// Package chat holds the vocabulary of Peergram's conversations — contacts,
// messages, delivery status and the events a user interface follows — and
// the rules that order them. It does no I/O; node persists and delivers.
package chat
