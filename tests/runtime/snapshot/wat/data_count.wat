;; Active data segments named by index in code (so the module has a DataCount section).
;; They sit close together, so the snapshot's memory is one segment: an index that moved
;; would be out of range. Active segments are dropped at instantiation: memory.init of
;; zero bytes succeeds, of one byte traps (with a payload), in the module and its snapshot.
(module
  (memory (export "memory") 1)
  (data $hello (i32.const 100) "hello")
  (data $world (i32.const 110) "world")
  (data $again (i32.const 120) "again")
  (func (export "_initialize")
    (i32.store8 (i32.const 110) (i32.const 87)))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $p i32) (param $l i32) (result i64)
    (memory.init $again (i32.const 300) (i32.const 0) (i32.const 0))
    (data.drop $world)
    (data.drop $again)
    (if (local.get $l)
      (then (memory.init $again (i32.const 300) (i32.const 0) (i32.const 1))))
    (i64.or (i64.shl (i64.const 100) (i64.const 32)) (i64.const 25))))
