// The wasmq guest ABI (version 1): the exports the host calls, the imports it offers.
// The _wasip1 file name limits this file to GOOS=wasip1 (the standard toolchain and
// TinyGo's -target=wasip1 alike), so handlers can be unit-tested on the build machine.

package wasmq

import "unsafe"

// Kinds of wasmq.fail.
const (
	kindTerminal  = 0
	kindRetryable = 1
)

//go:wasmimport wasmq fail
func hostFail(kind uint32, msg unsafe.Pointer, size uint32) uint32

//go:wasmimport wasmq progress
func hostProgress(value float64, msg unsafe.Pointer, size uint32) uint32

// payload is the buffer alloc hands to the host, result the bytes execute returns.
// Package variables keep both reachable, so the garbage collector cannot free them
// while the host writes the payload or copies the result.
var (
	payload []byte
	result  []byte
)

func init() {
	sendProgress = func(value float64, text string) {
		// The status is ignored: a NaN or infinite value is simply not recorded.
		hostProgress(value, unsafe.Pointer(unsafe.StringData(text)), uint32(len(text)))
	}
}

// address is where data's bytes start in linear memory.
func address(data []byte) uint32 {
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(data))))
}

//go:wasmexport alloc
func alloc(size uint32) uint32 {
	result = nil
	payload = make([]byte, size)
	return address(payload)
}

//go:wasmexport execute
func execute(ptr, size uint32) uint64 {
	in := payload
	payload, result = nil, nil
	if size > 0 && (ptr != address(in) || int(size) > len(in)) {
		// The host places the payload where alloc said; anything else is not ours to read.
		fail(Terminalf("execute got a payload at %d (%d bytes) that alloc did not return; "+
			"the host must write the payload where alloc said", ptr, size))
		return 0
	}
	out, err := call(in[:size:size])
	if err != nil {
		fail(err)
		return 0
	}
	if len(out) == 0 {
		return 0
	}
	result = out
	return uint64(address(out))<<32 | uint64(len(out))
}

// fail records err with the host as the attempt's error.
func fail(err error) {
	kind := uint32(kindRetryable)
	if IsTerminal(err) {
		kind = kindTerminal
	}
	text := message(err)
	hostFail(kind, unsafe.Pointer(unsafe.StringData(text)), uint32(len(text)))
}
