//! The future type of the seams' methods.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, the return type of the seams' methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
