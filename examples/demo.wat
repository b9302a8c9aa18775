;; A small call chain. `main` returns a value; `fail` traps three calls deep, so
;; `framewalk run examples/demo.wat --invoke fail` prints a wasm backtrace.
(module $demo
  (func $divide (param $a i32) (param $b i32) (result i32)
    (i32.div_s (local.get $a) (local.get $b)))
  (func $middle (param $x i32) (result i32)
    (call $divide (i32.const 1000) (local.get $x)))
  (func $main (export "main") (result i32)
    (i32.add (call $middle (i32.const 7)) (call $middle (i32.const -3))))
  (func $fail (export "fail") (result i32)
    (call $middle (i32.const 0))))
