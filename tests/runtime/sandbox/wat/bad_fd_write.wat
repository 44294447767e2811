;; Hands fd_write iovecs that point outside memory; returns the errno as one byte.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 0) (i32.const 65000)) (i32.store (i32.const 4) (i32.const 100000))
    (i32.store8 (i32.const 512) (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store8 (i32.const 513) (call $fd_write (i32.const 1) (i32.const 65534) (i32.const 1) (i32.const 8)))
    (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 2))))
