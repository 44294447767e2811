;; Asks for 256 MiB of initial memory.
(module
  (memory (export "memory") 4096)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))
