;; Built like wasm-ld's stack-first layout: the stack is [0, 32768), its pointer exported.
;;   payload "r": the result is a "local buffer" in the stack (offset 32000)
;;   payload "a": alloc hands out a stack address for the payload (set by the first byte
;;                the host cannot see yet, so alloc decides by the payload's size: 2 bytes)
;;   otherwise: the result is the payload itself, above the stack (fine)
(module
  (memory (export "memory") 1)
  (global $sp (export "__stack_pointer") (mut i32) (i32.const 32768))
  (func (export "alloc") (param $n i32) (result i32)
    (if (result i32) (i32.eq (local.get $n) (i32.const 2))
      (then (i32.const 30000))
      (else (i32.const 40000))))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 114))
      (then
        (i32.store (i32.const 32000) (i32.const 0x6b636174))
        (return (i64.or (i64.shl (i64.const 32000) (i64.const 32)) (i64.const 4)))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $l))))
)
