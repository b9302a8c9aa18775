//! `Linker<T>`: definitions by module and name, from which modules are instantiated
//! (their imports looked up by the names they declare, not by position).
//!
//! A definition is one of two kinds:
//!
//! - a value of one store ([`Linker::define`], [`Linker::instance`],
//!   [`Linker::module`]): a function, memory, table or global that lives in that store.
//!   Using it with another store is refused ([`LinkError::WrongStore`]); the handle is
//!   never dereferenced there, so a definition whose store was dropped is harmless.
//! - a host function of no store ([`Linker::func_wrap`], [`Linker::func_new`]): the
//!   closure is kept once, and each instantiation makes the function in the store it
//!   instantiates in (that store owns it, like any [`Func`]). So one linker with only
//!   such definitions serves any number of stores.
//!
//! Invariants: a name is defined at most once unless shadowing is allowed, in which
//! case the later definition replaces the earlier. Instantiation checks every import
//! (present, same store, compatible type) before it makes any host function, so a
//! refused module leaves the store as it was.

use super::engine::Engine;
use super::error::{Error, LinkError};
use super::func::{Func, FuncMaker, IntoFunc};
use super::instance::{import_matches, Extern, Instance};
use super::module::Module;
use super::store::{AsStore, Caller, Store, StoreOpaque};
use super::values::Val;
use crate::trap::HostError;
use crate::types::{ExternType, FuncType};
use std::collections::HashMap;
use std::sync::Arc;

/// What a name is defined as.
enum Definition<T> {
    /// A function, memory, table or global of one store.
    Extern(Extern),
    /// A host function made in each store that needs it.
    HostFunc {
        /// Its type, for checking imports before it is made.
        ty: FuncType,
        /// Makes it in a store.
        make: FuncMaker<T>,
    },
}

impl<T> Clone for Definition<T> {
    fn clone(&self) -> Self {
        match self {
            Definition::Extern(e) => Definition::Extern(e.clone()),
            Definition::HostFunc { ty, make } => Definition::HostFunc {
                ty: ty.clone(),
                make: Arc::clone(make),
            },
        }
    }
}

/// Definitions by module and name, to instantiate modules with: the import
/// `(import "env" "f" ...)` takes what is defined as `"env" "f"`.
///
/// `T` is the host data of the stores it serves ([`Store<T>`]). Host functions
/// ([`func_wrap`](Linker::func_wrap), [`func_new`](Linker::func_new)) belong to no
/// store: each instantiation makes them in its store. Values of a store
/// ([`define`](Linker::define), [`instance`](Linker::instance),
/// [`module`](Linker::module)) serve only that store; another store gets
/// [`LinkError::WrongStore`] if it imports them.
///
/// A name is defined once: a second definition fails with [`LinkError::Duplicate`]
/// unless [`allow_shadowing`](Linker::allow_shadowing) is on, in which case it
/// replaces the first. [`Instance::new`] with imports in the module's order remains
/// for callers that resolve imports themselves.
///
/// ```
/// use framewalk::{Caller, Engine, Linker, Module, Store};
///
/// let engine = Engine::new(Default::default())?;
/// let mut linker = Linker::new(&engine);
/// linker.func_wrap("env", "double", |_: Caller<'_, ()>, x: i32| x * 2)?;
///
/// let library = Module::new(&engine, br#"
///     (module
///       (import "env" "double" (func $double (param i32) (result i32)))
///       (func (export "quadruple") (param i32) (result i32)
///         (call $double (call $double (local.get 0)))))
/// "#)?;
/// let app = Module::new(&engine, br#"
///     (module
///       (import "lib" "quadruple" (func $quadruple (param i32) (result i32)))
///       (func (export "main") (result i32) (call $quadruple (i32.const 10))))
/// "#)?;
///
/// let mut store = Store::new(&engine, ());
/// // Instantiates the library and defines its exports as "lib" "...".
/// linker.module(&mut store, "lib", &library)?;
/// let app = linker.instantiate(&mut store, &app)?;
/// let main = app.get_typed_func::<(), i32>(&store, "main")?;
/// assert_eq!(main.call(&mut store, ())?, 40);
///
/// // A module that imports something the linker lacks names it and its type.
/// let needy = Module::new(&engine, br#"(module (import "env" "log" (func (param i32))))"#)?;
/// assert_eq!(
///     linker.instantiate(&mut store, &needy).unwrap_err().to_string(),
///     r#"unknown import: "env" "log" (func (param i32)) has not been defined"#,
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Linker<T> {
    engine: Engine,
    allow_shadowing: bool,
    /// Module name → field name → definition.
    definitions: HashMap<String, HashMap<String, Definition<T>>>,
}

