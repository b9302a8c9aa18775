//! The deferred-reference-counting collector, observed through payload drops.
//!
//! Every payload carries a canary checked on every access and a shared drop log, so a
//! reference freed too early is caught when wasm or the host touches it again, and a
//! leak or a double drop shows in the log.

mod common;

use anyhow::Result;
use framewalk::{Caller, Engine, Extern, ExternRef, Func, Instance, Module, Store, Val};
use std::cell::RefCell;
use std::rc::Rc;

const CANARY: u64 = 0x5eed_cafe_f00d_d00d;

struct Payload {
    id: i32,
    canary: u64,
    log: Rc<RefCell<Vec<i32>>>,
}

impl Payload {
    fn check(&self) -> i32 {
        assert_eq!(
            self.canary, CANARY,
            "payload {} used after it was freed",
            self.id
        );
        self.id
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        assert_eq!(self.canary, CANARY, "payload {} dropped twice", self.id);
        self.canary = 0;
        self.log.borrow_mut().push(self.id);
    }
}

#[derive(Default)]
struct Data {
    log: Rc<RefCell<Vec<i32>>>,
    /// The drop log as it was right after each GC run from wasm.
    after_gc: Vec<Vec<i32>>,
    /// `(function index, payload id)` of each stack root seen by `roots`.
    roots: Vec<Vec<(u32, i32)>>,
    /// The same through `Caller::visit_stack_roots`, with each reference's owner count
    /// as the visitor saw it and after the visit.
    visited_roots: Vec<Vec<(u32, i32, usize, usize)>>,
    /// What the foreign frames recorded: (rbp at the call, the callback's saved rbp).
    foreign_rbp: Vec<(u64, u64)>,
}

fn id_of(r: &Option<ExternRef>) -> i32 {
    match r {
        Some(r) => r
            .data()
            .downcast_ref::<Payload>()
            .expect("a payload")
            .check(),
        None => -1,
    }
}

fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort();
    v
}

