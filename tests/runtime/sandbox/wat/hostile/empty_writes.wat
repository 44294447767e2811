;; 200,000 empty writes, alternating between stdout and stderr: some 50 times the
;; capture's entry cap (MAX_CHUNKS), and quick enough to finish on the slowest backend.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "execute") (param i32 i32) (result i64)
    (local $i i32)
    (loop $again
      (drop (call $fd_write (i32.add (i32.const 1) (i32.and (local.get $i) (i32.const 1)))
        (i32.const 16) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 200000))))
    (i64.const 0)))
