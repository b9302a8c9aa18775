//! The per-thread CPU-time timer and the SIGPROF handler that records samples.
//!
//! A [`Sampler`] belongs to the thread that started it. It arms a POSIX timer on that
//! thread's CPU-time clock (`timer_create(CLOCK_THREAD_CPUTIME_ID)`, or the monotonic
//! clock: [`SampleClock`]), delivered to that thread alone (`SIGEV_THREAD_ID`) as
//! SIGPROF, so each thread of a process can have its own sampler. The handler finds the
//! sampler through a thread-local `Cell` (const-initialized, no destructor: readable
//! from a signal handler) and records one sample into the sampler's ring, preallocated
//! when the sampler started:
//!
//! ```text
//!  ring: [ header | frame | frame | ... ][ header | ... ] ...    one slot = 3 words
//!  header: pc = kind | truncated << 8, module = ns since start, func_index = frames
//!  frame:  a `RawFrame` (pc, module id, function index, text offset), newest first
//! ```
//!
//! The ring's pages are made resident ahead of the samples, a chunk at a time
//! ([`POPULATE_CHUNK`], `madvise(MADV_POPULATE_WRITE)`): the first chunk when the
//! sampler starts, the next ones by the handler when a sample could reach past the
//! resident part. Left to fault in on first touch instead, a page fault every few
//! samples cost more than the rest of the handler (about 2.9 µs a fault on the
//! virtual machine this was measured on, ~0.6 µs a sample at 40 frames, against about
//! 1 µs a page populated in bulk). A kernel without `MADV_POPULATE_WRITE` (before 5.14)
//! falls back to faulting.
//!
//! The handler takes no lock, allocates nothing, cannot panic (every index is checked
//! or comes from a bounded loop) and saves and restores `errno`. A sample that would not
//! fit the ring's remaining space is dropped and counted. The handler and the ring's
//! reader run on the same thread (`stop` disables the handler before it reads), so
//! they never race; the counters are atomics only so that the handler writes through
//! a shared reference.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::classify::{classify, ActivationSnapshot, PcKind, RawFrame, SampleKind, SampleRegs};
use super::{Profile, ProfileError};
use crate::runtime::module::ModuleInner;
use crate::runtime::registry::REGISTRY;
use crate::unwind::{LiveStackReader, RegistryView};

/// Most wasm frames one sample records (the newest ones; a deeper stack is marked
/// truncated).
pub const MAX_FRAMES: usize = 1024;
/// Most activations (host → wasm calls) of one thread a sample walks.
const MAX_ACTIVATIONS: usize = 128;
/// Bytes of the ring made resident at a time (see the module docs).
const POPULATE_CHUNK: usize = 256 << 10;
const PAGE: usize = 4096;

/// Which clock paces the samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SampleClock {
    /// The thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): a thread that waits is not
    /// sampled. Linux checks CPU-time timers on its scheduler tick, so this clock
    /// samples at most `CONFIG_HZ` times a second (often 250) whatever the rate asked.
    #[default]
    ThreadCpuTime,
    /// Wall-clock time (`CLOCK_MONOTONIC`, a high-resolution timer) delivered to the
    /// thread: any rate, but a thread that waits is sampled too (where it waits).
    Wall,
}

/// How to sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Samples per second of the clock's time (1 to 100,000).
    pub hz: u32,
    /// The clock.
    pub clock: SampleClock,
    /// Size of the sample ring in bytes. A sample takes 24 bytes plus 24 per wasm frame;
    /// the default (64 MiB) holds a minute at 10 kHz of 40-frame stacks. Pages are
    /// made resident (committed) a chunk of 256 KiB ahead of the samples that fill
    /// them, not all at the start.
    pub buffer_bytes: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            hz: 1000,
            clock: SampleClock::ThreadCpuTime,
            buffer_bytes: 64 << 20,
        }
    }
}