const WAT: &str = r#"
(module $gc
  (import "host" "make" (func $make (param i32) (result externref)))
  (import "host" "gc" (func $gc))
  (import "host" "check" (func $check (param externref) (result i32)))
  (import "host" "roots" (func $roots))
  (import "host" "reenter" (func $reenter (param i32) (result i32)))
  (import "host" "foreign_reenter" (func $foreign_reenter (param i32) (result i32)))
  (table $t (export "t") 4 externref)
  (global $g (export "g") (mut externref) (ref.null extern))

  ;; Two references held only in locals across a collection.
  (func (export "hold") (result i32)
    (local $a externref) (local $b externref)
    (local.set $a (call $make (i32.const 1)))
    (local.set $b (call $make (i32.const 2)))
    (call $gc)
    (i32.add (call $check (local.get $a)) (call $check (local.get $b))))

  ;; One reference dropped on the floor before the collection, one kept.
  (func (export "drop_one") (result i32)
    (local $a externref)
    (local.set $a (call $make (i32.const 3)))
    (drop (call $make (i32.const 4)))
    (call $gc)
    (call $check (local.get $a)))

  ;; A reference that exists only as a block result (a merge of two references made
  ;; on either arm of an `if`) across the collection.
  (func (export "block_hold") (result i32)
    (if (result externref) (i32.const 1)
      (then (call $make (i32.const 5)))
      (else (call $make (i32.const 6))))
    (call $roots)
    (call $gc)
    (call $check))

  ;; table.get result kept in a local after the slot is cleared.
  (func (export "get_hold") (param $i i32) (result i32)
    (local $r externref)
    (local.set $r (table.get $t (local.get $i)))
    (table.set $t (local.get $i) (ref.null extern))
    (call $gc)
    (call $check (local.get $r)))

  (func (export "stash") (param $id i32) (param $i i32)
    (table.set $t (local.get $i) (call $make (local.get $id))))
  (func (export "unstash") (param $i i32)
    (table.set $t (local.get $i) (ref.null extern)))
  (func (export "set_global") (param $id i32)
    (global.set $g (call $make (local.get $id))))
  (func (export "clear_global")
    (global.set $g (ref.null extern)))
  (func (export "read_global") (result i32)
    (call $gc)
    (call $check (global.get $g)))

  ;; A chain of frames, each holding its own reference; the bottom one lists roots.
  (func $chain (export "chain") (param $n i32) (result i32)
    (local $mine externref)
    (local.set $mine (call $make (i32.add (i32.const 100) (local.get $n))))
    (if (i32.eqz (local.get $n))
      (then (call $roots) (call $gc))
      (else (drop (call $chain (i32.sub (local.get $n) (i32.const 1))))))
    (call $check (local.get $mine)))

  ;; Nested activations: hold a reference, go to the host, which re-enters `nest`.
  (func (export "nest") (param $depth i32) (result i32)
    (local $mine externref)
    (local.set $mine (call $make (i32.add (i32.const 200) (local.get $depth))))
    (if (i32.eqz (local.get $depth))
      (then (call $gc))
      (else (drop (call $reenter (i32.sub (local.get $depth) (i32.const 1))))))
    (call $check (local.get $mine)))

  ;; Many references live on the stack at once (recursion), each made by the host.
  (func $many (export "many") (param $n i32) (result i32)
    (local $mine externref)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else
        (local.set $mine (call $make (local.get $n)))
        (i32.add
          (call $many (i32.sub (local.get $n) (i32.const 1)))
          (call $check (local.get $mine))))))

  (func (export "echo") (param externref) (result externref) (local.get 0))

  ;; Collects, then returns its argument (kept alive by this frame across the GC).
  (func $gc_id (param externref) (result externref) (call $gc) (local.get 0))

  ;; $a is unchanged through the first loop, whose body defines $b across a GC, and
  ;; is read in the second (cranelift-frontend 0.112.3's spiller gave $b $a's slot).
  (func (export "loop_hold") (result i32)
    (local $a externref) (local $b externref) (local $c i32)
    (local.set $a (call $make (i32.const 7)))
    (local.set $c (i32.const 3))
    (loop
      (local.set $b (call $gc_id (call $make (i32.add (i32.const 10) (local.get $c)))))
      (br_if 0 (local.tee $c (i32.sub (local.get $c) (i32.const 1)))))
    (local.set $c (i32.const 1))
    (loop
      (local.set $a (call $gc_id (select (result externref)
        (local.get $a) (local.get $b) (local.get $c))))
      (br_if 0 (local.tee $c (i32.sub (local.get $c) (i32.const 1)))))
    (i32.add (i32.mul (call $check (local.get $a)) (i32.const 100))
             (call $check (local.get $b))))

  ;; Nested activations with a foreign, rbp-clobbering host frame between each two.
  (func (export "fnest") (param $depth i32) (result i32)
    (local $mine externref)
    (local.set $mine (call $make (i32.add (i32.const 300) (local.get $depth))))
    (if (i32.eqz (local.get $depth))
      (then (call $gc))
      (else (drop (call $foreign_reenter (i32.sub (local.get $depth) (i32.const 1))))))
    (call $check (local.get $mine)))

  ;; v128 values live across collections beside references, in two frames and as
  ;; arguments: vectors are never roots, and their 16-byte spill slots must disturb
  ;; neither the references' slots nor the other way round. Returns 100 * id(a) +
  ;; id(b) of the references it made and the vectors recombined after the collections.
  (func $simd_hold (export "simd_hold") (param $v v128) (result i32 v128)
    (local $a externref) (local $w v128) (local $b externref) (local $x v128)
    (local $z v128)
    (local.set $w (i32x4.add (local.get $v) (v128.const i32x4 1 2 3 4)))
    (local.set $a (call $make (i32.const 21)))
    (local.set $x (i8x16.shuffle 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0
      (local.get $v) (local.get $v)))
    (local.set $b (call $make (i32.const 22)))
    (local.set $z (call $simd_inner (local.get $x) (local.get $b) (local.get $w)))
    (i32.add (i32.mul (call $check (local.get $a)) (i32.const 100))
             (call $check (local.get $b)))
    (i32x4.add (v128.xor (local.get $w) (local.get $x)) (local.get $z)))
  ;; Holds a reference and three vectors (two of them arguments) across a collection;
  ;; returns a vector derived from all three.
  (func $simd_inner (param $p v128) (param $r externref) (param $q v128) (result v128)
    (local $c externref) (local $y v128)
    (local.set $y (i64x2.mul (local.get $p) (local.get $q)))
    (local.set $c (call $make (i32.const 23)))
    (call $roots)
    (call $gc)
    (drop (call $check (local.get $c)))
    (drop (call $check (local.get $r)))
    (v128.xor (local.get $y) (i32x4.sub (local.get $p) (local.get $q))))
)
"#;

