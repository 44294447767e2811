;; One fd_write naming a million zero-length buffers (the array fits in memory).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 160)
  (func (export "alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 0)
      (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1000000) (i32.const 8)))
    (i64.const 4)))