/// What the handler fills; see the module docs.
pub(super) struct SamplerState {
    enabled: AtomicBool,
    ring: Box<[UnsafeCell<RawFrame>]>,
    /// Slots of the ring in use.
    used: AtomicUsize,
    start: libc::timespec,
    /// Samples by kind (index = `SampleKind as u8`).
    counts: [AtomicU64; SampleKind::ALL.len()],
    dropped: AtomicU64,
    /// The end (an address) of the ring's pages made resident so far; `usize::MAX`
    /// once populating failed (the rest faults in on first touch).
    resident_end: AtomicUsize,
    stub_ranges: [std::ops::Range<usize>; 3],
}

impl SamplerState {
    /// Makes the ring's pages resident up to at least slot `slots` (or its end) and a
    /// chunk beyond, if they are not yet. Async-signal-safe (one `madvise`; the
    /// handler saves and restores `errno`).
    fn make_resident(&self, slots: usize) {
        let resident = self.resident_end.load(Ordering::Relaxed);
        let start = self.ring.as_ptr() as usize;
        let need = start + slots.min(self.ring.len()) * std::mem::size_of::<RawFrame>();
        if need < resident || resident == usize::MAX {
            return;
        }
        // Whole pages inside the ring only: the partial pages at its ends fault in.
        let ring_end = (start + std::mem::size_of_val(&*self.ring)) & !(PAGE - 1);
        let from = (resident + PAGE - 1) & !(PAGE - 1);
        let to = ((need + POPULATE_CHUNK) & !(PAGE - 1)).min(ring_end);
        if to <= from {
            self.resident_end
                .store(need.max(resident), Ordering::Relaxed);
            return;
        }
        // SAFETY: `[from, to)` is whole pages inside the ring, which this state owns;
        // populating for writing keeps their contents (zero or samples).
        let ok = unsafe {
            libc::madvise(
                from as *mut libc::c_void,
                to - from,
                libc::MADV_POPULATE_WRITE,
            )
        } == 0;
        self.resident_end
            .store(if ok { to } else { usize::MAX }, Ordering::Relaxed);
    }
}

// SAFETY: the state is shared only between its thread's handler and that thread (see
// the module docs); it is `Sync` so that the handler can hold a `&` to it.
unsafe impl Sync for SamplerState {}

thread_local! {
    /// The sampler of this thread, or null. Read by the signal handler.
    static ACTIVE: Cell<*const SamplerState> = const { Cell::new(std::ptr::null()) };
}

/// A running sampler of the current thread's wasm stacks; [`Sampler::stop`] it to get
/// the [`Profile`]. Not `Send`: it samples the thread that started it.
pub struct Sampler {
    state: Box<SamplerState>,
    timer: libc::timer_t,
    interval: Duration,
    /// `stop` ran (the timer is deleted and the handler no longer sees the state).
    stopped: bool,
    _thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("interval", &self.interval)
            .field("samples", &self.samples_taken())
            .finish()
    }
}