/// The host import `make`: a fresh payload with the given id, logged when dropped.
fn make_func(store: &mut Store<Data>) -> Result<Func, framewalk::Error> {
    Func::wrap(
        store,
        |mut caller: Caller<'_, Data>, id: i32| -> Option<ExternRef> {
            let log = caller.data().log.clone();
            Some(ExternRef::new(
                &mut caller,
                Payload {
                    id,
                    canary: CANARY,
                    log,
                },
            ))
        },
    )
}

/// The host import `check`: the payload's id, after checking its canary.
fn check_func(store: &mut Store<Data>) -> Result<Func, framewalk::Error> {
    Func::wrap(store, |_: Caller<'_, Data>, r: Option<ExternRef>| -> i32 {
        id_of(&r)
    })
}

struct Fixture {
    store: Store<Data>,
    instance: Instance,
}

impl Fixture {
    fn new() -> Result<Fixture> {
        let engine = Engine::new(Default::default())?;
        let module = Module::new(&engine, WAT.as_bytes())?;
        let mut store = Store::new(&engine, Data::default());
        let make = make_func(&mut store)?;
        let gc = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, (): ()| {
            caller.gc().expect("walk");
            let snapshot = caller.data().log.borrow().clone();
            caller.data_mut().after_gc.push(snapshot);
        })?;
        let check = check_func(&mut store)?;
        let roots = Func::wrap(&mut store, |mut caller: Caller<'_, Data>, (): ()| {
            let roots: Vec<(u32, i32)> = caller
                .stack_roots()
                .expect("walk")
                .iter()
                .map(|(f, r)| (*f, id_of(&Some(r.clone()))))
                .collect();
            caller.data_mut().roots.push(roots);
            let mut seen = Vec::new();
            caller
                .visit_stack_roots(|f, r| {
                    let during = r.owner_count();
                    seen.push((f, r.clone(), during));
                })
                .expect("walk");
            let visited = seen
                .into_iter()
                .map(|(f, r, during)| {
                    // The clone above holds one count.
                    let after = r.owner_count() - 1;
                    (f, id_of(&Some(r)), during, after)
                })
                .collect();
            caller.data_mut().visited_roots.push(visited);
        })?;
        let reenter = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, Data>, depth: i32| -> Result<i32, framewalk::Error> {
                let nest = caller
                    .get_export("nest")
                    .and_then(Extern::into_func)
                    .expect("nest");
                nest.typed::<i32, i32>(&caller)?.call(&mut caller, depth)
            },
        )?;
        let foreign_reenter = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, Data>, depth: i32| -> Result<i32, framewalk::Error> {
                let fnest = caller
                    .get_export("fnest")
                    .and_then(Extern::into_func)
                    .expect("fnest");
                let typed = fnest.typed::<i32, i32>(&caller)?;
                let mut result = None;
                let rbp = common::foreign::through_foreign_frame(&mut || {
                    result = Some(typed.call(&mut caller, depth));
                });
                caller.data_mut().foreign_rbp.push(rbp);
                result.expect("the callback ran")
            },
        )?;
        let imports = [make, gc, check, roots, reenter, foreign_reenter].map(Extern::Func);
        let instance = Instance::new(&mut store, &module, &imports)?;
        Ok(Fixture { store, instance })
    }

    fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>> {
        let f = self.instance.get_func(&self.store, name).expect(name);
        let ty = f.ty(&self.store)?;
        let mut results: Vec<Val> = ty.results().iter().map(|t| Val::default_for(*t)).collect();
        f.call(&mut self.store, args, &mut results)?;
        Ok(results)
    }

    fn log(&self) -> Vec<i32> {
        sorted(self.store.data().log.borrow().clone())
    }
}

#[test]
fn references_held_only_by_wasm_locals_survive_a_collection() -> Result<()> {
    let mut fx = Fixture::new()?;
    let r = fx.call("hold", &[])?;
    assert_eq!(
        r[0].i32(),
        Some(3),
        "both payloads were readable after the GC"
    );
    assert_eq!(
        fx.store.data().after_gc,
        vec![Vec::<i32>::new()],
        "nothing freed while on the stack"
    );
    assert_eq!(fx.store.gc_stats().last_stack_roots, 2);
    // Off the stack now and owned by nobody: the next collection frees both, once.
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![1, 2]);
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![1, 2], "no double free");
    Ok(())
}

