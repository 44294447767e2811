;; Prints to stdout and stderr, for the task log tests. Payload, by first byte:
;;   b... "out 1" (stdout), "err 1" (stderr), "out 2" (stdout); returns "ok"
;;   s... "before" (stdout), busy-waits one second on the WASI clock, "after" (stderr)
;;   f... ten lines of 40 bytes to stdout (to overflow a small log limit)
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 100) "out 1\n")
  (data (i32.const 110) "err 1\n")
  (data (i32.const 120) "out 2\n")
  (data (i32.const 130) "before\n")
  (data (i32.const 140) "after\n")
  (data (i32.const 150) "ok")
  (data (i32.const 160) "done")
  (data (i32.const 200) "flooding the log with forty bytes . . .\n")

  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $now (result i64)
    (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 16)))
    (i64.load (i32.const 16)))

  (func $result (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $first i32) (local $start i64) (local $i i32)
    (if (local.get $len) (then (local.set $first (i32.load8_u (local.get $ptr)))))
    (if (i32.eq (local.get $first) (i32.const 115)) ;; 's'
      (then
        (call $write (i32.const 1) (i32.const 130) (i32.const 7))
        (local.set $start (call $now))
        (block $done
          (loop $spin
            (br_if $done (i64.ge_u (i64.sub (call $now) (local.get $start))
                                   (i64.const 1000000000)))
            (br $spin)))
        (call $write (i32.const 2) (i32.const 140) (i32.const 6))
        (return (call $result (i32.const 160) (i32.const 4)))))
    (if (i32.eq (local.get $first) (i32.const 102)) ;; 'f'
      (then
        (block $end
          (loop $lines
            (br_if $end (i32.ge_u (local.get $i) (i32.const 10)))
            (call $write (i32.const 1) (i32.const 200) (i32.const 40))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $lines)))
        (return (call $result (i32.const 150) (i32.const 2)))))
    (call $write (i32.const 1) (i32.const 100) (i32.const 6))
    (call $write (i32.const 2) (i32.const 110) (i32.const 6))
    (call $write (i32.const 1) (i32.const 120) (i32.const 6))
    (call $result (i32.const 150) (i32.const 2)))
)
