;; Reports what it can see of its process: returns
;; [environ count u32][environ bytes u32][argc u32][argv bytes u32] then argv[0] bytes.
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $arg_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $arg_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "execute") (param i32 i32) (result i64)
    (drop (call $env_sizes (i32.const 512) (i32.const 516)))
    (drop (call $env_get (i32.const 2048) (i32.const 4096)))
    (drop (call $arg_sizes (i32.const 520) (i32.const 524)))
    (drop (call $arg_get (i32.const 600) (i32.const 528)))
    (i64.or (i64.shl (i64.const 512) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const 16) (i32.load (i32.const 524)))))))
