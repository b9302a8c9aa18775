//! The language: s-expressions, parsed and type-checked up front (compiled lazily,
//! by `codegen`). Nothing here knows about framewalk.

use std::collections::HashMap;

use super::codegen::*;

/// A value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Int,
    Ref,
}

/// A host function (called through the exit trampoline, except [`Host::GcFast`]). The
/// discriminant is what JIT code passes to `host_dispatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub(crate) enum Host {
    /// `resolve(module, index)`: compiles a function on its first call.
    Resolve = 0,
    New,
    Value,
    Consume,
    Gc,
    Reenter,
    Backtrace,
    SetGlobal,
    Global,
    /// `(gc-fast)`: a collection called straight from JIT code, without the exit
    /// trampoline, as a runtime's "fast libcall that is not supposed to walk" would
    /// be. No exit is recorded for it, so its walk fails and it frees nothing.
    GcFast,
}

impl Host {
    pub(crate) const ALL: [Host; 10] = [
        Host::Resolve,
        Host::New,
        Host::Value,
        Host::Consume,
        Host::Gc,
        Host::Reenter,
        Host::Backtrace,
        Host::SetGlobal,
        Host::Global,
        Host::GcFast,
    ];

    pub(crate) fn by_name(name: &str) -> Option<(Host, &'static [Ty], Ty)> {
        Some(match name {
            "new" => (Host::New, &[Ty::Int], Ty::Ref),
            "value" => (Host::Value, &[Ty::Ref], Ty::Int),
            "consume" => (Host::Consume, &[Ty::Ref], Ty::Int),
            "gc" => (Host::Gc, &[], Ty::Int),
            "backtrace" => (Host::Backtrace, &[], Ty::Int),
            "set-global" => (Host::SetGlobal, &[Ty::Ref], Ty::Int),
            "global" => (Host::Global, &[], Ty::Ref),
            "gc-fast" => (Host::GcFast, &[], Ty::Int),
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Eq,
}

/// A typed expression with the source line it starts on.
#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub(crate) line: u32,
    pub(crate) ty: Ty,
    pub(crate) kind: ExprKind,
}

#[derive(Clone, Debug)]
pub(crate) enum ExprKind {
    Int(i64),
    /// A parameter or a `let` binding, by slot (parameters first).
    Local(usize),
    Let(usize, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>),
    Trap(u16),
    Call {
        module: usize,
        func: usize,
        args: Vec<Expr>,
    },
    Host(Host, Vec<Expr>),
    /// `(reenter f n)`: the host calls `f` (of the caller's module) with `n`.
    Reenter(usize, Box<Expr>),
}

/// A function's signature and body (the body is parsed up front, compiled lazily).
#[derive(Clone, Debug)]
pub(crate) struct Function {
    pub(crate) name: String,
    pub(crate) params: Vec<Ty>,
    pub(crate) result: Ty,
    pub(crate) slots: Vec<Ty>,
    pub(crate) body: Expr,
}

#[derive(Clone, Debug)]
pub(crate) struct LangModule {
    pub(crate) name: String,
    pub(crate) functions: Vec<Function>,
}

/// An s-expression with the line of its first token.
#[derive(Clone, Debug)]
pub(crate) enum Sexp {
    Atom(String, u32),
    List(Vec<Sexp>, u32),
}

impl Sexp {
    pub(crate) fn line(&self) -> u32 {
        match self {
            Sexp::Atom(_, l) | Sexp::List(_, l) => *l,
        }
    }
    pub(crate) fn atom(&self) -> Result<&str, String> {
        match self {
            Sexp::Atom(a, _) => Ok(a),
            Sexp::List(_, l) => Err(format!("line {l}: expected a name")),
        }
    }
    pub(crate) fn list(&self) -> Result<&[Sexp], String> {
        match self {
            Sexp::List(items, _) => Ok(items),
            Sexp::Atom(a, l) => Err(format!("line {l}: expected a list, found {a}")),
        }
    }
}

pub(crate) fn read_sexps(source: &str) -> Result<Vec<Sexp>, String> {
    let mut stack: Vec<(Vec<Sexp>, u32)> = vec![(Vec::new(), 0)];
    for (i, text) in source.lines().enumerate() {
        let line = i as u32 + 1;
        let text = text.split(';').next().unwrap_or("");
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        for token in spaced.split_whitespace() {
            match token {
                "(" => stack.push((Vec::new(), line)),
                ")" => {
                    let (items, start) = stack
                        .pop()
                        .filter(|_| !stack.is_empty())
                        .ok_or(format!("line {line}: unbalanced `)`"))?;
                    let parent = stack.last_mut().ok_or(format!("line {line}: unbalanced"))?;
                    parent.0.push(Sexp::List(items, start));
                }
                atom => {
                    let top = stack.last_mut().ok_or(format!("line {line}: unbalanced"))?;
                    top.0.push(Sexp::Atom(atom.to_string(), line));
                }
            }
        }
    }
    match stack.pop() {
        Some((items, _)) if stack.is_empty() => Ok(items),
        _ => Err("unbalanced `(`".into()),
    }
}

pub(crate) fn parse_ty(s: &Sexp) -> Result<Ty, String> {
    match s.atom()? {
        "int" => Ok(Ty::Int),
        "ref" => Ok(Ty::Ref),
        other => Err(format!("line {}: unknown type {other}", s.line())),
    }
}

/// Signatures of every function: `(module, name) -> (index, params, result)`.
pub(crate) type Signatures = HashMap<(String, String), (usize, Vec<Ty>, Ty)>;

/// Parses and type-checks a program.
pub(crate) fn parse_program(source: &str) -> Result<Vec<LangModule>, String> {
    let sexps = read_sexps(source)?;
    // First pass: signatures, so that calls can go forwards and across modules.
    let mut sigs = Signatures::new();
    let mut module_names = Vec::new();
    for m in &sexps {
        let items = m.list()?;
        if items.len() < 2 || items[0].atom()? != "module" {
            return Err(format!("line {}: expected (module NAME ...)", m.line()));
        }
        let mname = items[1].atom()?.to_string();
        for (index, f) in items[2..].iter().enumerate() {
            let f = f.list()?;
            if f.len() != 5 || f[0].atom()? != "fn" {
                return Err(format!(
                    "line {}: expected (fn NAME PARAMS TYPE BODY)",
                    f[0].line()
                ));
            }
            let params = f[2]
                .list()?
                .iter()
                .map(|p| match p.list()? {
                    [_, ty] => parse_ty(ty),
                    _ => Err(format!("line {}: expected (NAME TYPE)", p.line())),
                })
                .collect::<Result<_, _>>()?;
            let key = (mname.clone(), f[1].atom()?.to_string());
            sigs.insert(key, (index, params, parse_ty(&f[3])?));
        }
        module_names.push(mname);
    }
    let mut modules = Vec::new();
    for (mi, m) in sexps.iter().enumerate() {
        let items = m.list()?;
        let mut functions = Vec::new();
        for f in &items[2..] {
            let f = f.list()?;
            let mut scope = Vec::new();
            let mut slots = Vec::new();
            for p in f[2].list()? {
                let p = p.list()?;
                scope.push((p[0].atom()?.to_string(), slots.len()));
                slots.push(parse_ty(&p[1])?);
            }
            let params = slots.clone();
            let result = parse_ty(&f[3])?;
            let mut checker = Checker {
                sigs: &sigs,
                modules: &module_names,
                module: mi,
                scope,
                slots,
            };
            let body = checker.expr(&f[4])?;
            let name = f[1].atom()?.to_string();
            if body.ty != result {
                return Err(format!("{name}: the body is not of the declared type"));
            }
            functions.push(Function {
                name,
                params,
                result,
                slots: checker.slots,
                body,
            });
        }
        modules.push(LangModule {
            name: module_names[mi].clone(),
            functions,
        });
    }
    Ok(modules)
}

pub(crate) struct Checker<'a> {
    pub(crate) sigs: &'a Signatures,
    pub(crate) modules: &'a [String],
    pub(crate) module: usize,
    pub(crate) scope: Vec<(String, usize)>,
    pub(crate) slots: Vec<Ty>,
}

impl Checker<'_> {
    pub(crate) fn function(
        &self,
        name: &str,
        line: u32,
    ) -> Result<(usize, usize, &[Ty], Ty), String> {
        let (m, f) = match name.split_once('.') {
            Some((m, f)) => (m, f),
            None => (self.modules[self.module].as_str(), name),
        };
        let mi = self.modules.iter().position(|n| n == m);
        let sig = self.sigs.get(&(m.to_string(), f.to_string()));
        match (mi, sig) {
            (Some(mi), Some((fi, params, result))) => Ok((mi, *fi, params, *result)),
            _ => Err(format!("line {line}: unknown function {name}")),
        }
    }

