// __NAME__: a wasmq task handler in Go, written with the wasmq SDK.
//
// The payload is JSON, decoded into request; the returned response is the task's
// result, encoded as JSON. Return an error to fail the attempt: a plain error is
// retried (up to the task's max_retries), wasmq.Terminal(err) or wasmq.Terminalf(...)
// fails it for good.
package main

import (
	"strings"

	"wasmq.dev/wasmq"
)

type request struct {
	Name string `json:"name"`
}

type response struct {
	Greeting string `json:"greeting"`
}

func main() {} // required by Go; a task module never runs it

// Handlers register from an init function: the module's initialisation runs it.
func init() { wasmq.HandleJSON(handle) }

func handle(req request) (response, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" {
		// The same payload would fail again: no point in retrying.
		return response{}, wasmq.Terminalf(`the payload has no "name": send {"name": "Ada"}`)
	}
	wasmq.Progress(50, "greeting "+name)
	return response{Greeting: "Hello, " + name + "! (from __NAME__)"}, nil
}