impl Sampler {
    /// Starts sampling the current thread: every `1 / hz` seconds of its CPU time, the
    /// wasm stack it is running (or what else it is doing) is recorded.
    ///
    /// # Errors
    ///
    /// [`ProfileError::InvalidConfig`] for a rate or buffer out of range,
    /// [`ProfileError::AlreadySampling`] if this thread has a sampler, and
    /// [`ProfileError::Os`] if the signal handler or the timer could not be set up.
    pub fn start(config: SamplerConfig) -> Result<Sampler, ProfileError> {
        if !(1..=100_000).contains(&config.hz) {
            return Err(ProfileError::InvalidConfig(format!(
                "sampling rate {} Hz is not in 1..=100000",
                config.hz
            )));
        }
        let slots = config.buffer_bytes / std::mem::size_of::<RawFrame>();
        if slots < 1 + MAX_FRAMES {
            return Err(ProfileError::InvalidConfig(format!(
                "a buffer of {} bytes cannot hold one sample",
                config.buffer_bytes
            )));
        }
        if !ACTIVE.get().is_null() {
            return Err(ProfileError::AlreadySampling);
        }
        install_handler()?;
        crate::trap::handler::ensure_alt_stack();
        // Zeroed memory from the allocator (fresh pages for a large ring): committed only
        // as samples fill it, not written here.
        let ring = Box::<[UnsafeCell<RawFrame>]>::new_zeroed_slice(slots);
        // SAFETY: `RawFrame` is integers only, for which all-zero is a valid value, and
        // `UnsafeCell` has the layout of its content.
        let ring = unsafe { ring.assume_init() };
        let state = Box::new(SamplerState {
            enabled: AtomicBool::new(false),
            ring,
            used: AtomicUsize::new(0),
            start: now(),
            counts: Default::default(),
            dropped: AtomicU64::new(0),
            resident_end: AtomicUsize::new(0),
            stub_ranges: crate::arch::stub_ranges(),
        });
        state
            .resident_end
            .store(state.ring.as_ptr() as usize, Ordering::Relaxed);
        state.make_resident(0);
        let interval = Duration::from_nanos(1_000_000_000 / u64::from(config.hz));
        ACTIVE.set(&*state);
        state.enabled.store(true, Ordering::SeqCst);
        let timer = match start_timer(config.clock, interval) {
            Ok(t) => t,
            Err(e) => {
                state.enabled.store(false, Ordering::SeqCst);
                ACTIVE.set(std::ptr::null());
                return Err(e);
            }
        };
        Ok(Sampler {
            state,
            timer,
            interval,
            stopped: false,
            _thread: PhantomData,
        })
    }

