;; A normal task: writes "out:" + payload to stdout and "err\n" to stderr, returns the payload.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "out:err\n")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    ;; iovecs at 0: ["out:", payload]
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 4))
    (i32.store (i32.const 8) (local.get $p)) (i32.store (i32.const 12) (local.get $l))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 2) (i32.const 100)))
    (i32.store (i32.const 0) (i32.const 20)) (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 100)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $l)))))
