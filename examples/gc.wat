;; Garbage collection across activations.
;;
;; `level n` keeps one host object in a local, drops another on the floor, and goes
;; one level deeper through the host (`reenter`: a new host -> wasm activation). At the
;; bottom it runs a collection and asks how many objects are alive: the four kept ones
;; (one per level, in four activations) survive with their values, the four dropped
;; ones are freed. Back at the top, once every frame is gone, a collection frees the
;; rest.
(module $gc_demo
  (import "framewalk" "new_ref" (func $new_ref (param i64) (result externref)))
  (import "framewalk" "ref_value" (func $ref_value (param externref) (result i64)))
  (import "framewalk" "live_refs" (func $live_refs (result i64)))
  (import "framewalk" "gc" (func $gc))
  (import "framewalk" "reenter" (func $reenter (param funcref i64) (result i64)))
  (elem declare func $level)

  (func $level (param $n i64) (result i64)
    (local $kept externref)
    (local.set $kept (call $new_ref (i64.mul (local.get $n) (i64.const 100))))
    (drop (call $new_ref (i64.const -1)))
    (i64.add
      (if (result i64) (i64.eqz (local.get $n))
        (then (call $gc) (call $live_refs))
        (else (call $reenter (ref.func $level) (i64.sub (local.get $n) (i64.const 1)))))
      (call $ref_value (local.get $kept))))

  ;; Returns: 300+200+100+0 (the kept values, read back after the collection) plus 4
  ;; (objects alive at the bottom), then the objects alive at the end (0).
  (func $main (export "main") (result i64 i64)
    (call $level (i64.const 3))
    (call $gc)
    (call $live_refs)))