    /// Samples recorded so far (not dropped).
    pub fn samples_taken(&self) -> u64 {
        self.state
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops sampling and symbolizes the samples: each distinct PC once, with its
    /// function's name, wasm offset and (for a module with DWARF) source lines and
    /// inlined frames. A module unloaded before `stop` keeps only function indices.
    pub fn stop(mut self) -> Profile {
        self.disable();
        let state = &self.state;
        let used = state.used.load(Ordering::SeqCst).min(state.ring.len());
        let counts = state.counts.each_ref().map(|c| c.load(Ordering::SeqCst));
        let slots: Vec<RawFrame> = state.ring[..used]
            .iter()
            // SAFETY: the handler is disabled; nothing writes the ring any more.
            .map(|slot| unsafe { *slot.get() })
            .collect();
        super::build_profile(
            self.interval,
            &slots,
            counts,
            state.dropped.load(Ordering::SeqCst),
        )
    }

    /// For benchmarks (`benches/profile.rs`), not a stable API: records one sample
    /// exactly as the SIGPROF handler does once entered (activations, classification,
    /// walk, writing into the ring), for a thread inside a host function called from
    /// wasm, then forgets it (the ring's position is restored, so any number of calls
    /// fit). With `in_wasm`, the sample is taken as if the newest host call had just
    /// returned: at its return address, with the registers of its exit record and that
    /// exit cleared (a `Wasm` sample walked from the interrupted registers); otherwise
    /// in this host function (a `Host` sample walked from the exits). Returns the kind
    /// and the number of frames, or `None` if the ring had no room.
    ///
    /// Call it on the thread that started the sampler. The handler ignores SIGPROF
    /// while it runs.
    #[doc(hidden)]
    pub fn bench_sample(&self, in_wasm: bool) -> Option<(SampleKind, usize)> {
        let state = &*self.state;
        if self.stopped {
            return None;
        }
        let newest = crate::runtime::entry::thread_records().next();
        // SAFETY: `thread_records` yields live activations of this thread.
        let exit = newest.map(|a| ActivationSnapshot::of(unsafe { &*a }));
        let regs = match exit {
            Some(a) if in_wasm => SampleRegs {
                pc: a.exit_pc,
                fp: a.exit_fp,
                sp: a.exit_sp,
            },
            _ => SampleRegs {
                pc: Sampler::bench_sample as *const () as usize,
                fp: 0,
                sp: 0,
            },
        };
        state.enabled.store(false, Ordering::SeqCst);
        compiler_fence(Ordering::SeqCst);
        let used = state.used.load(Ordering::Relaxed);
        let result = record(state, regs, |activations| {
            if let (true, Some(newest)) = (in_wasm, activations.first_mut()) {
                newest.exit_fp = 0;
                newest.exit_sp = 0;
                newest.exit_pc = 0;
            }
        });
        state.used.store(used, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        state.enabled.store(true, Ordering::SeqCst);
        result
    }

    /// For the single-step oracle (`tests/profile_step.rs`), not a stable API: records
    /// one sample of this thread interrupted at `regs` exactly as the SIGPROF handler
    /// does (activations, the PC's kind, classification, walk, writing into the ring),
    /// copies its frames (newest first) to `frames` and the activations it read (newest
    /// first) to `activations`, then forgets it (the ring's position is restored).
    /// Returns the sample's kind, the kind of code at the PC, the number of frames
    /// copied and of activations, or `None` if the ring had no room. Allocates nothing
    /// and takes no lock: callable from a signal handler on the thread that started the
    /// sampler (which ignores SIGPROF while it runs).
    #[doc(hidden)]
    pub fn step_sample(
        &self,
        regs: SampleRegs,
        frames: &mut [RawFrame],
        activations: &mut [ActivationSnapshot],
    ) -> Option<(SampleKind, PcKind, usize, usize)> {
        let state = &*self.state;
        if self.stopped {
            return None;
        }
        state.enabled.store(false, Ordering::SeqCst);
        compiler_fence(Ordering::SeqCst);
        let used = state.used.load(Ordering::Relaxed);
        let mut n_activations = 0;
        let result = record(state, regs, |read| {
            n_activations = read.len().min(activations.len());
            activations[..n_activations].copy_from_slice(&read[..n_activations]);
        });
        let pc_kind = REGISTRY.with_view(|view| pc_kind(view, state, regs.pc));
        let result = result.map(|(kind, n)| {
            let n = n.min(frames.len());
            for (i, out) in frames[..n].iter_mut().enumerate() {
                // SAFETY: the sample's frames are at `used + 1 ..` inside the ring (it
                // was recorded there just above), and the handler does not run.
                *out = unsafe { *state.ring[used + 1 + i].get() };
            }
            (kind, pc_kind, n, n_activations)
        });
        state.used.store(used, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        state.enabled.store(true, Ordering::SeqCst);
        result
    }

    /// Stops the timer and detaches the state from the handler (once).
    fn disable(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // The handler runs on this thread only: once it sees `enabled` false (or the
        // cleared thread-local) it records nothing, and it cannot be in the middle of a
        // sample while this thread runs here.
        self.state.enabled.store(false, Ordering::SeqCst);
        ACTIVE.set(std::ptr::null());
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the timer was created by `start_timer` and is deleted once.
        unsafe { libc::timer_delete(self.timer) };
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.disable();
    }
}

/// The monotonic clock.
fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock and out pointer; `clock_gettime` is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

fn os_error(what: &'static str) -> ProfileError {
    ProfileError::Os {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// Arms a timer on `clock` that sends this thread SIGPROF every `interval`.
fn start_timer(clock: SampleClock, interval: Duration) -> Result<libc::timer_t, ProfileError> {
    let clock = match clock {
        SampleClock::ThreadCpuTime => libc::CLOCK_THREAD_CPUTIME_ID,
        SampleClock::Wall => libc::CLOCK_MONOTONIC,
    };
    // SAFETY: sigevent is plain data; all-zero is a valid value to fill in.
    let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
    sev.sigev_notify = libc::SIGEV_THREAD_ID;
    sev.sigev_signo = libc::SIGPROF;
    // SAFETY: gettid has no preconditions.
    sev.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: valid clock id and pointers.
    if unsafe { libc::timer_create(clock, &mut sev, &mut timer) } != 0 {
        return Err(os_error("timer_create"));
    }
    let ts = libc::timespec {
        tv_sec: interval.as_secs() as libc::time_t,
        tv_nsec: interval.subsec_nanos() as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts,
        it_value: ts,
    };
    // SAFETY: `timer` was just created; `spec` is valid.
    if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
        let e = os_error("timer_settime");
        // SAFETY: as above.
        unsafe { libc::timer_delete(timer) };
        return Err(e);
    }
    Ok(timer)
}

/// The disposition SIGPROF had before ours (chained to on a thread without a
/// sampler), once installed.
static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);
/// `PREVIOUS`'s handler, readable from the signal handler: 0 for none (default or
/// ignore), else the `sa_sigaction` word, with `PREVIOUS_SIGINFO` saying how to call it.
static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_SIGINFO: AtomicBool = AtomicBool::new(false);

/// Installs the SIGPROF handler (once per process).
fn install_handler() -> Result<(), ProfileError> {
    let mut previous = PREVIOUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if previous.is_some() {
        return Ok(());
    }
    // SAFETY: sigaction is plain data; all-zero is a valid (empty) value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SA_SIGINFO: the handler reads the interrupted registers from the ucontext.
    // SA_RESTART: a system call the sample interrupted restarts instead of failing
    //   with EINTR (the program does not know it is being sampled).
    // SA_ONSTACK: on the thread's alternate stack when it has one (a sample of a
    //   thread near the end of its stack must not overflow it).
    // No SA_NODEFER: SIGPROF stays blocked while its handler runs.
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    action.sa_sigaction = on_sigprof as *const () as usize;
    // SAFETY: a valid sigset to initialize.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a valid signal and pointers to initialized sigactions.
    if unsafe { libc::sigaction(libc::SIGPROF, &action, &mut old) } != 0 {
        return Err(os_error("sigaction(SIGPROF)"));
    }
    if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
        PREVIOUS_SIGINFO.store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::SeqCst);
        PREVIOUS_HANDLER.store(old.sa_sigaction, Ordering::SeqCst);
    }
    *previous = Some(old);
    Ok(())
}

extern "C" fn on_sigprof(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    ucontext: *mut libc::c_void,
) {
    // SAFETY: reading this thread's errno location is async-signal-safe.
    let errno = unsafe { *libc::__errno_location() };
    let state = ACTIVE.get();
    if state.is_null() {
        chain(signal, info, ucontext);
    } else {
        // SAFETY: a non-null ACTIVE points to the live state of this thread's sampler
        // (cleared before the state is freed, on this thread).
        let state = unsafe { &*state };
        if state.enabled.load(Ordering::Relaxed) {
            // SAFETY: installed with SA_SIGINFO: `ucontext` is the kernel's.
            let regs = unsafe { crate::arch::trap_registers(ucontext) };
            record(
                state,
                SampleRegs {
                    pc: regs.pc,
                    fp: regs.fp,
                    sp: regs.sp,
                },
                |_| {},
            );
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a SIGPROF of a thread without a sampler to the handler ours replaced.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let handler = PREVIOUS_HANDLER.load(Ordering::SeqCst);
    if handler == 0 {
        return;
    }
    if PREVIOUS_SIGINFO.load(Ordering::SeqCst) {
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            // SAFETY: with SA_SIGINFO the word is a three-argument handler.
            unsafe { std::mem::transmute(handler) };
        f(signal, info, ucontext);
    } else {
        let f: extern "C" fn(libc::c_int) =
            // SAFETY: without SA_SIGINFO the word is a one-argument handler.
            unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

/// Records one sample of this thread, interrupted at `regs`. Runs in the handler.
/// `adjust` may change the activations read from the thread's records before the walk
/// (the handler's does nothing; [`Sampler::bench_sample`] pretends the newest host call
/// has returned). Returns the sample's kind and frames, or `None` if it was dropped.
#[inline(always)]
fn record(
    state: &SamplerState,
    regs: SampleRegs,
    adjust: impl FnOnce(&mut [ActivationSnapshot]),
) -> Option<(SampleKind, usize)> {
    let used = state.used.load(Ordering::Relaxed);
    let Some(room) = state.ring.len().checked_sub(used) else {
        state.dropped.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    if room < 1 + MAX_FRAMES {
        state.dropped.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    state.make_resident(used + 1 + MAX_FRAMES);
    // Not initialized up front (4 KiB to zero on every sample): only the first `n`
    // slots are written and read.
    let mut activations = [const { MaybeUninit::<ActivationSnapshot>::uninit() }; MAX_ACTIVATIONS];
    let mut n = 0;
    let mut more_activations = false;
    for a in crate::runtime::entry::thread_records() {
        let Some(slot) = activations.get_mut(n) else {
            more_activations = true;
            break;
        };
        // SAFETY: `thread_records` yields live, complete activations of this thread.
        slot.write(ActivationSnapshot::of(unsafe { &*a }));
        n += 1;
    }
    // SAFETY: the first `n` slots were written just above.
    let activations = unsafe {
        &mut *(std::ptr::slice_from_raw_parts_mut(activations.as_mut_ptr(), n)
            as *mut [ActivationSnapshot])
    };
    adjust(activations);
    let activations = &*activations;
    // SAFETY: slots `used..used + 1 + MAX_FRAMES` are inside the ring (checked above),
    // written only here, and read only after the handler is disabled.
    let out: &mut [RawFrame] =
        unsafe { std::slice::from_raw_parts_mut(state.ring[used + 1].get(), MAX_FRAMES) };
    let classified = REGISTRY.with_view(|view| {
        let kind = pc_kind(view, state, regs.pc);
        // The stack words a walk reads: from the interrupted SP (for wasm code, which
        // runs on this stack) or the lowest recorded exit, to the oldest entry.
        let mut lo = usize::MAX;
        let mut hi = 0;
        for a in activations {
            if a.exit_sp != 0 {
                lo = lo.min(a.exit_sp.saturating_sub(crate::arch::EXIT_CHECK_BELOW_SP));
            }
            hi = hi.max(a.entry_fp);
        }
        if matches!(kind, PcKind::Wasm(_)) {
            lo = lo.min(regs.sp);
        }
        // SAFETY: `[lo, hi)` runs from a live SP or recorded exit of this thread to the
        // entry FP of its oldest activation: this thread's stack, mapped, above the
        // interrupted frame (the handler runs below it or on the alternate stack), and
        // no other thread writes it.
        let reader = unsafe { LiveStackReader::new(lo, hi) };
        classify(regs, kind, activations, &reader, view, out)
    });
    let truncated = usize::from(classified.truncated || more_activations) << 8;
    let elapsed = elapsed_ns(&state.start, &now());
    // SAFETY: slot `used` is inside the ring, as above.
    unsafe {
        *state.ring[used].get() = RawFrame {
            pc: classified.kind as usize | truncated,
            module: elapsed as usize,
            func_index: classified.frames as u32,
            text_offset: 0,
        }
    };
    state
        .used
        .store(used + 1 + classified.frames, Ordering::Relaxed);
    state.counts[classified.kind as usize].fetch_add(1, Ordering::Relaxed);
    Some((classified.kind, classified.frames))
}

/// Nanoseconds from `start` to `end` (0 if the clock went backwards).
fn elapsed_ns(start: &libc::timespec, end: &libc::timespec) -> u64 {
    let s = start.tv_sec as i128 * 1_000_000_000 + start.tv_nsec as i128;
    let e = end.tv_sec as i128 * 1_000_000_000 + end.tv_nsec as i128;
    u64::try_from(e - s).unwrap_or(0)
}

/// What code `pc` is in.
fn pc_kind(view: &RegistryView<'_>, state: &SamplerState, pc: usize) -> PcKind {
    if let Some((loc, data)) = view.lookup_with_data(pc) {
        // SAFETY: the module is registered in the view's snapshot, so its
        // `ModuleInner` (whose first field is the registration) is alive until the
        // view ends.
        let module = unsafe { &*(data as *const ModuleInner) };
        return PcKind::Wasm(module.frame_states.state_at(loc.text_offset));
    }
    if view.module_text_at(pc).is_some() {
        return PcKind::Trampoline;
    }
    if state.stub_ranges.iter().any(|r| r.contains(&pc)) {
        return PcKind::Stub;
    }
    PcKind::Host
}
