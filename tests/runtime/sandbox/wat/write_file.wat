;; With a granted writable directory (preopen fd 3): creates "out.txt", writes the payload
;; to it and to stdout; returns the errnos of path_open and both fd_writes as three bytes.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "out.txt")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    ;; O_CREAT | O_TRUNC, rights: fd_write
    (i32.store8 (i32.const 0)
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 32) (i32.const 7)
        (i32.const 9) (i64.const 64) (i64.const 64) (i32.const 0) (i32.const 48)))
    (i32.store (i32.const 8) (local.get $p)) (i32.store (i32.const 12) (local.get $l))
    (i32.store8 (i32.const 1)
      (call $fd_write (i32.load (i32.const 48)) (i32.const 8) (i32.const 1) (i32.const 56)))
    (i32.store8 (i32.const 2)
      (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 56)))
    (i64.const 3)))
