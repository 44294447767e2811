;; Tries to reach the host file system; returns the errnos of fd_prestat_get(3),
;; path_open(3, "/etc/passwd") and path_open(0, "etc/passwd") as three bytes.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "/etc/passwd")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store8 (i32.const 512) (call $prestat (i32.const 3) (i32.const 128)))
    (i32.store8 (i32.const 513)
      (call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 11) (i32.const 0)
                  (i64.const 0x1FFFFFFF) (i64.const 0x1FFFFFFF) (i32.const 0) (i32.const 136)))
    (i32.store8 (i32.const 514)
      (call $open (i32.const 0) (i32.const 0) (i32.const 65) (i32.const 10) (i32.const 0)
                  (i64.const 0x1FFFFFFF) (i64.const 0x1FFFFFFF) (i32.const 0) (i32.const 136)))
    (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 3))))
