;; One random_get filling a 512 MiB memory.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 8192)
  (func (export "alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 0) (call $random_get (i32.const 0) (i32.const 536870912)))
    (i64.const 4)))
