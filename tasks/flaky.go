// flaky: how a Go handler fails, with the wasmq SDK.
//
//   - a returned error asks for a retry: the task goes back to the queue with backoff,
//     until its retries are used up;
//   - an error wrapped with wasmq.Terminal fails the task at once, without retries
//     (it goes to the dead-letter queue);
//   - a panic traps, and traps (like timeouts) are retried: return a terminal error for
//     what a retry cannot fix.
//
// The error's message is kept with the task and shown wherever the task is.
// Payload {"mode": "ok" | "retry" | "fail", "name": ...}; a payload that is not JSON is
// a terminal error of the SDK's.
package main

import (
	"errors"

	"wasmq.dev/wasmq"
)

type request struct {
	Mode string `json:"mode"`
	Name string `json:"name"`
}

type response struct {
	OK   bool   `json:"ok"`
	Name string `json:"name"`
}

func main() {}

func init() { wasmq.HandleJSON(handle) }

func handle(req request) (response, error) {
	switch req.Mode {
	case "retry":
		return response{}, errors.New("upstream unavailable, asking for a retry")
	case "fail":
		return response{}, wasmq.Terminal(errors.New("invalid request, giving up"))
	}
	return response{OK: true, Name: req.Name}, nil
}
