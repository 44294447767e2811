;; A task for the dashboard page tests. Payload, by first byte:
;;   x... prints markup to both streams and returns markup (the escaping test)
;;   s... "before" (stdout), busy-waits 0.4 s on the WASI clock, "after" (stderr), "done"
;;   t... traps
;;   else "line one\nline two\n" (stdout), "warn\n" (stderr); returns the payload
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get"
    (func $clock_time_get (param i32 i64 i32) (result i32)))
  (memory (export "memory") 3)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "<script>alert(1)</script>\n")
  (data (i32.const 200) "<img src=x onerror=alert(2)>\n")
  (data (i32.const 300) "<b>bold</b><script>alert(3)</script>")
  (data (i32.const 400) "before\n")
  (data (i32.const 410) "after\n")
  (data (i32.const 420) "done")
  (data (i32.const 500) "line one\nline two\n")
  (data (i32.const 520) "warn\n")

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
    (local $first i32) (local $start i64)
    (if (local.get $len) (then (local.set $first (i32.load8_u (local.get $ptr)))))
    (if (i32.eq (local.get $first) (i32.const 120)) ;; 'x'
      (then
        (call $write (i32.const 1) (i32.const 100) (i32.const 26))
        (call $write (i32.const 2) (i32.const 200) (i32.const 29))
        (return (call $result (i32.const 300) (i32.const 36)))))
    (if (i32.eq (local.get $first) (i32.const 116)) (then unreachable)) ;; 't'
    (if (i32.eq (local.get $first) (i32.const 115)) ;; 's'
      (then
        (call $write (i32.const 1) (i32.const 400) (i32.const 7))
        (local.set $start (call $now))
        (block $done
          (loop $spin
            (br_if $done (i64.ge_u (i64.sub (call $now) (local.get $start))
                                   (i64.const 400000000)))
            (br $spin)))
        (call $write (i32.const 2) (i32.const 410) (i32.const 6))
        (return (call $result (i32.const 420) (i32.const 4)))))
    (call $write (i32.const 1) (i32.const 500) (i32.const 18))
    (call $write (i32.const 2) (i32.const 520) (i32.const 5))
    (call $result (local.get $ptr) (local.get $len)))
)
