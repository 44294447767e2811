module wasmq.dev/wasmq

go 1.24
