;; A start function counts its runs in a global and in memory; _initialize records the
;; count it saw. Every instance must report exactly one run of each.
(module
  (memory (export "memory") 1)
  (global $starts (mut i32) (i32.const 0))
  (func $start
    (global.set $starts (i32.add (global.get $starts) (i32.const 1)))
    (i32.store (i32.const 64) (i32.add (i32.load (i32.const 64)) (i32.const 1))))
  (start $start)
  (func (export "_initialize")
    (i32.store (i32.const 68) (global.get $starts)))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 72) (global.get $starts))
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 12))))
