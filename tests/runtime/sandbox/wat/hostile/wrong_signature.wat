;; Imports fd_write with the right name and the wrong signature.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (drop (call $fd_write (i32.const 1)))
    (i64.const 0)))
