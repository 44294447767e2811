;; __NAME__: a wasmq task handler written straight against the guest ABI (version 1).
;;
;; WebAssembly text has no SDK: this file is the whole contract. The host calls
;;   alloc(len) -> ptr           for len writable bytes, where it copies the payload;
;;   execute(ptr, len) -> i64    to run the handler on them; the answer packs the result
;;                               as result_ptr << 32 | result_len, and those bytes must
;;                               stay valid after execute returns (the host copies them);
;; and reads and writes the exported `memory`. Optional host functions (module "wasmq"):
;;   fail(kind, msg_ptr, msg_len) -> errno      the handler's error: kind 0 is terminal
;;                                              (no retry), 1 retryable; execute then
;;                                              returns 0 and the result is discarded
;;   progress(value, msg_ptr, msg_len) -> errno how far it is (0..100 by convention)
;; WASI preview 1 functions (fd_write to stdout/stderr, clocks, random) may be imported
;; too; what the handler writes is kept with the task. A trap (`unreachable`, an access
;; outside memory, ...) fails the attempt, and is retried.
;;
;; This handler answers {"task":"__NAME__","payload":<the payload>}, and refuses an
;; empty (or blank) payload with a terminal error.
;;
;;   wasmq run __NAME__/__NAME__.wat --payload @__NAME__/payload.json
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasmq" "fail" (func $fail (param i32 i32 i32) (result i32)))
  (import "wasmq" "progress" (func $progress (param f64 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; Constant data below 1024; the heap starts above it.
  (data (i32.const 16) "the payload is empty: send a JSON document (see payload.json)")
  (data (i32.const 128) "payload checked")
  (data (i32.const 160) "wrapping the payload\n")
  ;; The result's start. It holds the task name, whose length is not fixed here, so it
  ;; ends with a zero byte and its length is counted ($strlen).
  (data (i32.const 256) "{\"task\":\"__NAME__\",\"payload\":\00")
  ;; 512: a scratch iovec for fd_write (pointer, length) and its byte count at 520.

  (global $heap (mut i32) (i32.const 1024))

  ;; A bump allocator: nothing is freed, as each task runs in a fresh instance.
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        ;; Grow by whole pages; a refused grow (over the memory limit) traps.
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.div_u
                (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                (i32.const 65536))))
          (then (unreachable)))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 512) (local.get $ptr))
    (i32.store (i32.const 516) (local.get $len))
    ;; fd 1 is stdout; the errno is ignored (output over the log limit is dropped).
    (drop (call $fd_write (i32.const 1) (i32.const 512) (i32.const 1) (i32.const 520))))

  ;; The length of the payload without the line ends and spaces that close it
  ;; (a payload file usually ends with a newline).
  (func $trim_end (param $ptr i32) (param $len i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (br_if $done (i32.gt_u
          (i32.load8_u (i32.add (local.get $ptr) (i32.sub (local.get $len) (i32.const 1))))
          (i32.const 32))) ;; not a space, tab, CR or LF (or another control byte)
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (local.get $len))

  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $prefix i32) (local $size i32) (local $out i32)
    (local.set $len (call $trim_end (local.get $ptr) (local.get $len)))
    (if (i32.eqz (local.get $len))
      (then
        ;; kind 0: terminal, the same payload would fail again.
        (drop (call $fail (i32.const 0) (i32.const 16) (i32.const 61)))
        (return (i64.const 0))))
    (drop (call $progress (f64.const 50) (i32.const 128) (i32.const 15)))
    (call $print (i32.const 160) (i32.const 21))
    ;; result = prefix + payload + "}" in a fresh buffer, which outlives this call.
    (local.set $prefix (call $strlen (i32.const 256)))
    (local.set $size (i32.add (i32.add (local.get $prefix) (local.get $len)) (i32.const 1)))
    (local.set $out (call $alloc (local.get $size)))
    (memory.copy (local.get $out) (i32.const 256) (local.get $prefix))
    (memory.copy (i32.add (local.get $out) (local.get $prefix)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (local.get $out) (i32.sub (local.get $size) (i32.const 1)))
      (i32.const 125)) ;; "}"
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (local.get $size))))
)
