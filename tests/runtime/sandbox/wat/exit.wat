;; Calls proc_exit with the payload's first byte as the code (after a line on stderr).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "giving up: database unavailable\n")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 32))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.load8_u (local.get $p)))
    (i64.const 0)))