#[test]
fn a_reference_dropped_on_the_floor_is_freed_by_the_collection_inside_the_call() -> Result<()> {
    let mut fx = Fixture::new()?;
    assert_eq!(fx.call("drop_one", &[])?[0].i32(), Some(3));
    assert_eq!(
        fx.store.data().after_gc,
        vec![vec![4]],
        "4 freed during the call, 3 kept"
    );
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![3, 4]);
    Ok(())
}

#[test]
fn a_reference_live_through_a_loop_survives_gcs_in_it() -> Result<()> {
    let mut fx = Fixture::new()?;
    // $a = 7 all along; $b ends as the last reference made in the first loop (11).
    assert_eq!(fx.call("loop_hold", &[])?[0].i32(), Some(711));
    // Four collections: three in the first loop, one in the second. Each frees the
    // previous iteration's $b only (13, then 12); 7 and 11 are never freed in the call.
    // (The log is in drop order.)
    assert_eq!(
        fx.store.data().after_gc,
        vec![vec![], vec![13], vec![13, 12], vec![13, 12]]
    );
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![7, 11, 12, 13]);
    Ok(())
}

#[test]
fn a_reference_living_only_in_a_block_result_survives() -> Result<()> {
    let mut fx = Fixture::new()?;
    assert_eq!(fx.call("block_hold", &[])?[0].i32(), Some(5));
    assert_eq!(
        fx.store.data().roots,
        vec![vec![(6 + 2, 5)]],
        "the block result is a stack root"
    );
    assert_eq!(fx.store.data().after_gc, vec![Vec::<i32>::new()]);
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![5]);
    Ok(())
}

#[test]
fn tables_own_their_references() -> Result<()> {
    let mut fx = Fixture::new()?;
    fx.call("stash", &[Val::I32(7), Val::I32(1)])?;
    fx.store.gc()?;
    fx.store.gc()?;
    assert_eq!(fx.log(), Vec::<i32>::new(), "the table keeps 7");
    // The host reads it through the table API.
    let t = fx.instance.get_table(&fx.store, "t").unwrap();
    match t.get(&fx.store, 1)? {
        Some(Val::ExternRef(r)) => assert_eq!(id_of(&r), 7),
        other => panic!("unexpected {other:?}"),
    }
    fx.call("unstash", &[Val::I32(1)])?;
    fx.store.gc()?;
    assert_eq!(
        fx.log(),
        vec![7],
        "freed once the slot is cleared and it is off the stack"
    );
    Ok(())
}

#[test]
fn a_table_get_result_outlives_its_slot_while_on_the_stack() -> Result<()> {
    let mut fx = Fixture::new()?;
    fx.call("stash", &[Val::I32(8), Val::I32(2)])?;
    assert_eq!(fx.call("get_hold", &[Val::I32(2)])?[0].i32(), Some(8));
    assert_eq!(fx.store.data().after_gc, vec![Vec::<i32>::new()]);
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![8]);
    Ok(())
}

#[test]
fn globals_own_their_references() -> Result<()> {
    let mut fx = Fixture::new()?;
    fx.call("set_global", &[Val::I32(9)])?;
    assert_eq!(fx.call("read_global", &[])?[0].i32(), Some(9));
    fx.call("set_global", &[Val::I32(10)])?;
    fx.store.gc()?;
    assert_eq!(
        fx.log(),
        vec![9],
        "the overwritten value goes, the new one stays"
    );
    let g = fx.instance.get_global(&fx.store, "g").unwrap();
    match g.get(&fx.store)? {
        Val::ExternRef(r) => assert_eq!(id_of(&r), 10),
        other => panic!("unexpected {other:?}"),
    }
    fx.call("clear_global", &[])?;
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![9, 10]);
    Ok(())
}

