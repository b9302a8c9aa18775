//! Several runtimes sharing framewalk's trap handlers in one process.
//!
//! Each hand-made "runtime" owns one page of machine code (written, then made
//! executable) and registers hooks whose `lookup` claims only the trap sites of its own
//! page, with its own codes (runtime 1's `ud2` is `TrapCode::Custom(7)`). Calls go
//! through `trap::call_resumable`; each `on_trap` records what it was given (and the
//! frame-pointer chain above the trap) in a thread-local and `resume`s. Every trap is
//! checked exactly: which runtime got it, the PC, the code, FP and SP, the saved FP and
//! the return address of the trapping frame.
//!
//! Before the first registration of the process (every test calls [`setup`] first),
//! the test installs its own SA_SIGINFO handler for SIGILL — the "previous
//! disposition" a fault no runtime claims must reach. With the `runtime` feature the
//! same process also runs framewalk's own runtime, whose traps are interleaved with the
//! hand-made runtimes' ones.
//!
//! Page layout (offsets):
//!
//! ```text
//!   0  leaf:  push rbp; mov rbp, rsp; ud2                      (trap at 4)
//!  16  div:   push rbp; mov rbp, rsp; xor ecx, ecx; xor eax, eax;
//!             xor edx, edx; div ecx                            (trap at 26)
//!  32  outer: push rbp; mov rbp, rsp; call inner; pop rbp; ret (returns to 41)
//!  48  inner: push rbp; mov rbp, rsp; ud2                      (trap at 52)
//! ```

#[cfg(feature = "runtime")]
mod common;

use framewalk::trap::{
    self, call_resumable, resume, ResumePoint, TrapCode, TrapHandlerError, TrapHandlerRegistration,
    TrapHooks,
};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};

const LEAF: usize = 0;
const LEAF_TRAP: usize = LEAF + 4;
const DIV: usize = 16;
const DIV_TRAP: usize = DIV + 10;
const OUTER: usize = 32;
const OUTER_RETURN: usize = OUTER + 9;
const INNER: usize = 48;
const INNER_TRAP: usize = INNER + 4;
const PAGE: usize = 4096;

/// The size of `call_resumable`'s frame between the resume SP and its saved RBP: its
/// RBP is 48 bytes above the resume SP, which is 16 bytes above the FP of the function
/// it called (return address, saved RBP).
const RESUMABLE_FP_ABOVE_CALLEE_FP: usize = 16 + 48;

fn machine_code() -> Vec<u8> {
    const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5]; // push rbp; mov rbp, rsp
    let mut code = vec![0xcc; 64]; // int3 between functions
    code[LEAF..LEAF + 4].copy_from_slice(&PROLOGUE);
    code[LEAF_TRAP..LEAF_TRAP + 2].copy_from_slice(&[0x0f, 0x0b]); // ud2
    code[DIV..DIV + 4].copy_from_slice(&PROLOGUE);
    // xor ecx, ecx; xor eax, eax; xor edx, edx
    code[DIV + 4..DIV_TRAP].copy_from_slice(&[0x31, 0xc9, 0x31, 0xc0, 0x31, 0xd2]);
    code[DIV_TRAP..DIV_TRAP + 2].copy_from_slice(&[0xf7, 0xf1]); // div ecx
    code[OUTER..OUTER + 4].copy_from_slice(&PROLOGUE);
    code[OUTER + 4] = 0xe8; // call rel32
    let rel = INNER as i32 - OUTER_RETURN as i32;
    code[OUTER + 5..OUTER_RETURN].copy_from_slice(&rel.to_le_bytes());
    code[OUTER_RETURN..OUTER_RETURN + 2].copy_from_slice(&[0x5d, 0xc3]); // pop rbp; ret
    code[INNER..INNER + 4].copy_from_slice(&PROLOGUE);
    code[INNER_TRAP..INNER_TRAP + 2].copy_from_slice(&[0x0f, 0x0b]); // ud2
    code
}

/// One page of executable machine code, unmapped on drop.
struct CodePage {
    base: usize,
}

impl CodePage {
    fn new(code: &[u8]) -> CodePage {
        assert!(code.len() <= PAGE);
        // SAFETY: an anonymous private mapping, checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        // SAFETY: the mapping is PAGE writable bytes, at least `code.len()`.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), ptr.cast::<u8>(), code.len()) };
        // SAFETY: the mapping we just made.
        let rc = unsafe { libc::mprotect(ptr, PAGE, libc::PROT_READ | libc::PROT_EXEC) };
        assert_eq!(rc, 0, "mprotect");
        CodePage { base: ptr as usize }
    }
}

