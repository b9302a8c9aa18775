//! A second unwinder for the oracle, independent of the frame-pointer walk: the wasm
//! frames of each activation found with the call frame information of the modules'
//! `.eh_frame` (Cranelift's CFI, read back with gimli's reader: `EhFrame` +
//! `UnwindContext`).
//!
//! Each activation starts from the registers of its recorded exit: the youngest wasm
//! frame's RBP is `exit_fp`, its RSP at the call out is `exit_sp`, and its PC is the
//! return address the call pushed, `[exit_sp - 8]`. For each frame the CFI row at
//! `pc - 1` (a return address: the call is just before it) gives the CFA from RBP or
//! RSP, and the rules of the return address and of RBP (saved at an offset from the
//! CFA, or unchanged); the caller's RSP is the CFA. The walk goes on while the return
//! address is inside a wasm function body; the register set it ends with must have
//! RBP = the activation's `entry_fp` (the entry trampoline's frame).
//!
//! gimli's `read` feature comes through `cranelift_codegen::gimli` (cranelift-codegen
//! 0.112 enables it), the same gimli 0.29 that wrote the section, so no second gimli
//! is needed.

use cranelift_codegen::gimli::{
    self,
    read::{BaseAddresses, CfaRule, CieOrFde, EhFrame, RegisterRule, UnwindContext, UnwindSection},
    EhFrameOffset, LittleEndian, X86_64,
};
use framewalk::unwind::{ActivationInfo, StackReader};
use framewalk::Module;

/// One frame as the CFI unwinder finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CfiFrame {
    /// Position of the activation in the list (newest = 0), as the walker counts.
    pub activation_index: usize,
    /// The return address into this frame's function.
    pub pc: usize,
    /// RBP in this frame (its frame pointer).
    pub fp: usize,
}

struct ModuleCfi {
    /// Keeps the code and its loaded `.eh_frame` alive.
    module: Module,
    bases: BaseAddresses,
    /// (start, end, offset in the section) of each FDE, sorted by start.
    fdes: Vec<(u64, u64, EhFrameOffset<usize>)>,
    /// Wasm function bodies (start, end), sorted.
    bodies: Vec<(usize, usize)>,
}

/// The CFI of some loaded modules.
pub struct CfiTables {
    modules: Vec<ModuleCfi>,
}

impl CfiTables {
    /// Reads the `.eh_frame` of each module (as loaded: its PC-relative addresses are
    /// resolved against the address of the loaded section).
    pub fn new(modules: &[&Module]) -> Result<CfiTables, String> {
        let mut out = Vec::new();
        for m in modules {
            let loaded = m.eh_frame();
            let eh_frame = EhFrame::new(loaded, LittleEndian);
            let bases = BaseAddresses::default()
                .set_eh_frame(loaded.as_ptr() as u64)
                .set_text(m.text_range().start as u64);
            let mut fdes = Vec::new();
            let mut entries = eh_frame.entries(&bases);
            while let Some(entry) = entries.next().map_err(|e| format!("eh_frame: {e}"))? {
                if let CieOrFde::Fde(partial) = entry {
                    let fde = partial
                        .parse(UnwindSection::cie_from_offset)
                        .map_err(|e| format!("eh_frame FDE: {e}"))?;
                    let start = fde.initial_address();
                    fdes.push((start, start + fde.len(), EhFrameOffset(fde.offset())));
                }
            }
            fdes.sort_by_key(|f| f.0);
            let mut bodies: Vec<(usize, usize)> = m
                .function_symbols()
                .map(|f| (f.start, f.start + f.len))
                .collect();
            bodies.sort();
            out.push(ModuleCfi {
                module: (*m).clone(),
                bases,
                fdes,
                bodies,
            });
        }
        Ok(CfiTables { modules: out })
    }

