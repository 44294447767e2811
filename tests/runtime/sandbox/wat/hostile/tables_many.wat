;; Eight tables, each grown to the per-table bound: more tables than a task may have.
(module
  (table $a 1 funcref) (table $b 1 funcref) (table $c 1 funcref) (table $d 1 funcref)
  (table $e 1 funcref) (table $f 1 funcref) (table $g 1 funcref) (table $h 1 funcref)
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (drop (table.grow $h (ref.null func) (i32.const 65535)))
    (i64.const 0)))