impl Drop for CodePage {
    fn drop(&mut self) {
        // SAFETY: our mapping; no code of it runs any more (its runtime unregistered
        // or the test finished its calls).
        unsafe { libc::munmap(self.base as *mut c_void, PAGE) };
    }
}

/// How many runtime identities the tests use (the `K` of [`lookup`] and [`on_trap`]).
const RUNTIMES: usize = 12;
/// The code page of each runtime identity (0 = none).
static PAGES: [AtomicUsize; RUNTIMES] = [const { AtomicUsize::new(0) }; RUNTIMES];

fn ud2_code(k: usize) -> TrapCode {
    match k {
        0 => TrapCode::Unreachable,
        _ => TrapCode::Custom(7 * k as u16),
    }
}

fn div_code(k: usize) -> TrapCode {
    match k {
        0 => TrapCode::IntegerDivisionByZero,
        _ => TrapCode::Custom(1000 + k as u16),
    }
}

/// Runtime `K`'s lookup: its own trap sites only, with its own codes.
fn lookup<const K: usize>(pc: usize, signal: i32) -> Option<TrapCode> {
    let base = PAGES[K].load(Ordering::Acquire);
    if base == 0 || pc < base || pc >= base + PAGE {
        return None;
    }
    match (pc - base, signal) {
        (LEAF_TRAP | INNER_TRAP, libc::SIGILL) => Some(ud2_code(K)),
        (DIV_TRAP, libc::SIGFPE) => Some(div_code(K)),
        _ => None,
    }
}

/// What an `on_trap` was given, and the frame-pointer chain above the trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    runtime: usize,
    pc: usize,
    code: Option<TrapCode>,
    fp: usize,
    sp: usize,
    fault_address: usize,
    /// `[fp]`: the caller's FP.
    saved_fp: usize,
    /// `[fp + 8]`: the return address into the caller.
    return_address: usize,
}

thread_local! {
    /// The point of the innermost `run` on this thread.
    static POINT: Cell<*mut ResumePoint> = const { Cell::new(std::ptr::null_mut()) };
    /// What the last `on_trap` on this thread recorded.
    static LAST: Cell<Option<Record>> = const { Cell::new(None) };
    /// The PC of the last fault the test's own (previous) handler got on this thread.
    static FOREIGN: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runtime `K`'s on_trap: records and resumes.
unsafe extern "C" fn on_trap<const K: usize>(
    pc: usize,
    fp: usize,
    sp: usize,
    code: usize,
    fault_address: usize,
) -> ! {
    // SAFETY: `fp` is the trapping function's RBP, set by its `push rbp; mov rbp, rsp`:
    // the saved RBP and the return address above it are on this thread's stack.
    let (saved_fp, return_address) =
        unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
    LAST.set(Some(Record {
        runtime: K,
        pc,
        code: TrapCode::from_raw(code),
        fp,
        sp,
        fault_address,
        saved_fp,
        return_address,
    }));
    let point = POINT.get();
    if point.is_null() {
        std::process::abort();
    }
    // SAFETY: `point` was recorded by the `call_resumable` of `run`, still on this
    // stack; the frames below it are our machine code's and this function's.
    unsafe { resume(point) }
}

/// The test's own SIGILL handler, installed before any registration: sends the thread
/// to `foreign_landing`, which records the PC and resumes.
extern "C" fn foreign_handler(_signal: i32, _info: *mut libc::siginfo_t, uc: *mut c_void) {
    if POINT.get().is_null() {
        std::process::abort(); // a SIGILL outside `run`: nothing to resume to
    }
    // SAFETY: installed with SA_SIGINFO; `uc` is the kernel's context (passed on by
    // framewalk's handler when it chains).
    let regs = unsafe { framewalk::arch::trap_registers(uc) };
    // SAFETY: the faulting stack is the test thread's, with room below its SP;
    // `foreign_landing` never returns.
    unsafe {
        framewalk::arch::redirect(
            uc,
            foreign_landing as *const () as usize,
            [regs.pc, 0, 0, 0, 0],
        )
    };
}

unsafe extern "C" fn foreign_landing(pc: usize, _: usize, _: usize, _: usize, _: usize) -> ! {
    FOREIGN.set(Some(pc));
    // SAFETY: as in `on_trap`; `foreign_handler` checked the point is set.
    unsafe { resume(POINT.get()) }
}

/// How a call of a page's function ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// A runtime's `on_trap` got it.
    Trapped(Record),
    /// The test's own SIGILL handler (the previous disposition) got it, at this PC.
    Foreign(usize),
}

