//! Per-architecture facts, selected by one `cfg` switch.
//!
//! Everything the rest of framewalk needs to know about a target's machine-level
//! frames lives under `arch/<target>/` and is re-exported here, so the walker in
//! `crate::unwind` never hard-codes an offset. The public items are the drop-in facts
//! (frame layout, signal context); the assembly of framewalk's own runtime (its entry,
//! resume and exits, which know its store layout) is crate-private and built only with
//! the `runtime` feature. Porting framewalk to another
//! architecture means adding `arch/<target>/` with the same items and one more
//! branch below; every other target stops the build with a `compile_error!`.
//!
//! Invariant: the items re-exported here describe the frames that Cranelift emits with
//! `preserve_frame_pointers = true` and that framewalk's trampolines build by hand.
//! A constant that changes here changes what the walker reads, so each one is pinned
//! by a test beside its definition.

cfg_if::cfg_if! {
    if #[cfg(target_arch = "x86_64")] {
        mod x86_64;

        pub use self::x86_64::frame::{
            CALLER_SP_OFFSET, EXIT_CHECK_BELOW_SP, FP_ALIGN, RETURN_ADDR_OFFSET, SAVED_FP_OFFSET,
            STACK_GROWS_DOWN, WORD_SIZE,
        };
        pub use self::x86_64::signal::{fault_address, redirect, trap_registers, TrapRegisters};
        pub use self::x86_64::resume::current_sp;
        // The assembly behind `trap::call_resumable` / `trap::resume`.
        pub(crate) use self::x86_64::resume::{framewalk_call_resumable, framewalk_resume_point};

        // framewalk's own runtime ABI (its array-call entry, its resume-after-trap, its
        // store and host-context layouts): not facts a drop-in runtime builds on.
        #[cfg(feature = "runtime")]
        pub(crate) use self::x86_64::entry::{
            framewalk_enter, framewalk_enter_direct, framewalk_resume, EntryRegs,
            RegisterArgs, ENTRY_FAILED, ENTRY_OK, ENTRY_TRAPPED, REGISTER_ARGS_FLOATS,
            REGISTER_ARGS_INTS,
        };
        // Where the stubs are, for the profiler to classify a PC inside one.
        #[cfg(feature = "profile")]
        pub(crate) use self::x86_64::entry::stub_ranges;
        #[cfg(feature = "runtime")]
        pub(crate) use self::x86_64::exit::{
            framewalk_call_with_exit_frame, framewalk_wasm_to_host, HOST_CTX_WASM_TARGET_OFFSET,
        };
    } else {
        compile_error!(
            "framewalk supports only x86-64: add arch/<target>/ with the frame facts of \
             arch/x86_64/frame.rs and a branch in arch/mod.rs to port it"
        );
    }
}
