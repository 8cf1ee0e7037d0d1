//! The catalog's documents as files: written by a program, checked by a test.

use std::path::{Path, PathBuf};

use super::{Broker, Catalog, CatalogError};

/// The environment variable that makes the catalog's checks write what they compare with:
/// `TIDINGS_CATALOG=overwrite` writes the documents that [`Docs::check`] finds stale, and the
/// contract snapshots that [`Catalog::check_contracts`] finds missing or changed compatibly.
pub const OVERWRITE_ENV: &str = "TIDINGS_CATALOG";

/// Whether the checks run in refresh mode: [`OVERWRITE_ENV`] is `overwrite`.
pub(super) fn overwrite() -> bool {
    std::env::var(OVERWRITE_ENV).is_ok_and(|value| value == "overwrite")
}

/// The command that runs the current test in refresh mode, such as
/// `TIDINGS_CATALOG=overwrite cargo test -p shop -- tests::catalog_is_current`: from the
/// package cargo runs and the test's name (its thread's), where they are known.
///
/// ```
/// assert!(tidings::catalog::refresh_command().starts_with("TIDINGS_CATALOG=overwrite cargo test"));
/// ```
pub fn refresh_command() -> String {
    let mut command = format!("{OVERWRITE_ENV}=overwrite cargo test");
    if let Ok(package) = std::env::var("CARGO_PKG_NAME") {
        command.push_str(&format!(" -p {package}"));
    }
    let thread = std::thread::current();
    if let Some(test) = thread.name().filter(|name| *name != "main") {
        command.push_str(&format!(" -- {test}"));
    }
    command
}

/// Writes `text` to `path`, creating its folder.
pub(super) fn write_file(path: &Path, text: &str) -> Result<(), CatalogError> {
    let io = |source| CatalogError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// The catalog's documents, to write into a folder or to check there:
///
/// | file | what |
/// |---|---|
/// | `catalog.md` | [Markdown](Catalog::markdown), the Mermaid diagram included |
/// | `catalog.mmd` | the [Mermaid](Catalog::mermaid) diagram alone |
/// | `catalog.json` | the [JSON form](Catalog::to_json) |
/// | `asyncapi/<context>.<broker>.json` | the [AsyncAPI](Catalog::asyncapi) document of each context that publishes or consumes a contract, for each broker (NATS, RabbitMQ, Kafka and Pub/Sub unless [set](Docs::brokers)) |
///
/// ```no_run
/// // In a program: `cargo run -- catalog` writes them.
/// tidings::catalog().docs().write("docs/catalog")?;
///
/// // In a test: fails when the committed files are not what the code produces, with the
/// // command that writes them anew.
/// tidings::catalog().docs().check("docs/catalog")?;
/// # Ok::<(), tidings::catalog::CatalogError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Docs<'c> {
    catalog: &'c Catalog,
    brokers: Vec<Broker>,
}

impl Catalog {
    /// The catalog's documents: see [`Docs`].
    pub fn docs(&self) -> Docs<'_> {
        Docs {
            catalog: self,
            brokers: vec![
                Broker::nats(),
                Broker::rabbitmq(),
                Broker::kafka(),
                Broker::pubsub(),
            ],
        }
    }
}

impl Docs<'_> {
    /// The brokers to write AsyncAPI documents for.
    pub fn brokers(mut self, brokers: impl IntoIterator<Item = Broker>) -> Self {
        self.brokers = brokers.into_iter().collect();
        self
    }

    /// Each document's path, relative to the folder, and its text.
    pub fn files(&self) -> Result<Vec<(PathBuf, String)>, CatalogError> {
        let catalog = self.catalog;
        let mut files = vec![
            (PathBuf::from("catalog.md"), catalog.markdown()),
            (PathBuf::from("catalog.mmd"), catalog.mermaid()),
            (PathBuf::from("catalog.json"), catalog.to_json()),
        ];
        for context in &catalog.contexts {
            if context.publishes.is_empty() && context.consumes.is_empty() {
                continue;
            }
            for broker in &self.brokers {
                let document = catalog.asyncapi(&context.name, broker)?;
                let name = format!("{}.{}.json", context.name, broker.protocol());
                files.push((Path::new("asyncapi").join(name), super::pretty(&document)));
            }
        }
        Ok(files)
    }

    /// Writes the documents into `dir`, creating it; returns the paths written.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, CatalogError> {
        let dir = dir.as_ref();
        let mut written = Vec::new();
        for (file, text) in self.files()? {
            let path = dir.join(file);
            write_file(&path, &text)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Checks that the documents in `dir` are what the code produces: the test that keeps
    /// committed docs from going stale. Fails with every file that differs, is missing, or is
    /// an AsyncAPI document the code no longer produces, and the command that writes them
    /// anew; with `TIDINGS_CATALOG=overwrite` ([`OVERWRITE_ENV`]), writes (and removes) them
    /// instead.
    pub fn check(&self, dir: impl AsRef<Path>) -> Result<(), CatalogError> {
        let dir = dir.as_ref();
        let overwrite = overwrite();
        let mut stale = Vec::new();
        let files = self.files()?;
        let produced: Vec<PathBuf> = files.iter().map(|(file, _)| dir.join(file)).collect();
        for (file, text) in files {
            let path = dir.join(&file);
            let committed = match std::fs::read_to_string(&path) {
                Ok(committed) => Some(committed),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(CatalogError::Io {
                        action: "read",
                        path,
                        source,
                    });
                }
            };
            // Line endings as a checkout may have changed them.
            if committed.map(|c| c.replace("\r\n", "\n")).as_deref() == Some(text.as_str()) {
                continue;
            }
            if overwrite {
                write_file(&path, &text)?;
                eprintln!("tidings: wrote `{}`", path.display());
            } else {
                stale.push(path);
            }
        }
        // AsyncAPI documents of a context or broker the code no longer has.
        for path in json_files(&dir.join("asyncapi"))? {
            if produced.contains(&path) {
                continue;
            }
            if overwrite {
                std::fs::remove_file(&path).map_err(|source| CatalogError::Io {
                    action: "remove",
                    path: path.clone(),
                    source,
                })?;
                eprintln!("tidings: removed `{}`", path.display());
            } else {
                stale.push(path);
            }
        }
        if stale.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::StaleDocs {
                dir: dir.to_owned(),
                stale,
                command: refresh_command(),
            })
        }
    }
}

/// The `.json` files in `dir`, sorted; none if it does not exist.
pub(super) fn json_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let io = |source| CatalogError::Io {
        action: "read",
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(source)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
