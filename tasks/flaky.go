// flaky: how a Go handler fails. The sandbox's retry convention:
//
//   - os.Exit(75) (EX_TEMPFAIL) asks for a retry: the task goes back to the queue with
//     backoff, until its retries are used up;
//   - any other non-zero exit code fails the task terminally, without retries;
//   - a panic traps, and traps (like timeouts) are retried: use os.Exit(1) for errors
//     that a retry cannot fix.
//
// Write the reason to stderr first: it is kept with the task and shown in the error.
// Payload {"mode": "ok" | "retry" | "fail", "name": ...}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"unsafe"
)

// Exit codes of the convention.
const (
	exitRetry    = 75 // EX_TEMPFAIL: try again later
	exitTerminal = 1  // do not retry
)

var live = map[uintptr][]byte{}

func keep(buf []byte) uint32 {
	if len(buf) == 0 {
		buf = make([]byte, 1)
	}
	ptr := uintptr(unsafe.Pointer(&buf[0]))
	live[ptr] = buf
	return uint32(ptr)
}

//go:wasmexport alloc
func alloc(size uint32) uint32 {
	return keep(make([]byte, size))
}

type request struct {
	Mode string `json:"mode"`
	Name string `json:"name"`
}

//go:wasmexport execute
func execute(ptr, size uint32) uint64 {
	payload := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size)
	var req request
	if err := json.Unmarshal(payload, &req); err != nil {
		fmt.Fprintf(os.Stderr, "bad payload: %v\n", err)
		os.Exit(exitTerminal) // the same payload will never parse: do not retry
	}
	delete(live, uintptr(ptr))
	switch req.Mode {
	case "retry":
		fmt.Fprintln(os.Stderr, "upstream unavailable, asking for a retry")
		os.Exit(exitRetry)
	case "fail":
		fmt.Fprintln(os.Stderr, "invalid request, giving up")
		os.Exit(exitTerminal)
	}
	out := []byte(fmt.Sprintf(`{"ok":true,"name":%q}`, req.Name))
	return uint64(keep(out))<<32 | uint64(len(out))
}

func main() {}
