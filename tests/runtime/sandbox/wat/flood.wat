;; Writes 4 KiB to stdout, forever.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 0) (i32.const 8192)) (i32.store (i32.const 4) (i32.const 4096))
    (memory.fill (i32.const 8192) (i32.const 120) (i32.const 4096))
    (loop $forever
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br $forever))
    (i64.const 0)))
