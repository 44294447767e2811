;; poll_oneoff in a loop, each call naming 1024 clock subscriptions that are already due.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (func (export "alloc") (param i32) (result i32) (i32.const 200000))
  (func (export "execute") (param i32 i32) (result i64)
    (loop $again
      ;; zeroed memory is 1024 clock subscriptions (tag 0, realtime, timeout 0)
      (drop (call $poll (i32.const 64) (i32.const 65536) (i32.const 1024) (i32.const 8)))
      (br $again))
    (i64.const 0)))
