;; With a granted directory (preopen fd 3): reads up to 256 bytes of "hello.txt" and
;; returns them; also returns the environment (environ_get) after them.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello.txt")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (local $n i32)
    (if (call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 0)
                    (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 128))
      (then (unreachable)))
    (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (i32.const 256))
    (drop (call $read (i32.load (i32.const 128)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $n (i32.load (i32.const 8)))
    (drop (call $env_sizes (i32.const 16) (i32.const 20)))
    (drop (call $env_get (i32.const 256) (i32.add (i32.const 4096) (local.get $n))))
    (i64.or (i64.shl (i64.const 4096) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $n) (i32.load (i32.const 20)))))))
