;; Allocates a GC array outside linear memory.
(module
  (type $bytes (array (mut i8)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (drop (array.new_default $bytes (i32.const 1000000000)))
    (i64.const 0)))
