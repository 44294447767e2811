;; Sleeps (poll_oneoff, relative monotonic clock) for the payload's u32 milliseconds.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (i64.store (i32.const 0) (i64.const 42))  ;; userdata
    (i32.store8 (i32.const 8) (i32.const 0))  ;; clock subscription
    (i32.store (i32.const 16) (i32.const 1))  ;; monotonic
    (i64.store (i32.const 24)
      (i64.mul (i64.extend_i32_u (i32.load (local.get $p))) (i64.const 1000000)))
    (i32.store16 (i32.const 40) (i32.const 0))  ;; relative
    (i32.store (i32.const 200) (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 204)))
    ;; result: errno u32, nevents u32, event userdata u64
    (i64.store (i32.const 208) (i64.load (i32.const 100)))
    (i64.or (i64.shl (i64.const 200) (i64.const 32)) (i64.const 16))))
