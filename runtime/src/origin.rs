//! [`Origin`]: where an item of the registry is declared.

use std::fmt;

/// Where an item is declared: its module and its place in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    module_path: &'static str,
    file: &'static str,
    line: u32,
    column: u32,
}

impl Origin {
    #[doc(hidden)]
    pub const fn new(
        module_path: &'static str,
        file: &'static str,
        line: u32,
        column: u32,
    ) -> Self {
        Origin {
            module_path,
            file,
            line,
            column,
        }
    }

    /// The module that declares the item, such as `shop::catalog`.
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// The crate that declares the item (the first segment of the module path).
    pub fn crate_name(&self) -> &'static str {
        self.module_path
            .split_once("::")
            .map_or(self.module_path, |(krate, _)| krate)
    }

    /// The source file, relative to the workspace, as `file!()` gives it.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line of the macro attribute.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column of the macro attribute.
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