impl<T> Clone for Linker<T> {
    fn clone(&self) -> Self {
        Linker {
            engine: self.engine.clone(),
            allow_shadowing: self.allow_shadowing,
            definitions: self.definitions.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Linker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<(&str, &str)> = self
            .definitions
            .iter()
            .flat_map(|(m, fields)| fields.keys().map(move |n| (m.as_str(), n.as_str())))
            .collect();
        names.sort_unstable();
        f.debug_struct("Linker")
            .field("allow_shadowing", &self.allow_shadowing)
            .field("definitions", &names)
            .finish()
    }
}

impl<T> Linker<T> {
    /// An empty linker for stores and modules of `engine`, with shadowing off.
    pub fn new(engine: &Engine) -> Linker<T> {
        Linker {
            engine: engine.clone(),
            allow_shadowing: false,
            definitions: HashMap::new(),
        }
    }

    /// The engine this linker was made for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether a definition of a name already defined replaces it (`true`) or fails
    /// with [`LinkError::Duplicate`] (`false`, the default).
    pub fn allow_shadowing(&mut self, allow: bool) -> &mut Self {
        self.allow_shadowing = allow;
        self
    }

    /// Defines `module` `name` as `item`, a function, memory, table or global of
    /// `store`. Fails with [`LinkError::WrongStore`] if `item` belongs to another
    /// store, [`LinkError::WrongEngine`] if `store` has another engine, and
    /// [`LinkError::Duplicate`] if the name is defined and shadowing is off.
    pub fn define(
        &mut self,
        store: impl AsStore,
        module: &str,
        name: &str,
        item: impl Into<Extern>,
    ) -> Result<&mut Self, Error> {
        let store = store.store_opaque();
        self.check_engine(store)?;
        let item = item.into();
        if !item.belongs_to(store) {
            return Err(LinkError::WrongStore {
                module: module.to_string(),
                name: name.to_string(),
            }
            .into());
        }
        self.check_free(module, name)?;
        self.insert(module, name, Definition::Extern(item));
        Ok(self)
    }

    /// Defines `module` `name` as a host function running `f`, a closure as
    /// [`Func::wrap`] takes. The closure is kept once; every store that imports the
    /// function gets its own [`Func`] calling it.
    pub fn func_wrap<M, R>(
        &mut self,
        module: &str,
        name: &str,
        f: impl IntoFunc<T, M, R>,
    ) -> Result<&mut Self, Error> {
        self.check_free(module, name)?;
        let (ty, make) = f.into_func_maker();
        self.insert(module, name, Definition::HostFunc { ty, make });
        Ok(self)
    }

    /// Defines `module` `name` as a host function of type `ty` with dynamically typed
    /// parameters and results, running `f` as [`Func::new`] does. Like
    /// [`func_wrap`](Linker::func_wrap), every importing store gets its own [`Func`].
    pub fn func_new(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<(), HostError> + Send + Sync + 'static,
    ) -> Result<&mut Self, Error>
    where
        T: 'static,
    {
        self.check_free(module, name)?;
        let f = Arc::new(f);
        let func_ty = ty.clone();
        let make = move |store: &mut Store<T>| {
            let f = Arc::clone(&f);
            Func::new(store, func_ty.clone(), move |caller, params, results| {
                f(caller, params, results)
            })
        };
        self.insert(
            module,
            name,
            Definition::HostFunc {
                ty,
                make: Arc::new(make),
            },
        );
        Ok(self)
    }

    /// Defines every export of `instance` (of `store`) as `module` and the export's
    /// name. With shadowing off, fails with [`LinkError::Duplicate`] before defining
    /// anything if one of the names is already defined; [`Error::WrongStore`] if the
    /// instance belongs to another store.
    pub fn instance(
        &mut self,
        store: impl AsStore,
        module: &str,
        instance: Instance,
    ) -> Result<&mut Self, Error> {
        let store = store.store_opaque();
        self.check_engine(store)?;
        let exports: Vec<(String, Extern)> = instance
            .module(&store)
            .ok_or(Error::WrongStore)?
            .exports()
            .filter_map(|(name, _)| {
                let item = instance.get_export(&store, name)?;
                Some((name.to_string(), item))
            })
            .collect();
        for (name, _) in &exports {
            self.check_free(module, name)?;
        }
        for (name, item) in exports {
            self.insert(module, &name, Definition::Extern(item));
        }
        Ok(self)
    }