/// Calls the machine code at `entry` through `call_resumable`.
fn run(entry: usize) -> Outcome {
    let mut point = ResumePoint::new();
    let point_ptr: *mut ResumePoint = &mut point;
    let outer = POINT.replace(point_ptr);
    LAST.set(None);
    FOREIGN.set(None);
    // SAFETY: `entry` is the start of a function of a live code page, which takes no
    // arguments (it ignores `rdi`) and always faults.
    let f: unsafe extern "C" fn(*mut c_void) = unsafe { std::mem::transmute(entry) };
    // SAFETY: `point` lives across the call; the frames below it (our machine code and
    // an `on_trap` or `foreign_landing`) own nothing.
    let resumed = unsafe { call_resumable(point_ptr, f, std::ptr::null_mut()) };
    POINT.set(outer);
    assert!(
        resumed,
        "machine code at {entry:#x} returned instead of faulting"
    );
    match (LAST.take(), FOREIGN.take()) {
        (Some(r), None) => Outcome::Trapped(r),
        (None, Some(pc)) => Outcome::Foreign(pc),
        other => panic!("resumed with {other:?}"),
    }
}

/// A hand-made runtime: its page and its registration.
struct Runtime {
    k: usize,
    page: CodePage,
    registration: Option<TrapHandlerRegistration>,
}

impl Runtime {
    fn new<const K: usize>() -> Result<Runtime, TrapHandlerError> {
        let page = CodePage::new(&machine_code());
        PAGES[K].store(page.base, Ordering::Release);
        let registration = trap::register(TrapHooks {
            lookup: lookup::<K>,
            on_trap: on_trap::<K>,
        })?;
        Ok(Runtime {
            k: K,
            page,
            registration: Some(registration),
        })
    }

    fn at(&self, offset: usize) -> usize {
        self.page.base + offset
    }

    /// Runs the function at `case` and asserts this runtime got exactly its trap.
    fn check(&self, case: usize) {
        let record = match run(self.at(case)) {
            Outcome::Trapped(r) => r,
            other => panic!("runtime {} case {case}: {other:?}", self.k),
        };
        let (pc, code) = match case {
            LEAF => (LEAF_TRAP, ud2_code(self.k)),
            DIV => (DIV_TRAP, div_code(self.k)),
            OUTER => (INNER_TRAP, ud2_code(self.k)),
            _ => unreachable!("no such case"),
        };
        assert_eq!(record.runtime, self.k, "{record:?}");
        assert_eq!(record.pc, self.at(pc), "{record:?}");
        assert_eq!(record.code, Some(code), "{record:?}");
        // Every function traps right after `push rbp; mov rbp, rsp`.
        assert_eq!(record.sp, record.fp, "{record:?}");
        assert_eq!(record.fp % 16, 0, "{record:?}");
        assert_eq!(record.fault_address, 0, "{record:?}");
        if case == OUTER {
            // inner's frame: called from outer, whose FP is 16 bytes up.
            assert_eq!(record.return_address, self.at(OUTER_RETURN), "{record:?}");
            assert_eq!(record.saved_fp, record.fp + 16, "{record:?}");
        } else {
            // Called by call_resumable, whose frame pointer is the next in the chain.
            assert_eq!(
                record.saved_fp,
                record.fp + RESUMABLE_FP_ABOVE_CALLEE_FP,
                "{record:?}"
            );
        }
    }

    /// Asserts a fault in this runtime's code reaches the test's previous handler.
    fn check_foreign(&self, case: usize) {
        let pc = match case {
            LEAF => LEAF_TRAP,
            OUTER => INNER_TRAP,
            _ => unreachable!("only SIGILL cases reach the test's handler"),
        };
        assert_eq!(run(self.at(case)), Outcome::Foreign(self.at(pc)));
    }
}

const CASES: [usize; 3] = [LEAF, DIV, OUTER];