    pub(crate) fn expr(&mut self, s: &Sexp) -> Result<Expr, String> {
        let line = s.line();
        let e = |ty, kind| Ok(Expr { line, ty, kind });
        let items = match s {
            Sexp::Atom(a, _) => {
                if let Ok(n) = a.parse::<i64>() {
                    return e(Ty::Int, ExprKind::Int(n));
                }
                let (_, slot) = self
                    .scope
                    .iter()
                    .rev()
                    .find(|(n, _)| n == a)
                    .ok_or(format!("line {line}: unknown name {a}"))?;
                return e(self.slots[*slot], ExprKind::Local(*slot));
            }
            Sexp::List(items, _) => items,
        };
        let head = items
            .first()
            .ok_or(format!("line {line}: empty list"))?
            .atom()?;
        let args = &items[1..];
        let typed = |c: &mut Self, s: &Sexp, ty: Ty| -> Result<Expr, String> {
            let x = c.expr(s)?;
            if x.ty != ty {
                return Err(format!("line {}: expected {ty:?}", s.line()));
            }
            Ok(x)
        };
        let arity = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("line {line}: {head} takes {n} arguments"))
            }
        };
        let op = match head {
            "+" => Some(BinOp::Add),
            "-" => Some(BinOp::Sub),
            "*" => Some(BinOp::Mul),
            "/" => Some(BinOp::Div),
            "<" => Some(BinOp::Lt),
            "=" => Some(BinOp::Eq),
            _ => None,
        };
        if let Some(op) = op {
            arity(2)?;
            let a = typed(self, &args[0], Ty::Int)?;
            let b = typed(self, &args[1], Ty::Int)?;
            return e(Ty::Int, ExprKind::Bin(op, Box::new(a), Box::new(b)));
        }
        match head {
            "let" => {
                arity(2)?;
                let depth = self.scope.len();
                let mut bindings = Vec::new();
                for b in args[0].list()? {
                    let b = b.list()?;
                    if b.len() != 2 {
                        return Err(format!("line {line}: expected (NAME EXPR)"));
                    }
                    let value = self.expr(&b[1])?;
                    let slot = self.slots.len();
                    self.slots.push(value.ty);
                    self.scope.push((b[0].atom()?.to_string(), slot));
                    bindings.push((slot, value));
                }
                let mut body = self.expr(&args[1])?;
                self.scope.truncate(depth);
                for (slot, value) in bindings.into_iter().rev() {
                    body = Expr {
                        line: value.line,
                        ty: body.ty,
                        kind: ExprKind::Let(slot, Box::new(value), Box::new(body)),
                    };
                }
                Ok(body)
            }
            "if" => {
                arity(3)?;
                let c = typed(self, &args[0], Ty::Int)?;
                let t = self.expr(&args[1])?;
                let f = typed(self, &args[2], t.ty)?;
                e(t.ty, ExprKind::If(Box::new(c), Box::new(t), Box::new(f)))
            }
            "null?" => {
                arity(1)?;
                let r = typed(self, &args[0], Ty::Ref)?;
                e(Ty::Int, ExprKind::IsNull(Box::new(r)))
            }
            "trap" => {
                arity(1)?;
                let n = args[0]
                    .atom()?
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n != PROPAGATE)
                    .ok_or(format!("line {line}: a trap code is below {PROPAGATE}"))?;
                e(Ty::Int, ExprKind::Trap(n))
            }
            "reenter" => {
                arity(2)?;
                let (m, f, params, result) = self.function(args[0].atom()?, line)?;
                if m != self.module || params != [Ty::Int] || result != Ty::Int {
                    return Err(format!("line {line}: reenter takes an (int) -> int here"));
                }
                let n = typed(self, &args[1], Ty::Int)?;
                e(Ty::Int, ExprKind::Reenter(f, Box::new(n)))
            }
            _ => {
                let (callee, params, result) = match Host::by_name(head) {
                    Some((host, params, result)) => (Err(host), params.to_vec(), result),
                    None => {
                        let (module, func, params, result) = self.function(head, line)?;
                        (Ok((module, func)), params.to_vec(), result)
                    }
                };
                arity(params.len())?;
                let args = args
                    .iter()
                    .zip(&params)
                    .map(|(a, ty)| typed(self, a, *ty))
                    .collect::<Result<Vec<_>, _>>()?;
                let kind = match callee {
                    Ok((module, func)) => ExprKind::Call { module, func, args },
                    Err(host) => ExprKind::Host(host, args),
                };
                e(result, kind)
            }
        }
    }
}
