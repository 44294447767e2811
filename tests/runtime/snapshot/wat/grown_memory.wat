;; _initialize grows memory to 21 pages and writes at its very end, in the middle of the
;; grown part, across short and long runs of zeros, and over an active data segment.
(module
  (memory (export "memory") 1)
  (data (i32.const 256) "from the data segment")
  (func (export "_initialize")
    (drop (memory.grow (i32.const 20)))
    ;; the last 8 bytes of the 21 pages
    (i64.store (i32.const 1376248) (i64.const 0x0102030405060708))
    (i32.store (i32.const 700000) (i32.const -1))
    ;; 63 zeros between 1 and 2, 64 between 2 and 3
    (i32.store8 (i32.const 4096) (i32.const 1))
    (i32.store8 (i32.const 4160) (i32.const 2))
    (i32.store8 (i32.const 4225) (i32.const 3))
    (i32.store8 (i32.const 256) (i32.const 70)))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 8192) (memory.size))
    (i64.store (i32.const 8196) (i64.load (i32.const 1376248)))
    (i32.store (i32.const 8204) (i32.load (i32.const 700000)))
    (memory.copy (i32.const 8208) (i32.const 4096) (i32.const 200))
    (memory.copy (i32.const 8408) (i32.const 256) (i32.const 21))
    (i64.or (i64.shl (i64.const 8192) (i64.const 32)) (i64.const 237))))