/// Installs the test's SIGILL handler (before any registration of the process), then
/// registers runtimes 0 and 1, shared by every test.
fn setup() -> &'static [Runtime; 2] {
    static SHARED: OnceLock<[Runtime; 2]> = OnceLock::new();
    SHARED.get_or_init(|| {
        // SAFETY: sigaction is plain data; all-zero is a valid value.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        action.sa_sigaction = foreign_handler as *const () as usize;
        // SAFETY: a valid sigset_t to initialize.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: as above.
        let mut before: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid signal number and pointers.
        assert_eq!(
            unsafe { libc::sigaction(libc::SIGILL, &action, &mut before) },
            0
        );
        assert_eq!(
            before.sa_sigaction,
            libc::SIG_DFL,
            "SIGILL was already handled"
        );
        let shared = [
            Runtime::new::<0>().expect("register runtime 0"),
            Runtime::new::<1>().expect("register runtime 1"),
        ];
        // framewalk's handler replaced ours (which it chains to).
        // SAFETY: as above.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying a disposition.
        assert_eq!(
            unsafe { libc::sigaction(libc::SIGILL, std::ptr::null(), &mut now) },
            0
        );
        assert_ne!(now.sa_sigaction, foreign_handler as *const () as usize);
        shared
    })
}

/// Traps of both hand-made runtimes (and, with the `runtime` feature, framewalk's own),
/// interleaved many times on two threads at once: each gets exactly its own.
#[test]
fn each_runtime_gets_exactly_its_own_traps_interleaved() {
    let runtimes = setup();
    let iterations = 300;
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                #[cfg(feature = "runtime")]
                let mut fw = wasm::Framewalk::new();
                for i in 0..iterations {
                    let rt = &runtimes[(i + t) % 2];
                    rt.check(CASES[(i / 2 + t) % 3]);
                    #[cfg(feature = "runtime")]
                    if i % 5 == 0 {
                        fw.check(i % 2 == 0);
                    }
                }
            });
        }
    });
}

/// Dropping a registration: that runtime's faults go to the previous disposition (the
/// test's own handler), the other runtimes still get theirs.
#[test]
fn dropping_a_registration_sends_its_faults_to_the_previous_disposition() {
    let runtimes = setup();
    let mut rt = Runtime::new::<2>().expect("register runtime 2");
    for case in CASES {
        rt.check(case);
    }
    drop(rt.registration.take());
    rt.check_foreign(LEAF);
    rt.check_foreign(OUTER);
    for shared in runtimes {
        for case in CASES {
            shared.check(case);
        }
    }
    rt.check_foreign(LEAF);
}

/// Runtimes registering from several threads at the same moment: every registration
/// succeeds in its own slot and takes effect for its own code at once.
#[test]
fn registrations_from_several_threads_at_once_all_take_effect() {
    let runtimes = setup();
    type New = fn() -> Result<Runtime, TrapHandlerError>;
    let news: [New; 8] = [
        Runtime::new::<4>,
        Runtime::new::<5>,
        Runtime::new::<6>,
        Runtime::new::<7>,
        Runtime::new::<8>,
        Runtime::new::<9>,
        Runtime::new::<10>,
        Runtime::new::<11>,
    ];
    let barrier = Arc::new(Barrier::new(news.len()));
    let slots: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = news
            .iter()
            .map(|new| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    let mut rt = new().expect("register");
                    let slot = rt.registration.as_ref().expect("registered").slot();
                    barrier.wait(); // every thread has registered
                    for case in CASES {
                        rt.check(case);
                        runtimes[0].check(case);
                    }
                    barrier.wait(); // no runtime is dropped while another checks
                    drop(rt.registration.take());
                    rt.check_foreign(LEAF);
                    slot
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut distinct = slots.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), slots.len(), "slots {slots:?}");
}

/// A thread that never registered anything (nor asked for an alternate signal stack)
/// still has its faults delivered to the runtime that claims them.
#[test]
fn a_thread_that_registered_nothing_reaches_the_registered_runtimes() {
    let runtimes = setup();
    std::thread::spawn(move || {
        for rt in runtimes {
            for case in CASES {
                rt.check(case);
            }
        }
    })
    .join()
    .expect("thread");
}

#[cfg(feature = "runtime")]
mod wasm {
    //! framewalk's own runtime, in the same process as the hand-made ones.