#[test]
fn the_stack_roots_are_exactly_the_references_each_frame_holds() -> Result<()> {
    let mut fx = Fixture::new()?;
    // chain(3) -> chain(2) -> chain(1) -> chain(0): each frame holds payload 100+n.
    assert_eq!(fx.call("chain", &[Val::I32(3)])?[0].i32(), Some(103));
    // 6 imports, then hold, drop_one, block_hold, get_hold, stash, unstash,
    // set_global, clear_global, read_global, chain: defined function 9.
    let chain_index = 6 + 9;
    let roots = &fx.store.data().roots;
    assert_eq!(roots.len(), 1);
    assert_eq!(
        roots[0],
        vec![
            (chain_index, 100),
            (chain_index, 101),
            (chain_index, 102),
            (chain_index, 103)
        ],
        "newest frame first, one slot per frame, each its own reference"
    );
    // The borrowed visit sees the same references in the same order, and takes no
    // count: only wasm locals hold them.
    let visited = &fx.store.data().visited_roots;
    assert_eq!(
        visited,
        &vec![(100..=103)
            .map(|id| (chain_index, id, 0, 0))
            .collect::<Vec<_>>()]
    );
    assert_eq!(fx.store.data().after_gc, vec![Vec::<i32>::new()]);
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![100, 101, 102, 103]);
    Ok(())
}

#[test]
fn a_collection_in_nested_activations_keeps_every_activations_references() -> Result<()> {
    let mut fx = Fixture::new()?;
    assert_eq!(fx.call("nest", &[Val::I32(4)])?[0].i32(), Some(204));
    assert_eq!(
        fx.store.data().after_gc,
        vec![Vec::<i32>::new()],
        "GC at depth 0 freed nothing"
    );
    assert_eq!(
        fx.store.gc_stats().last_stack_roots,
        5,
        "one per activation"
    );
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![200, 201, 202, 203, 204]);
    Ok(())
}

#[test]
fn the_trigger_adapts_to_many_long_lived_stack_references() -> Result<()> {
    let mut fx = Fixture::new()?;
    let n = 5000;
    let r = fx.call("many", &[Val::I32(n)])?;
    assert_eq!(r[0].i32(), Some(n * (n + 1) / 2));
    let stats = fx.store.gc_stats();
    // A fixed threshold of 1024 would collect on nearly every one of the last ~4000
    // inserts; doubling the threshold with the survivors needs only a handful.
    assert!(stats.collections >= 1, "the trigger fired: {stats:?}");
    assert!(stats.collections <= 8, "too many collections: {stats:?}");
    assert_eq!(stats.freed, 0, "every reference was live on the stack");
    fx.store.gc()?;
    assert_eq!(fx.log().len(), n as usize);
    Ok(())
}

#[test]
fn dropping_the_store_drops_every_held_reference_once_and_spares_host_handles() -> Result<()> {
    let log;
    let kept;
    {
        let mut fx = Fixture::new()?;
        log = fx.store.data().log.clone();
        fx.call("stash", &[Val::I32(1), Val::I32(0)])?;
        fx.call("stash", &[Val::I32(2), Val::I32(3)])?;
        fx.call("set_global", &[Val::I32(3)])?;
        // In the root set only (returned to and dropped by the host).
        fx.call("hold", &[])?;
        let t = fx.instance.get_table(&fx.store, "t").unwrap();
        kept = match t.get(&fx.store, 3)? {
            Some(Val::ExternRef(Some(r))) => r,
            other => panic!("unexpected {other:?}"),
        };
        // The echo round trip hands the host a new owner of the same value.
        let echo = fx.instance.get_func(&fx.store, "echo").unwrap();
        let back = echo
            .typed::<Option<ExternRef>, Option<ExternRef>>(&fx.store)?
            .call(&mut fx.store, Some(kept.clone()))?;
        assert!(ExternRef::ptr_eq(back.as_ref().unwrap(), &kept));
        assert!(log.borrow().is_empty());
    }
    let mut dropped = log.borrow().clone();
    dropped.sort();
    assert_eq!(
        dropped,
        vec![1, 1, 2, 3],
        "ids 1 (table), 1 and 2 (hold), 3 (global); 2 from the table survives"
    );
    assert_eq!(
        id_of(&Some(kept.clone())),
        2,
        "the host's handle outlives the store"
    );
    drop(kept);
    let mut dropped = log.borrow().clone();
    dropped.sort();
    assert_eq!(dropped, vec![1, 1, 2, 2, 3]);
    Ok(())
}

#[test]
fn outer_activations_keep_their_references_across_foreign_rbp_clobbering_frames() -> Result<()> {
    let mut fx = Fixture::new()?;
    // fnest(2) -> host -> foreign frame -> fnest(1) -> host -> foreign frame -> fnest(0)
    // -> GC: three activations, each holding one reference only in a wasm local.
    assert_eq!(fx.call("fnest", &[Val::I32(2)])?[0].i32(), Some(302));
    let poison = common::foreign::POISON;
    assert_eq!(
        fx.store.data().foreign_rbp,
        vec![(poison, poison), (poison, poison)],
        "rbp was clobbered at both foreign frames"
    );
    assert_eq!(
        fx.store.data().after_gc,
        vec![Vec::<i32>::new()],
        "the GC in the innermost activation freed nothing"
    );
    assert_eq!(
        fx.store.gc_stats().last_stack_roots,
        3,
        "one root per activation"
    );
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![300, 301, 302]);
    Ok(())
}

