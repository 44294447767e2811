;; The wasmq host functions in a tight loop, each naming its whole 64 MiB memory as the
;; message: the host must copy only what it keeps (1 KiB, 200 bytes) and still stop the
;; task at its deadline.
(module
  (import "wasmq" "fail" (func $fail (param i32 i32 i32) (result i32)))
  (import "wasmq" "progress" (func $progress (param f64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (local $size i32)
    (drop (memory.grow (i32.const 1023)))
    (local.set $size (i32.mul (memory.size) (i32.const 65536)))
    (memory.fill (i32.const 0) (i32.const 65) (local.get $size))
    (loop $again
      (drop (call $fail (i32.const 1) (i32.const 0) (local.get $size)))
      (drop (call $progress (f64.const 50) (i32.const 0) (local.get $size)))
      (br $again))
    (i64.const 0)))