    use super::common::{assert_frames, render_trap, Wasm};
    use framewalk::trap::TrapCode;
    use framewalk::{Config, Engine, Error, Instance, Module, Store, Val};
    use wasmparser::Operator;

    const WAT: &str = r#"
(module $fw
  (func $f (export "f") unreachable)
  (func $divide (param i32 i32) (result i32) (i32.div_u (local.get 0) (local.get 1)))
  (func $div (export "div") (result i32) (call $divide (i32.const 1) (i32.const 0))))
"#;

    pub struct Framewalk {
        wasm: Wasm,
        store: Store<()>,
        instance: Instance,
    }

    impl Framewalk {
        pub fn new() -> Framewalk {
            let wasm = Wasm::new(WAT);
            let engine = Engine::new(Config::default()).expect("engine");
            let module = Module::new(&engine, &wasm.bytes).expect("module compiles");
            let mut store = Store::new(&engine, ());
            let instance = Instance::new(&mut store, &module, &[]).expect("instantiates");
            Framewalk {
                wasm,
                store,
                instance,
            }
        }

        /// Calls `f` (unreachable) or `div` (division by zero) and asserts the trap:
        /// code, message and backtrace.
        pub fn check(&mut self, unreachable: bool) {
            let (export, code, message, expected) = if unreachable {
                let at = self
                    .wasm
                    .only_op("f", "unreachable", |op| matches!(op, Operator::Unreachable));
                (
                    "f",
                    TrapCode::Unreachable,
                    "wasm trap: unreachable",
                    vec![self.wasm.frame("f", at)],
                )
            } else {
                let at = self
                    .wasm
                    .only_op("divide", "i32.div_u", |op| matches!(op, Operator::I32DivU));
                (
                    "div",
                    TrapCode::IntegerDivisionByZero,
                    "wasm trap: integer divide by zero",
                    vec![
                        self.wasm.frame("divide", at),
                        self.wasm.at_call("div", "divide"),
                    ],
                )
            };
            let f = self.instance.get_func(&self.store, export).expect(export);
            let mut results = vec![Val::I32(0); usize::from(!unreachable)];
            let trap = match f.call(&mut self.store, &[], &mut results) {
                Err(Error::Trap(t)) => t,
                other => panic!("{export}: {other:?}"),
            };
            assert_eq!(trap.code(), code);
            assert_frames(trap.frames(), &expected);
            assert_eq!(trap.to_string(), render_trap(message, &expected));
        }
    }
}

/// The child half of [`resuming_inside_a_registry_view_aborts_with_a_message`]: resumes
/// from inside a `with_view` closure (as an `on_trap` that resumed in the middle of its
/// walk would). Runs only when the parent asks for it through the environment.
#[test]
fn child_resumes_inside_a_registry_view() {
    if std::env::var_os(RESUME_IN_VIEW_CHILD).is_none() {
        return;
    }
    static REGISTRY: framewalk::unwind::CodeRegistry = framewalk::unwind::CodeRegistry::new();
    unsafe extern "C" fn f(point: *mut c_void) {
        REGISTRY.with_view(|_| {
            // SAFETY: `point` was recorded by the `call_resumable` below, still running;
            // the frames between own nothing (the view's guard is what the check saves).
            unsafe { resume(point.cast::<ResumePoint>()) }
        })
    }
    let mut point = ResumePoint::new();
    let point_ptr: *mut ResumePoint = &mut point;
    // SAFETY: `point` outlives the call; `f` takes the point as its argument.
    let resumed = unsafe { call_resumable(point_ptr, f, point_ptr.cast()) };
    // Not reached when the check works: the view's reader count would stay raised.
    println!("resumed past an open view: {resumed}");
}

const RESUME_IN_VIEW_CHILD: &str = "FRAMEWALK_TEST_RESUME_IN_VIEW";

/// Resuming past an open `CodeRegistry::with_view` would leave its reader counted for
/// ever (the registry's next writer would wait for ever): `trap::resume` refuses, with
/// a message, and aborts. Checked in a child process running the test above.
#[test]
fn resuming_inside_a_registry_view_aborts_with_a_message() {
    use std::os::unix::process::ExitStatusExt;
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_resumes_inside_a_registry_view",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RESUME_IN_VIEW_CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains("trap::resume called inside a CodeRegistry read"),
        "stderr: {stderr}"
    );
    assert!(!stdout.contains("resumed past an open view"));
}
