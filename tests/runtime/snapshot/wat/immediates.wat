;; Code full of bytes that look like table.set (0x26) and the 0xfc prefix inside
;; immediates: i32.const 38 and 252, memarg offsets 38 and 252, SIMD constants, shuffle
;; lanes, load-lane memargs and lanes, extract_lane, relaxed SIMD, f32/f64 constants,
;; br_table, typed select, and tables only read (table.get, table.size, call_indirect).
(module
  (type $unary (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 2 funcref)
  (elem (table $t) (i32.const 0) func $double $square)
  (global $seen (mut i32) (i32.const 0))
  (global $wide (mut i64) (i64.const 0))
  (func $double (type $unary) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (type $unary) (i32.mul (local.get 0) (local.get 0)))
  (func (export "_initialize")
    (local $v v128)
    (local $i i32)
    (local.set $v (v128.const i8x16 0x26 0xfc 0x26 0xfc 0 1 2 3 4 5 6 7 8 9 10 0xfc))
    (v128.store offset=38 (i32.const 0) (local.get $v))
    (local.set $v (i8x16.shuffle 0 17 2 19 4 21 6 23 8 25 10 27 12 29 14 31
      (local.get $v) (v128.load offset=38 (i32.const 0))))
    (local.set $v (v128.load8_lane offset=252 3 (i32.const 0) (local.get $v)))
    (local.set $v (i8x16.relaxed_swizzle (local.get $v) (local.get $v)))
    (v128.store offset=252 (i32.const 0) (local.get $v))
    (global.set $seen
      (i32.add (i32.const 38) (i8x16.extract_lane_u 1 (local.get $v))))
    (i32.store offset=252 (i32.const 512) (i32.const 252))
    (i32.store offset=38 (i32.const 512) (i32.const 38))
    (f32.store (i32.const 600) (f32.const 0x1.4cf826p-51))
    (f64.store (i32.const 608) (f64.const 0x1.fc2626fc2626p+38))
    (global.set $wide (i64.const 0x26fc26fc26fc))
    (block $b2 (block $b1 (block $b0
      (br_table $b0 $b1 $b2 (i32.const 38)))))
    (local.set $i (select (result i32) (i32.const 38) (i32.const 252) (i32.const 1)))
    (i32.store (i32.const 620)
      (call_indirect $t (type $unary) (local.get $i) (i32.const 1)))
    (i32.store (i32.const 624) (table.size $t))
    (i32.store (i32.const 628) (ref.is_null (table.get $t (i32.const 0)))))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (i32.store (i32.const 1000) (global.get $seen))
    (i64.store (i32.const 1004) (global.get $wide))
    (i32.store (i32.const 1012)
      (call_indirect $t (type $unary) (i32.const 38) (i32.const 0)))
    (i64.or (i64.shl (i64.const 0) (i64.const 32)) (i64.const 1016))))
