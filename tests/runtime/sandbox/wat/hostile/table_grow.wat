;; Grows its table by a hundred million entries; returns what table.grow answered.
(module
  (table $t 1 funcref)
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 0) (table.grow $t (ref.null func) (i32.const 100000000)))
    (i64.const 4)))
