//! What `Dep<T>` parameters receive: the values provided to the app's builder.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A dependency of a handler: a value provided once to the app and shared by every handler that
/// asks for it. Cheap to clone; derefs to `T`.
///
/// ```
/// use tidings::prelude::*;
///
/// #[derive(Default)]
/// struct Recommendations { /* a client, a pool, ... */ }
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// #[handles]
/// async fn recalculate_recommendations(event: &ProductPutOnSale, recs: Dep<Recommendations>) {
///     let _recs: &Recommendations = &recs;
/// }
/// ```
pub struct Dep<T>(Arc<T>);

impl<T> Dep<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Dep(Arc::new(value))
    }

    /// The shared pointer behind the dependency.
    pub fn into_arc(self) -> Arc<T> {
        self.0
    }
}

impl<T> From<Arc<T>> for Dep<T> {
    fn from(value: Arc<T>) -> Self {
        Dep(value)
    }
}

impl<T> Clone for Dep<T> {
    fn clone(&self) -> Self {
        Dep(Arc::clone(&self.0))
    }
}

impl<T> Deref for Dep<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Dep<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Dep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The provided dependencies, by type: what `Dep<T>` parameters are filled from.
///
/// ```
/// use tidings::__private::Deps;
///
/// let mut deps = Deps::new();
/// deps.insert(String::from("catalog-db"));
/// assert_eq!(&*deps.get::<String>().unwrap(), "catalog-db");
/// assert!(deps.get::<u32>().is_none());
/// ```
#[derive(Default, Clone)]
pub struct Deps {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Deps {
    /// No dependencies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Provides `value` to every `Dep<T>` parameter; replaces an earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    /// Provides a value that is already shared.
    pub fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    /// The value provided for `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Dep<T>> {
        let value = self.values.get(&TypeId::of::<T>())?;
        Arc::clone(value).downcast::<T>().ok().map(Dep)
    }

    /// Whether a value of the type with this id was provided.
    pub fn contains(&self, type_id: TypeId) -> bool {
        self.values.contains_key(&type_id)
    }
}

impl fmt::Debug for Deps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deps")
            .field("count", &self.values.len())
            .finish_non_exhaustive()
    }
}