    /// The module with a wasm function body containing the return address `ra` (its
    /// call instruction ends at `ra`, so `ra - 1` is inside the body).
    fn module_of_return_address(&self, ra: usize) -> Option<&ModuleCfi> {
        let at = ra.checked_sub(1)?;
        self.modules.iter().find(|m| {
            let i = m.bodies.partition_point(|b| b.0 <= at);
            i > 0 && at < m.bodies[i - 1].1
        })
    }

    /// Unwinds the wasm frames of every activation in `activations` (newest first)
    /// from its recorded exit, reading the stack through `stack`.
    pub fn unwind(
        &self,
        activations: &[ActivationInfo],
        stack: &dyn StackReader,
    ) -> Result<Vec<CfiFrame>, String> {
        let mut ctx = UnwindContext::new();
        let mut frames = Vec::new();
        let read = |addr: u64| {
            usize::try_from(addr)
                .ok()
                .and_then(|a| stack.read_word(a))
                .ok_or_else(|| format!("CFI unwind: stack word {addr:#x} is unreadable"))
        };
        for a in activations {
            if a.exit_sp == 0 {
                return Err(format!("activation {} has no exit recorded", a.index));
            }
            // The registers at the exit.
            let mut rbp = a.exit_fp as u64;
            let mut rsp = a.exit_sp as u64;
            let mut pc = read(rsp - 8)?;
            while let Some(m) = self.module_of_return_address(pc) {
                if frames.len() > 1_000_000 {
                    return Err("CFI unwind does not end".into());
                }
                frames.push(CfiFrame {
                    activation_index: a.index,
                    pc,
                    fp: rbp as usize,
                });
                let at = pc as u64 - 1;
                let i = m.fdes.partition_point(|f| f.0 <= at);
                let offset = match i.checked_sub(1).map(|i| &m.fdes[i]) {
                    Some((_, end, offset)) if at < *end => *offset,
                    _ => return Err(format!("CFI unwind: no FDE covers pc {pc:#x}")),
                };
                let eh_frame = EhFrame::new(m.module.eh_frame(), LittleEndian);
                let fde = eh_frame
                    .fde_from_offset(&m.bases, offset, EhFrame::cie_from_offset)
                    .map_err(|e| format!("CFI unwind: FDE at {offset:?}: {e}"))?;
                let row = fde
                    .unwind_info_for_address(&eh_frame, &m.bases, &mut ctx, at)
                    .map_err(|e| format!("CFI unwind at {pc:#x}: {e}"))?;
                let cfa = match row.cfa() {
                    CfaRule::RegisterAndOffset { register, offset } => {
                        let base = match *register {
                            X86_64::RBP => rbp,
                            X86_64::RSP => rsp,
                            r => return Err(format!("CFA from register {r:?} at {pc:#x}")),
                        };
                        base.wrapping_add_signed(*offset)
                    }
                    other => return Err(format!("CFA rule {other:?} at {pc:#x}")),
                };
                let restore = |reg: gimli::Register, current: u64| match row.register(reg) {
                    RegisterRule::Offset(o) => read(cfa.wrapping_add_signed(o)).map(|v| v as u64),
                    RegisterRule::SameValue => Ok(current),
                    other => Err(format!("rule {other:?} for {reg:?} at {pc:#x}")),
                };
                let ra = restore(X86_64::RA, 0)?;
                let caller_rbp = restore(X86_64::RBP, rbp)?;
                if cfa <= rsp {
                    return Err(format!("CFA {cfa:#x} is not above RSP {rsp:#x} at {pc:#x}"));
                }
                pc = ra as usize;
                rbp = caller_rbp;
                rsp = cfa;
            }
            if rbp != a.entry_fp as u64 {
                return Err(format!(
                    "CFI unwind of activation {} left wasm with RBP {rbp:#x} at pc {pc:#x}, \
                     not at its entry frame {:#x}",
                    a.index, a.entry_fp
                ));
            }
        }
        Ok(frames)
    }
}
