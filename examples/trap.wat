;; A trap three activations deep: main -> descend(2) -> host -> descend(1) -> host ->
;; descend(0) -> divide, which divides by zero. The backtrace lists every wasm frame
;; of every activation, newest first.
(module $trap_demo
  (import "framewalk" "reenter" (func $reenter (param funcref i64) (result i64)))
  (elem declare func $descend)
  (func $divide (param $x i64) (result i64)
    (i64.div_s (i64.const 1) (local.get $x)))
  (func $descend (param $n i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (call $divide (local.get $n)))
      (else (call $reenter (ref.func $descend) (i64.sub (local.get $n) (i64.const 1))))))
  (func $main (export "main") (result i64)
    (call $descend (i64.const 2))))