    /// Instantiates `module` in `store` with this linker's definitions, then defines
    /// its exports as `name` and each export's name (see [`Linker::instance`]).
    pub fn module(
        &mut self,
        store: &mut Store<T>,
        name: &str,
        module: &Module,
    ) -> Result<&mut Self, Error> {
        let instance = self.instantiate(&mut *store, module)?;
        self.instance(&*store, name, instance)
    }

    /// Instantiates `module` in `store`, each import taking the definition of its
    /// module and name.
    ///
    /// Every import is checked first, in the module's order; the first that fails
    /// gives the error: [`LinkError::UnknownImport`] (not defined),
    /// [`LinkError::WrongStore`] (defined with another store),
    /// [`LinkError::IncompatibleImport`] (defined with a type that does not satisfy the
    /// import). Then host functions are made in `store` and the module is
    /// instantiated as by [`Instance::new`] (whose errors, such as a trap in the start
    /// function, pass through).
    pub fn instantiate(&self, store: &mut Store<T>, module: &Module) -> Result<Instance, Error> {
        self.check_engine(store.store_opaque())?;
        let resolved = self.resolve(store.store_opaque(), module)?;
        let mut imports = Vec::with_capacity(resolved.len());
        for definition in resolved {
            imports.push(match definition {
                Definition::Extern(e) => e.clone(),
                Definition::HostFunc { make, .. } => Extern::Func(make(store)?),
            });
        }
        Instance::new(store, module, &imports)
    }

    /// What `module` `name` is defined as, for `store`: `None` if it is not defined, or
    /// defined as a value of another store, or the store has another engine. A host
    /// function definition makes a new [`Func`] in `store` at each call.
    pub fn get(&self, store: &mut Store<T>, module: &str, name: &str) -> Option<Extern> {
        if self.check_engine(store.store_opaque()).is_err() {
            return None;
        }
        match self.definitions.get(module)?.get(name)? {
            Definition::Extern(e) => e.belongs_to(store.store_opaque()).then(|| e.clone()),
            Definition::HostFunc { make, .. } => make(store).ok().map(Extern::Func),
        }
    }

    /// The definition of each of `module`'s imports, in order, checked against `store`
    /// and the import's type.
    fn resolve<'a>(
        &'a self,
        store: &StoreOpaque,
        module: &Module,
    ) -> Result<Vec<&'a Definition<T>>, Error> {
        let mut resolved = Vec::new();
        for (m, n, expected) in module.imports() {
            let Some(definition) = self.definitions.get(m).and_then(|fields| fields.get(n)) else {
                return Err(LinkError::UnknownImport {
                    module: m.to_string(),
                    name: n.to_string(),
                    ty: expected,
                }
                .into());
            };
            let actual = match definition {
                Definition::Extern(e) => {
                    if !e.belongs_to(store) {
                        return Err(LinkError::WrongStore {
                            module: m.to_string(),
                            name: n.to_string(),
                        }
                        .into());
                    }
                    e.ty(store)?
                }
                Definition::HostFunc { ty, .. } => ExternType::Func(ty.clone()),
            };
            if !import_matches(&expected, &actual) {
                return Err(LinkError::IncompatibleImport {
                    module: m.to_string(),
                    name: n.to_string(),
                    expected: Box::new(expected),
                    actual: Box::new(actual),
                }
                .into());
            }
            resolved.push(definition);
        }
        Ok(resolved)
    }

    fn check_engine(&self, store: &StoreOpaque) -> Result<(), Error> {
        if Engine::same(&self.engine, store.engine()) {
            Ok(())
        } else {
            Err(LinkError::WrongEngine.into())
        }
    }

    /// Refuses a second definition of `module` `name` while shadowing is off.
    fn check_free(&self, module: &str, name: &str) -> Result<(), Error> {
        let taken = self
            .definitions
            .get(module)
            .is_some_and(|fields| fields.contains_key(name));
        if taken && !self.allow_shadowing {
            return Err(LinkError::Duplicate {
                module: module.to_string(),
                name: name.to_string(),
            }
            .into());
        }
        Ok(())
    }

    fn insert(&mut self, module: &str, name: &str, definition: Definition<T>) {
        self.definitions
            .entry(module.to_string())
            .or_default()
            .insert(name.to_string(), definition);
    }
}
