;; Breaks the task ABI: no alloc export.
(module
  (memory (export "memory") 1)
  (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))
