;; The module of the call benches (benches/calls.rs, benches/call_floor.rs).
(module
  (import "host" "noop" (func $host_noop))
  (func $noop)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "answer") (result i32) (i32.const 42))
  (func (export "empty_loop") (param $n i32)
    (loop $l (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "wasm_calls") (param $n i32)
    (loop $l (call $noop)
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "host_calls") (param $n i32)
    (loop $l (call $host_noop)
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))
