;; Traps like a panic or abort.
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func $fail (unreachable))
  (func (export "execute") (param i32 i32) (result i64) (call $fail) (i64.const 0)))
