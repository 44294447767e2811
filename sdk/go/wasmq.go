// Package wasmq is the Go guest SDK of wasmq: a task handler is a function from the
// payload bytes to result bytes, or an error.
//
//	package main
//
//	import "wasmq.dev/wasmq"
//
//	func main() {} // required by Go; never runs in a task module
//
//	func init() { wasmq.Handle(handle) }
//
//	func handle(payload []byte) ([]byte, error) { return payload, nil }
//
// The package exports the module's alloc and execute functions and owns the memory
// the host reads and writes. Register the handler from an init function: a task
// module is a reactor, whose initialisation runs the package inits but never main.
//
// A returned error fails the attempt and is retried with backoff up to the task's
// max_retries; wrap it with [Terminal] when a retry cannot help. A panic traps the
// module; the host reports it and retries it like any crash.
package wasmq

import (
	"encoding/json"
	"errors"
	"fmt"
)

// handler is the registered handler; nil until Handle is called.
var handler func([]byte) ([]byte, error)

// sendProgress reports progress to the host. Only a wasip1 build has a host to report
// to; elsewhere (a handler's unit tests on the build machine) Progress does nothing.
var sendProgress = func(float64, string) {}

// Handle registers fn as the module's handler. Call it once, from an init function.
//
// fn gets the payload (a slice it may keep) and returns the result; a nil or empty
// result is an empty result.
func Handle(fn func(payload []byte) ([]byte, error)) {
	if fn == nil {
		panic("wasmq.Handle: the handler is nil")
	}
	if handler != nil {
		panic("wasmq.Handle: a handler is already registered; a module has exactly one")
	}
	handler = fn
}

// HandleJSON registers fn as the module's handler, with the payload decoded from JSON
// into In and the result encoded as JSON from Out.
//
// An empty payload is In's zero value. A payload that does not decode is a terminal
// error naming the JSON problem: the same payload would fail again.
func HandleJSON[In, Out any](fn func(In) (Out, error)) {
	if fn == nil {
		panic("wasmq.HandleJSON: the handler is nil")
	}
	Handle(func(payload []byte) ([]byte, error) {
		var in In
		if len(payload) > 0 {
			if err := json.Unmarshal(payload, &in); err != nil {
				return nil, Terminal(fmt.Errorf("invalid JSON payload: %w", err))
			}
		}
		out, err := fn(in)
		if err != nil {
			return nil, err
		}
		data, err := json.Marshal(out)
		if err != nil {
			return nil, Terminal(fmt.Errorf("cannot encode the result as JSON: %w", err))
		}
		return data, nil
	})
}

// ErrTerminal matches every terminal error: errors.Is(err, wasmq.ErrTerminal).
var ErrTerminal = errors.New("terminal error")

// terminalError marks the error it wraps as one a retry cannot fix.
type terminalError struct{ err error }

func (e *terminalError) Error() string        { return e.err.Error() }
func (e *terminalError) Unwrap() error        { return e.err }
func (e *terminalError) Is(target error) bool { return target == ErrTerminal }

// Terminal marks err as terminal: the task fails without retries and goes to the
// dead-letter queue. The message stays err's; errors.Is and errors.As still see err.
// Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err: err}
}

// Terminalf is Terminal(fmt.Errorf(format, args...)).
func Terminalf(format string, args ...any) error {
	return Terminal(fmt.Errorf(format, args...))
}

// IsTerminal reports whether err, or an error it wraps, was marked with Terminal.
func IsTerminal(err error) bool {
	return errors.Is(err, ErrTerminal)
}

// Progress reports how far the task has got: value is any finite number (by
// convention a percentage, 0 to 100), message an optional short note ("" for none).
// It is cheap enough to call in a loop: the host keeps the latest report. A NaN or
// infinite value is ignored.
func Progress(value float64, message string) {
	sendProgress(value, message)
}

// call runs the registered handler on payload; it is execute without the memory
// handling.
func call(payload []byte) ([]byte, error) {
	if handler == nil {
		return nil, Terminal(errors.New(
			"no handler registered: call wasmq.Handle or wasmq.HandleJSON from an init " +
				"function (main never runs in a task module)"))
	}
	return handler(payload)
}

// message is the text reported for a failed attempt.
func message(err error) string {
	if text := err.Error(); text != "" {
		return text
	}
	return fmt.Sprintf("the handler returned an error with an empty message (%T)", err)
}
