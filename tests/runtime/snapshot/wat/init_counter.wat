;; _initialize sets a global counter and a memory counter to 100; execute increments both
;; and returns them: every task must see 101 and 101.
(module
  (memory (export "memory") 1)
  (global $runs (mut i32) (i32.const 0))
  (func (export "_initialize")
    (global.set $runs (i32.const 100))
    (i32.store (i32.const 512) (i32.const 100)))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (global.set $runs (i32.add (global.get $runs) (i32.const 1)))
    (i32.store (i32.const 512) (i32.add (i32.load (i32.const 512)) (i32.const 1)))
    (i32.store (i32.const 516) (global.get $runs))
    (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 8))))
