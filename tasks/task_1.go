// task_1: the reference task. Reads a JSON payload {"name": ...}, prints a greeting
// line to stdout and returns {"message": "Hello, <name>!"}.
//
// Built as a WASI reactor (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, or
// TinyGo); the host calls alloc to place the payload, then execute.
package main

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// live keeps every buffer handed to the host reachable, so the garbage collector
// never frees memory the host is about to read or write.
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
	Name string `json:"name"`
}

type response struct {
	Message string `json:"message"`
}

//go:wasmexport execute
func execute(ptr, size uint32) uint64 {
	payload := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size)
	var req request
	if err := json.Unmarshal(payload, &req); err != nil || req.Name == "" {
		req.Name = "World"
	}
	delete(live, uintptr(ptr))
	fmt.Printf("Hello, %s! (from task_1 in Go)\n", req.Name)
	out, _ := json.Marshal(response{Message: fmt.Sprintf("Hello, %s!", req.Name)})
	return uint64(keep(out))<<32 | uint64(len(out))
}

func main() {}
