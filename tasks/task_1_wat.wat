;; task_1_wat: the reference task in WebAssembly text. Reads {"name": ...}, prints a
;; greeting line to stdout, returns {"message":"Hello, <name>!"}. The name is copied as
;; it appears in the payload (escapes included), so the result is valid JSON.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; 0..63: scratch (iovec at 32, bytes written at 40); 64..255: constant strings;
  ;; 1024..: bump heap (each task runs in a fresh instance, so nothing is ever freed).
  (data (i32.const 64) "\"name\"")
  (data (i32.const 80) "Hello, ")
  (data (i32.const 96) "! (from task_1 in WAT)\n")
  (data (i32.const 128) "{\"message\":\"Hello, ")
  (data (i32.const 160) "!\"}")
  (data (i32.const 176) "World")
  (global $heap (mut i32) (i32.const 1024))
  (global $name_ptr (mut i32) (i32.const 176))
  (global $name_len (mut i32) (i32.const 5))

  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (i32.const -1)
              (memory.grow (i32.div_u
                (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                (i32.const 65536))))
          (then (unreachable)))))
    (global.set $heap (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  ;; Copy len bytes from src to dst; return the end of the copy.
  (func $append (param $dst i32) (param $src i32) (param $len i32) (result i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $len))
    (i32.add (local.get $dst) (local.get $len)))

  ;; Point $name_ptr/$name_len at the string value of "name" (default: World).
  (func $find_name (param $ptr i32) (param $len i32)
    (local $i i32) (local $limit i32) (local $j i32) (local $b i32)
    (local.set $limit (i32.add (local.get $ptr) (local.get $len)))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 6)) (local.get $limit)))
        (if (i32.and
              (i32.eq (i32.load (local.get $i)) (i32.load (i32.const 64)))
              (i32.eq (i32.load16_u (i32.add (local.get $i) (i32.const 4)))
                      (i32.load16_u (i32.const 68))))
          (then
            (local.set $j (i32.add (local.get $i) (i32.const 6)))
            ;; skip blanks and the colon
            (block $value
              (loop $skip
                (br_if $done (i32.ge_u (local.get $j) (local.get $limit)))
                (local.set $b (i32.load8_u (local.get $j)))
                (br_if $value (i32.eq (local.get $b) (i32.const 34)))
                (br_if $done (i32.eqz (i32.or (i32.or
                  (i32.eq (local.get $b) (i32.const 32)) (i32.eq (local.get $b) (i32.const 58)))
                  (i32.or (i32.eq (local.get $b) (i32.const 9)) (i32.eq (local.get $b) (i32.const 10))))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $skip)))
            (local.set $i (i32.add (local.get $j) (i32.const 1)))
            (local.set $j (local.get $i))
            (loop $chars
              (br_if $done (i32.ge_u (local.get $j) (local.get $limit)))
              (local.set $b (i32.load8_u (local.get $j)))
              (if (i32.eq (local.get $b) (i32.const 34))
                (then
                  (if (i32.gt_u (local.get $j) (local.get $i))
                    (then
                      (global.set $name_ptr (local.get $i))
                      (global.set $name_len (i32.sub (local.get $j) (local.get $i)))))
                  (br $done)))
              ;; a backslash escapes the next byte
              (local.set $j (i32.add (local.get $j)
                (select (i32.const 2) (i32.const 1) (i32.eq (local.get $b) (i32.const 92)))))
              (br $chars))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan))))

  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $line i32) (local $out i32) (local $end i32)
    (call $find_name (local.get $ptr) (local.get $len))
    (local.set $line (call $alloc (i32.add (global.get $name_len) (i32.const 32))))
    (local.set $end (call $append (local.get $line) (i32.const 80) (i32.const 7)))
    (local.set $end (call $append (local.get $end) (global.get $name_ptr) (global.get $name_len)))
    (local.set $end (call $append (local.get $end) (i32.const 96) (i32.const 23)))
    (i32.store (i32.const 32) (local.get $line))
    (i32.store (i32.const 36) (i32.sub (local.get $end) (local.get $line)))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
    (local.set $out (call $alloc (i32.add (global.get $name_len) (i32.const 24))))
    (local.set $end (call $append (local.get $out) (i32.const 128) (i32.const 19)))
    (local.set $end (call $append (local.get $end) (global.get $name_ptr) (global.get $name_len)))
    (local.set $end (call $append (local.get $end) (i32.const 160) (i32.const 3)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $end) (local.get $out)))))
)
