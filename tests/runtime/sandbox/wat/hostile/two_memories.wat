;; Two memories: each would get the whole memory limit.
(module
  (memory (export "memory") 1)
  (memory $second 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (drop (memory.grow $second (i32.const 1000)))
    (i64.const 0)))