#[test]
fn a_million_references_through_wasm_stay_bounded_and_are_all_freed() -> Result<()> {
    let n: usize = common::env_count("GC_CHURN", 1_000_000);
    let mut fx = Fixture::new()?;
    let echo = fx.instance.get_func(&fx.store, "echo").unwrap();
    let echo = echo.typed::<Option<ExternRef>, Option<ExternRef>>(&fx.store)?;
    let log = fx.store.data().log.clone();
    let mut max_alive = 0;
    for i in 0..n {
        let r = ExternRef::new(
            &mut fx.store,
            Payload {
                id: i as i32,
                canary: CANARY,
                log: log.clone(),
            },
        );
        let back = echo.call(&mut fx.store, Some(r))?;
        assert_eq!(id_of(&back), i as i32);
        drop(back);
        max_alive = max_alive.max(i + 1 - log.borrow().len());
    }
    let stats = fx.store.gc_stats();
    println!("{n} references through wasm: at most {max_alive} alive at once; {stats}");
    assert!(
        max_alive <= 2 * framewalk::runtime::GC_THRESHOLD_FLOOR + 1,
        "memory not bounded: {max_alive} alive"
    );
    assert!(stats.collections as usize >= n / (2 * framewalk::runtime::GC_THRESHOLD_FLOOR));
    drop(fx);
    assert_eq!(
        log.borrow().len(),
        n,
        "every payload dropped exactly once by the end"
    );
    Ok(())
}

