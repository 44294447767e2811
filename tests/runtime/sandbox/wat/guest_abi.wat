;; Exercises the wasmq host module (fail, progress) by the payload's first byte:
;;   o  progress(50, "half"), then the result "done"
;;   t  fail(terminal, "bad input")           r  fail(retryable, "try later")
;;   l  fail(terminal, "first") then fail(retryable, "second"): the last call wins
;;   k  fail with kind 7: the result is the errno byte
;;   e  fail with a message outside memory: the result is the errno byte
;;   n  progress(NaN): the result is the errno byte
;;   x  fail(terminal), then a trap           z  fail(terminal), then proc_exit(0)
;;   m  fail(terminal) with a 4000-byte message (cut by the host)
;;   c  fail(terminal) with control characters in the message
;;   p  progress in a loop, the payload's next u32 times
;;   s  progress(10), sleep, progress(90, "almost"), sleep: the payload's next u32 ms each
(module
  (import "wasmq" "fail" (func $fail (param i32 i32 i32) (result i32)))
  (import "wasmq" "progress" (func $progress (param f64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "half")
  (data (i32.const 80) "bad input")
  (data (i32.const 96) "try later")
  (data (i32.const 112) "first")
  (data (i32.const 128) "second")
  (data (i32.const 144) "done")
  (data (i32.const 160) "almost")
  (data (i32.const 176) "red\1b[31m\0aline\07two")
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (func $sleep (param $ms i32)
    (i64.store (i32.const 0) (i64.const 1))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 200) (i32.const 1) (i32.const 240))))
  (func $errno (param $code i32) (result i64)
    (i32.store8 (i32.const 300) (local.get $code))
    (i64.or (i64.shl (i64.const 300) (i64.const 32)) (i64.const 1)))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (local $op i32) (local $n i32)
    (local.set $op (i32.load8_u (local.get $p)))
    (if (i32.eq (local.get $op) (i32.const 111)) ;; o
      (then
        (drop (call $progress (f64.const 50) (i32.const 64) (i32.const 4)))
        (return (i64.or (i64.shl (i64.const 144) (i64.const 32)) (i64.const 4)))))
    (if (i32.eq (local.get $op) (i32.const 116)) ;; t
      (then (drop (call $fail (i32.const 0) (i32.const 80) (i32.const 9))) (return (i64.const 0))))
    (if (i32.eq (local.get $op) (i32.const 114)) ;; r
      (then (drop (call $fail (i32.const 1) (i32.const 96) (i32.const 9))) (return (i64.const 0))))
    (if (i32.eq (local.get $op) (i32.const 108)) ;; l
      (then
        (drop (call $fail (i32.const 0) (i32.const 112) (i32.const 5)))
        (drop (call $fail (i32.const 1) (i32.const 128) (i32.const 6)))
        (return (i64.const 0))))
    (if (i32.eq (local.get $op) (i32.const 107)) ;; k
      (then (return (call $errno (call $fail (i32.const 7) (i32.const 80) (i32.const 9))))))
    (if (i32.eq (local.get $op) (i32.const 101)) ;; e
      (then (return (call $errno (call $fail (i32.const 0) (i32.const 65530) (i32.const 100))))))
    (if (i32.eq (local.get $op) (i32.const 110)) ;; n
      (then (return (call $errno
        (call $progress (f64.div (f64.const 0) (f64.const 0)) (i32.const 0) (i32.const 0))))))
    (if (i32.eq (local.get $op) (i32.const 120)) ;; x
      (then (drop (call $fail (i32.const 0) (i32.const 80) (i32.const 9))) (unreachable)))
    (if (i32.eq (local.get $op) (i32.const 122)) ;; z
      (then (drop (call $fail (i32.const 0) (i32.const 80) (i32.const 9))) (call $exit (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 109)) ;; m
      (then
        (memory.fill (i32.const 8192) (i32.const 65) (i32.const 4000))
        (drop (call $fail (i32.const 0) (i32.const 8192) (i32.const 4000)))
        (return (i64.const 0))))
    (if (i32.eq (local.get $op) (i32.const 99)) ;; c
      (then (drop (call $fail (i32.const 0) (i32.const 176) (i32.const 17))) (return (i64.const 0))))
    (if (i32.eq (local.get $op) (i32.const 112)) ;; p
      (then
        (local.set $n (i32.load (i32.add (local.get $p) (i32.const 1))))
        (loop $again
          (drop (call $progress (f64.convert_i32_u (local.get $n)) (i32.const 64) (i32.const 4)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $again (i32.gt_s (local.get $n) (i32.const 0))))
        (return (i64.const 0))))
    (if (i32.eq (local.get $op) (i32.const 115)) ;; s
      (then
        (local.set $n (i32.load (i32.add (local.get $p) (i32.const 1))))
        (drop (call $progress (f64.const 10) (i32.const 0) (i32.const 0)))
        (call $sleep (local.get $n))
        (drop (call $progress (f64.const 90) (i32.const 160) (i32.const 6)))
        (call $sleep (local.get $n))
        (return (i64.or (i64.shl (i64.const 144) (i64.const 32)) (i64.const 4)))))
    (unreachable))
)
