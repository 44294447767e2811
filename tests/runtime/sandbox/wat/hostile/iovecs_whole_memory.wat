;; fd_write in a loop, each call naming 63 buffers that each cover the whole 64 MiB memory
;; (almost 4 GiB a call, the most one call's count can say).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1024)
  (func (export "alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "execute") (param i32 i32) (result i64)
    (local $i i32)
    (loop $fill
      (i32.store (i32.add (i32.const 16) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0))
      (i32.store (i32.add (i32.const 20) (i32.shl (local.get $i) (i32.const 3)))
        (i32.const 67108864))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 63))))
    (loop $write
      (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 63) (i32.const 8)))
      (br $write))
    (i64.const 0)))
