// greet: a JSON handler written with the wasmq Go SDK. {"name": "Ada"} gives
// {"greeting": "Hello, Ada!"}; a payload without a name fails for good (a retry would
// get the same payload), and a payload that is not JSON is refused by the SDK.
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

func init() { wasmq.HandleJSON(greet) }

func greet(req request) (response, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return response{}, wasmq.Terminalf(`the payload has no "name": send {"name": "Ada"}`)
	}
	wasmq.Progress(100, "greeted "+name)
	return response{Greeting: "Hello, " + name + "!"}, nil
}