/// A module whose `hold` keeps `per_frame` references in locals in each of `depth`
/// frames, then makes `churn` more references that it drops at once.
fn live_and_churn_wat(per_frame: usize) -> String {
    let mut locals = String::new();
    let mut sets = String::new();
    let mut sum = String::from("(local.get $below)");
    for i in 0..per_frame {
        locals.push_str(&format!(" (local $r{i} externref)"));
        sets.push_str(&format!("(local.set $r{i} (call $make (i32.const {i})))\n"));
        sum = format!("(i32.add {sum} (call $check (local.get $r{i})))");
    }
    format!(
        r#"(module
  (import "host" "make" (func $make (param i32) (result externref)))
  (import "host" "check" (func $check (param externref) (result i32)))
  (func $churn (param $n i32)
    (loop $l
      (drop (call $make (i32.const -1)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func $hold (export "hold") (param $depth i32) (param $churn i32) (result i32)
    (local $below i32){locals}
    {sets}
    (if (i32.eqz (local.get $depth))
      (then (call $churn (local.get $churn)))
      (else (local.set $below (call $hold (i32.sub (local.get $depth) (i32.const 1)) (local.get $churn)))))
    {sum}))"#
    )
}

#[test]
fn gc_work_stays_linear_with_100k_live_stack_references_and_a_million_more() -> Result<()> {
    let depth = common::env_count("GC_LIVE_DEPTH", 1000) as i32;
    let churn = common::env_count("GC_CHURN", 1_000_000) as i32;
    let per_frame = 100;
    common::with_big_stack(256, move || -> Result<()> {
        let engine = Engine::new(framewalk::Config {
            max_wasm_stack: 64 << 20,
            ..Default::default()
        })?;
        let module = Module::new(&engine, live_and_churn_wat(per_frame).as_bytes())?;
        let mut store = Store::new(&engine, Data::default());
        let make = make_func(&mut store)?;
        let check = check_func(&mut store)?;
        let inst = Instance::new(
            &mut store,
            &module,
            &[Extern::Func(make), Extern::Func(check)],
        )?;
        let hold = inst
            .get_func(&store, "hold")
            .unwrap()
            .typed::<(i32, i32), i32>(&store)?;
        let started = std::time::Instant::now();
        let sum = hold.call(&mut store, (depth - 1, churn))?;
        let elapsed = started.elapsed();
        let per_frame_sum: i32 = (0..per_frame as i32).sum();
        assert_eq!(
            sum,
            depth * per_frame_sum,
            "every live reference read back intact"
        );
        let stats = store.gc_stats();
        let live = depth as usize * per_frame;
        println!(
            "{live} live stack references, {churn} more passed through: {stats}; whole run {elapsed:?}"
        );
        // Linear: the threshold follows the live set, so each collection is paid for by
        // at least as many new references as survived it; a fixed threshold would
        // collect ~{churn}/1024 times, each walking all {live} live references.
        assert!(
            stats.collections <= 16 + (churn as u64) / (live as u64),
            "{stats}"
        );
        assert!(
            store.data().log.borrow().iter().all(|id| *id == -1),
            "only churned references were freed while the live ones were on the stack"
        );
        store.gc()?;
        assert_eq!(
            store.data().log.borrow().len(),
            churn as usize + live,
            "after the call, everything is freed once"
        );
        Ok(())
    })
}

#[test]
fn a_reference_made_for_one_store_is_refused_by_another() -> Result<()> {
    let mut a = Fixture::new()?;
    let mut b = Fixture::new()?;
    let log = a.store.data().log.clone();
    let r = ExternRef::new(
        &mut a.store,
        Payload {
            id: 77,
            canary: CANARY,
            log,
        },
    );
    let echo_b = b.instance.get_func(&b.store, "echo").unwrap();
    let typed = echo_b.typed::<Option<ExternRef>, Option<ExternRef>>(&b.store)?;
    assert!(matches!(
        typed.call(&mut b.store, Some(r.clone())),
        Err(framewalk::Error::WrongStore)
    ));
    let mut out = [Val::ExternRef(None)];
    assert!(matches!(
        echo_b.call(&mut b.store, &[Val::ExternRef(Some(r.clone()))], &mut out),
        Err(framewalk::Error::WrongStore)
    ));
    let t = b.instance.get_table(&b.store, "t").unwrap();
    assert!(matches!(
        t.set(&mut b.store, 0, Val::ExternRef(Some(r.clone()))),
        Err(framewalk::Error::WrongStore)
    ));
    // Its own store takes it.
    let echo_a = a.instance.get_func(&a.store, "echo").unwrap();
    let back = echo_a
        .typed::<Option<ExternRef>, Option<ExternRef>>(&a.store)?
        .call(&mut a.store, Some(r))?;
    assert_eq!(id_of(&back), 77);
    Ok(())
}

/// A long wasm call that reads references out of a table and drops them collects from
/// wasm when the root set reaches its threshold, so memory stays bounded within the
/// call, and a reference the frame keeps in a local through it all survives.
#[test]
fn a_long_call_reading_tables_collects_from_wasm() -> Result<()> {
    const N: i32 = 20_000;
    let wat = r#"
      (module
        (import "host" "live" (func $live (result i32)))
        (import "host" "check" (func $check (param externref) (result i32)))
        (table $t (export "t") 0 externref)
        (func (export "fill") (param $r externref) (result i32)
          (table.grow $t (local.get $r) (i32.const 1)))
        ;; Keeps slot 0's reference in a local, empties slot 0, then reads and empties
        ;; every other slot in a loop (each read joins the root set), and reports how
        ;; many payloads are alive at the end, still inside the call.
        (func (export "churn") (param $n i32) (result i32)
          (local $keep externref) (local $i i32) (local $live i32)
          (local.set $keep (table.get $t (i32.const 0)))
          (table.set $t (i32.const 0) (ref.null extern))
          (local.set $i (i32.const 1))
          (loop $l
            (drop (table.get $t (local.get $i)))
            (table.set $t (local.get $i) (ref.null extern))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
          (local.set $live (call $live))
          ;; The kept reference is intact (its payload's canary is checked).
          (i32.add (i32.mul (local.get $live) (i32.const 100000))
                   (call $check (local.get $keep)))))
    "#;
    let engine = Engine::new(Default::default())?;
    let module = Module::new(&engine, wat.as_bytes())?;
    let mut store = Store::new(&engine, Data::default());
    let log = store.data().log.clone();
    let live = Func::wrap(&mut store, |caller: Caller<'_, Data>, (): ()| -> i32 {
        // Payloads made minus payloads dropped so far.
        N - caller.data().log.borrow().len() as i32
    })?;
    let check = Func::wrap(
        &mut store,
        |_: Caller<'_, Data>, r: Option<ExternRef>| -> i32 { id_of(&r) },
    )?;
    let instance = Instance::new(
        &mut store,
        &module,
        &[Extern::Func(live), Extern::Func(check)],
    )?;
    let fill = instance.get_typed_func::<Option<ExternRef>, i32>(&store, "fill")?;
    for id in 0..N {
        let payload = Payload {
            id,
            canary: CANARY,
            log: log.clone(),
        };
        let r = ExternRef::new(&mut store, payload);
        assert_eq!(fill.call(&mut store, Some(r))?, id);
    }
    store.gc()?;
    assert!(log.borrow().is_empty(), "the table owns every reference");
    let churn = instance.get_typed_func::<i32, i32>(&store, "churn")?;
    let out = churn.call(&mut store, N)?;
    let (live_at_end, kept) = (out / 100_000, out % 100_000);
    assert_eq!(kept, 0, "the kept reference (slot 0's payload) is intact");
    // Without collections from wasm all N would still be alive here; with them, at most
    // about one threshold's worth (the floor is 1,024) plus the kept one.
    assert!(
        live_at_end <= 2 * framewalk::runtime::GC_THRESHOLD_FLOOR as i32,
        "{live_at_end} payloads alive at the end of the call"
    );
    assert!(store.gc_stats().collections >= (N as u64) / 2048);
    drop(store);
    assert_eq!(
        sorted(log.borrow().clone()),
        (0..N).collect::<Vec<_>>(),
        "every payload dropped exactly once"
    );
    Ok(())
}

/// The model of `simd_hold` in Rust, lane by lane (lane 0 lowest).
fn simd_hold_model(v: u128) -> u128 {
    let lanes32 = |x: u128| -> [u32; 4] { std::array::from_fn(|i| (x >> (32 * i)) as u32) };
    let from32 = |l: [u32; 4]| {
        l.iter()
            .rev()
            .fold(0u128, |acc, &x| acc << 32 | u128::from(x))
    };
    let lanes64 = |x: u128| -> [u64; 2] { [x as u64, (x >> 64) as u64] };
    let from64 = |l: [u64; 2]| u128::from(l[0]) | u128::from(l[1]) << 64;
    let (lv, k) = (lanes32(v), [1u32, 2, 3, 4]);
    let w = from32(std::array::from_fn(|i| lv[i].wrapping_add(k[i])));
    let x = u128::from_le_bytes({
        let mut b = v.to_le_bytes();
        b.reverse();
        b
    });
    // simd_inner(p = x, q = w)
    let (p, q) = (x, w);
    let (p64, q64) = (lanes64(p), lanes64(q));
    let y = from64([p64[0].wrapping_mul(q64[0]), p64[1].wrapping_mul(q64[1])]);
    let (lp, lq) = (lanes32(p), lanes32(q));
    let inner = y ^ from32(std::array::from_fn(|i| lp[i].wrapping_sub(lq[i])));
    let (lw, li) = (lanes32(w ^ x), lanes32(inner));
    from32(std::array::from_fn(|i| lw[i].wrapping_add(li[i])))
}

#[test]
fn v128_values_live_across_a_collection_are_kept_and_are_never_roots() -> Result<()> {
    let mut fx = Fixture::new()?;
    let v: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    let r = fx.call("simd_hold", &[Val::V128(v)])?;
    assert_eq!(
        r[0].i32(),
        Some(2122),
        "both references readable after the GC"
    );
    assert_eq!(
        r[1].v128(),
        Some(simd_hold_model(v)),
        "the vectors came through the collection unchanged"
    );
    // 6 imports and 16 functions before: simd_hold is function 22, simd_inner 23.
    let (outer, inner) = (22, 23);
    let roots = &fx.store.data().roots[0];
    let mut inner_roots: Vec<_> = roots.iter().filter(|(f, _)| *f == inner).copied().collect();
    inner_roots.sort();
    let mut outer_roots: Vec<_> = roots.iter().filter(|(f, _)| *f == outer).copied().collect();
    outer_roots.sort();
    assert_eq!(inner_roots, vec![(inner, 22), (inner, 23)], "{roots:?}");
    assert_eq!(outer_roots, vec![(outer, 21), (outer, 22)], "{roots:?}");
    assert_eq!(roots.len(), 4, "no vector read as a root: {roots:?}");
    assert_eq!(fx.store.data().after_gc, vec![Vec::<i32>::new()]);
    fx.store.gc()?;
    assert_eq!(fx.log(), vec![21, 22, 23]);
    Ok(())
}
