//! The event catalog: the registry rendered for people, and the checks that keep contracts
//! stable.
//!
//! [`catalog()`](crate::catalog()) builds a [`Catalog`] of this program: per bounded context,
//! its domain events with the handlers and translations that react to each, the contracts it
//! publishes (name, version, key, the domain events they come `from`, the JSON Schema of the
//! payload) and the contracts it consumes, with their inbound handlers. It renders as
//!
//! - [Markdown](Catalog::markdown): a page with a section per context, tables a reviewer reads,
//!   and the Mermaid diagram;
//! - a [Mermaid flowchart](Catalog::mermaid): use-case events → domain handlers and
//!   translations → contracts → the handlers of the contexts that consume them;
//! - [JSON](Catalog::to_json): the same model, stable, so that the catalogs of several programs
//!   [combine](Catalog::combine) into one view of the system;
//! - [AsyncAPI 3.0](Catalog::asyncapi), a document per context and broker.
//!
//! [`Docs`] writes these files and, in a test, fails when the committed ones differ from what
//! the code produces; [`Catalog::check_contracts`] fails a test when a contract breaks the
//! snapshot of its schema (see [its rules](Catalog::check_contracts)).
//!
//! # Schemas
//!
//! Every event's JSON Schema (draft-07) is derived from its type by the event macros, with
//! [schemars](https://docs.rs/schemars), honouring serde's attributes (`rename`,
//! `rename_all`, `skip`, `default`, `tag`, `flatten`, ..): the schema describes the JSON that
//! a consumer reads. A type of yours that an event holds is marked `#[tidings::schema]`; a
//! type of another crate that schemars does not know takes `#[schemars(with = "String")]` (or
//! the type its JSON form matches) on the field.
//!
//! # The JSON form
//!
//! [`Catalog::to_json`] writes, and [`Catalog::from_json`] reads, this document (format 1;
//! fields are added, never renamed or removed, within a format):
//!
//! ```json
//! {
//!   "format": 1,
//!   "contexts": [{
//!     "name": "catalog",
//!     "domain_events": [{
//!       "name": "ProductPutOnSale", "path": "shop::catalog::ProductPutOnSale",
//!       "handlers": [{ "name": "project_product", "path": "shop::catalog::project_product" }],
//!       "translations": [{ "contract": "catalog.product-updated", "version": 1,
//!                          "handler": { "name": "publish_product_updated", "path": ".." } }],
//!       "schema": { "$schema": "http://json-schema.org/draft-07/schema#", ".." : ".." }
//!     }],
//!     "publishes": [{
//!       "name": "catalog.product-updated", "version": 1,
//!       "type": "ProductUpdatedIntegrationEvent", "path": "shop::catalog::ProductUpdatedIntegrationEvent",
//!       "key": "product_id", "from": ["ProductPutOnSale"], "schema": { ".." : ".." }
//!     }],
//!     "consumes": [{
//!       "name": "catalog.product-updated", "version": 1, "type": "..", "path": "..",
//!       "handlers": [{ "name": "index_product", "path": "shop::search::index_product",
//!                      "runs_use_cases": true }],
//!       "schema": { ".." : ".." }
//!     }]
//!   }]
//! }
//! ```
//!
//! A translation whose `handler` is absent is an `impl From<&DomainEvent>`. A handler's
//! `runs_use_cases` (absent: `false`) says that it takes `DomainEvents`: it runs use cases of its
//! context, whose domain events start flows of their own. A consumed
//! contract's `schema` is the consumer's own type's: what it expects of the producer.

mod asyncapi;
mod compat;
mod docs;
mod markdown;
mod mermaid;
mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::registry::{HandlerInfo, Origin, Registry, registry};

pub use asyncapi::Broker;
pub use compat::{Change, ChangeKind, ContractProblem, ContractsReport, Direction};
pub use docs::{Docs, OVERWRITE_ENV, refresh_command};
pub(crate) use schema::of as schema_of;

/// The format of the catalog's JSON form that this version writes and reads.
pub const FORMAT: u32 = 1;

/// The catalog of this program: every bounded context with its events, handlers, translations
/// and contracts, from the [registry](crate::registry()).
///
/// Items under a `tidings::context!("name")` declaration belong to context `name`; items under
/// none belong to a context named after their crate (declare `tidings::context!("catalog")`
/// at a crate's root to name it).
///
/// ```
/// use tidings::prelude::*;
///
/// #[domain_event]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductPutOnSale { pub product_id: String }
///
/// #[integration_event(name = "catalog.product-updated", from = ProductPutOnSale, key = product_id)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct ProductUpdatedIntegrationEvent { pub product_id: String }
///
/// impl From<&ProductPutOnSale> for ProductUpdatedIntegrationEvent {
///     fn from(event: &ProductPutOnSale) -> Self { Self { product_id: event.product_id.clone() } }
/// }
///
/// let catalog = tidings::catalog();
/// let contract = &catalog.contexts[0].publishes[0];
/// assert_eq!((contract.name.as_str(), contract.version), ("catalog.product-updated", 1));
/// assert_eq!(contract.from, ["ProductPutOnSale"]);
/// assert_eq!(contract.schema["required"], serde_json::json!(["product_id"]));
/// assert!(catalog.markdown().contains("`catalog.product-updated`"));
/// ```
pub fn catalog() -> Catalog {
    Catalog::of(registry())
}

/// The catalog of one or more programs: see [`catalog()`](crate::catalog()).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// The format of the JSON form: [`FORMAT`].
    pub format: u32,
    /// The bounded contexts, by name.
    pub contexts: Vec<Context>,
}

/// One bounded context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The context's name, as given to `Tidings::builder`.
    pub name: String,
    /// Its domain events, by name.
    pub domain_events: Vec<DomainEventEntry>,
    /// The contracts it publishes, by name and version.
    pub publishes: Vec<PublishedContract>,
    /// The contracts it consumes, by name and version.
    pub consumes: Vec<ConsumedContract>,
}

/// A domain event and what reacts to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEventEntry {
    /// The type's name.
    pub name: String,
    /// The type's path, with its module.
    pub path: String,
    /// The domain handlers, by name.
    pub handlers: Vec<HandlerEntry>,
    /// The translations into contracts.
    pub translations: Vec<TranslationEntry>,
    /// The JSON Schema (draft-07) of its JSON form.
    pub schema: serde_json::Value,
}

/// A `#[handles]` function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HandlerEntry {
    /// The function's name.
    pub name: String,
    /// Its path, with its module.
    pub path: String,
    /// Whether it runs use cases of its context (it takes `DomainEvents`), whose domain events
    /// it publishes; which ones, only its code says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runs_use_cases: bool,
}

/// A translation of a domain event into a contract.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TranslationEntry {
    /// The contract's name.
    pub contract: String,
    /// The contract's version.
    pub version: u32,
    /// The translation handler; `None` for an `impl From<&DomainEvent>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<HandlerEntry>,
}

/// A contract a context publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedContract {
    /// The contract's name on the wire.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The type's name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The type's path, with its module.
    pub path: String,
    /// The field that is the ordering key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The domain events it is the reaction to.
    pub from: Vec<String>,
    /// The JSON Schema (draft-07) of the payload.
    pub schema: serde_json::Value,
}

/// A contract a context consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumedContract {
    /// The contract's name on the wire.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The consumer's type's name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The consumer's type's path, with its module.
    pub path: String,
    /// The inbound handlers, by name.
    pub handlers: Vec<HandlerEntry>,
    /// The JSON Schema (draft-07) of the consumer's type: what it expects of the producer.
    pub schema: serde_json::Value,
}

/// What reading, writing or checking the catalog can fail with.
///
/// Its `Debug` form is its message, so that a test's `unwrap()` or `?` prints a failure readably.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The catalog has no context of that name.
    #[error("the catalog has no context `{context}`; it has {}", names(.known))]
    UnknownContext {
        /// The name asked for.
        context: String,
        /// The contexts it has.
        known: Vec<String>,
    },
    /// A file could not be read or written.
    #[error("could not {action} `{}`: {source}", .path.display())]
    Io {
        /// `read`, `write` or `remove`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not the JSON it should be.
    #[error("`{what}` is not {expected}: {source}")]
    Json {
        /// The file or text read.
        what: String,
        /// What it should be.
        expected: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A catalog's JSON is of a format this version does not read.
    #[error(
        "the catalog's JSON is of format {0}, and this version of tidings reads format {FORMAT}: generate it with the same version of tidings"
    )]
    Format(u32),
    /// Committed documents differ from what the code produces.
    #[error("{}", stale_docs(.dir, .stale, .command))]
    StaleDocs {
        /// The documents' folder.
        dir: PathBuf,
        /// Each file that differs or is missing.
        stale: Vec<PathBuf>,
        /// The command that writes them anew.
        command: String,
    },
    /// Contracts break their snapshots, or their consumers' expectations.
    #[error("{}", compat::contract_problems(.problems, .command))]
    Contracts {
        /// Every problem found.
        problems: Vec<ContractProblem>,
        /// The command that writes the snapshots that may be written.
        command: String,
    },
}

impl fmt::Debug for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `` `a`, `b` `` or "none".
fn names(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

fn stale_docs(dir: &std::path::Path, stale: &[PathBuf], command: &str) -> String {
    let files: String = stale
        .iter()
        .map(|file| format!("\n  {}", file.display()))
        .collect();
    format!(
        "the catalog's documents in `{}` are not what the code produces; these differ or are missing:{files}\nWrite them anew with\n  {command}\nand commit them.",
        dir.display()
    )
}

impl Catalog {
    /// The catalog of the items of `registry`.
    pub fn of(registry: &Registry) -> Catalog {
        Builder { registry }.build()
    }

    /// The catalogs of several programs, combined into one view of the system: the contexts of
    /// all, and those of one name merged.
    ///
    /// ```
    /// use tidings::catalog::Catalog;
    ///
    /// let catalog = r#"{"format":1,"contexts":[{"name":"catalog","domain_events":[],
    ///     "publishes":[{"name":"catalog.product-updated","version":1,"type":"ProductUpdatedIntegrationEvent",
    ///     "path":"catalog::ProductUpdatedIntegrationEvent","from":["ProductPutOnSale"],"schema":{}}],"consumes":[]}]}"#;
    /// let search = r#"{"format":1,"contexts":[{"name":"search","domain_events":[],"publishes":[],
    ///     "consumes":[{"name":"catalog.product-updated","version":1,"type":"ProductUpdatedIntegrationEvent",
    ///     "path":"search::ProductUpdatedIntegrationEvent","handlers":[{"name":"index_product","path":"search::index_product"}],"schema":{}}]}]}"#;
    /// let system = Catalog::combine([Catalog::from_json(catalog)?, Catalog::from_json(search)?]);
    /// assert_eq!(system.contexts.len(), 2);
    /// assert!(system.mermaid().contains("-.-> search__handler__index_product"));
    /// # Ok::<(), tidings::catalog::CatalogError>(())
    /// ```
    pub fn combine(catalogs: impl IntoIterator<Item = Catalog>) -> Catalog {
        let mut contexts: BTreeMap<String, Context> = BTreeMap::new();
        for context in catalogs.into_iter().flat_map(|c| c.contexts) {
            match contexts.get_mut(&context.name) {
                None => {
                    contexts.insert(context.name.clone(), context);
                }
                Some(merged) => merged.merge(context),
            }
        }
        Catalog {
            format: FORMAT,
            contexts: contexts.into_values().collect(),
        }
    }

    /// The context named `name`.
    pub fn context(&self, name: &str) -> Result<&Context, CatalogError> {
        self.contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| CatalogError::UnknownContext {
                context: name.to_owned(),
                known: self.contexts.iter().map(|c| c.name.clone()).collect(),
            })
    }

    /// The JSON form, pretty-printed, with a final newline: see [the module](self).
    pub fn to_json(&self) -> String {
        pretty(&serde_json::to_value(self).expect("a catalog is plain JSON data"))
    }

    /// A catalog from its JSON form, such as another program's.
    pub fn from_json(json: &str) -> Result<Catalog, CatalogError> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let json_error = |source| CatalogError::Json {
            what: "the text given".to_owned(),
            expected: "a catalog's JSON form",
            source,
        };
        let Format { format } = serde_json::from_str(json).map_err(json_error)?;
        if format != FORMAT {
            return Err(CatalogError::Format(format));
        }
        serde_json::from_str(json).map_err(json_error)
    }

    /// The contract `name` version `version` as a context of this catalog publishes it.
    pub fn published(&self, name: &str, version: u32) -> Option<(&Context, &PublishedContract)> {
        self.contexts.iter().find_map(|context| {
            let contract = context
                .publishes
                .iter()
                .find(|c| c.name == name && c.version == version)?;
            Some((context, contract))
        })
    }
}

impl Context {
    /// Adds what `other`, a context of the same name, has and this one does not.
    fn merge(&mut self, other: Context) {
        fn extend<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
            for item in from {
                if !into.contains(&item) {
                    into.push(item);
                }
            }
        }
        extend(&mut self.domain_events, other.domain_events);
        extend(&mut self.publishes, other.publishes);
        extend(&mut self.consumes, other.consumes);
        self.domain_events.sort_by(|a, b| a.name.cmp(&b.name));
        self.publishes
            .sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        self.consumes
            .sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    }
}

/// `value` as pretty JSON with a final newline, its keys sorted: the form of every file the
/// catalog writes, the same whatever serde_json's features in a build (`preserve_order` keeps
/// keys in the order they came).
pub(crate) fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).expect("a JSON value prints");
    text.push('\n');
    text
}

/// `value` with the keys of every object in order.
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Builds a catalog from the registry.
struct Builder<'r> {
    registry: &'r Registry,
}

impl Builder<'_> {
    /// The context of an item declared at `origin`.
    fn context_of(&self, origin: Origin) -> String {
        self.registry
            .context_of(origin.module_path())
            .unwrap_or(origin.crate_name())
            .to_owned()
    }

    fn context(contexts: &mut BTreeMap<String, Context>, name: String) -> &mut Context {
        contexts.entry(name.clone()).or_insert_with(|| Context {
            name,
            domain_events: Vec::new(),
            publishes: Vec::new(),
            consumes: Vec::new(),
        })
    }

    fn build(&self) -> Catalog {
        let registry = self.registry;
        let mut contexts = BTreeMap::new();
        for event in registry.domain_events() {
            let id = event.event().type_id();
            let reacting = registry
                .handlers()
                .iter()
                .filter(|h| h.event().type_id() == id);
            let mut handlers = Vec::new();
            let mut translations = Vec::new();
            for handler in reacting {
                match handler
                    .produces()
                    .and_then(|p| self.contract_of(p.type_id()))
                {
                    Some((contract, version)) => translations.push(TranslationEntry {
                        contract,
                        version,
                        handler: Some(entry(handler)),
                    }),
                    None => handlers.push(entry(handler)),
                }
            }
            for contract in registry.integration_events() {
                let by_from = contract
                    .sources()
                    .iter()
                    .any(|s| s.event().type_id() == id && s.has_from_impl());
                if by_from {
                    translations.push(TranslationEntry {
                        contract: contract.contract().to_owned(),
                        version: contract.version(),
                        handler: None,
                    });
                }
            }
            handlers.sort();
            translations.sort();
            Self::context(&mut contexts, self.context_of(event.origin()))
                .domain_events
                .push(DomainEventEntry {
                    name: event.name().to_owned(),
                    path: path(event.origin(), event.name()),
                    handlers,
                    translations,
                    schema: event.schema(),
                });
        }
        for contract in registry.integration_events() {
            let sources = contract.sources();
            if sources.is_empty() {
                continue;
            }
            // Published by the context of the domain events it comes from.
            let owner = registry
                .domain_events()
                .iter()
                .find(|e| e.event().type_id() == sources[0].event().type_id())
                .map_or(contract.origin(), |e| e.origin());
            Self::context(&mut contexts, self.context_of(owner))
                .publishes
                .push(PublishedContract {
                    name: contract.contract().to_owned(),
                    version: contract.version(),
                    type_name: contract.name().to_owned(),
                    path: path(contract.origin(), contract.name()),
                    key: contract.key().map(str::to_owned),
                    from: sources
                        .iter()
                        .map(|s| s.event().name().to_owned())
                        .collect(),
                    schema: contract.schema(),
                });
        }
        let mut consumed: BTreeMap<(String, String, u32), (ConsumedContract, Vec<HandlerEntry>)> =
            BTreeMap::new();
        for handler in registry.handlers() {
            if handler.event_kind() != EventKind::Integration {
                continue;
            }
            let id = handler.event().type_id();
            let Some(contract) = registry
                .integration_events()
                .iter()
                .find(|c| c.event().type_id() == id)
            else {
                continue;
            };
            let context = self.context_of(handler.origin());
            let key = (context, contract.contract().to_owned(), contract.version());
            consumed
                .entry(key)
                .or_insert_with(|| {
                    let contract = ConsumedContract {
                        name: contract.contract().to_owned(),
                        version: contract.version(),
                        type_name: contract.name().to_owned(),
                        path: path(contract.origin(), contract.name()),
                        handlers: Vec::new(),
                        schema: contract.schema(),
                    };
                    (contract, Vec::new())
                })
                .1
                .push(entry(handler));
        }
        for ((context, ..), (mut contract, mut handlers)) in consumed {
            handlers.sort();
            contract.handlers = handlers;
            Self::context(&mut contexts, context)
                .consumes
                .push(contract);
        }
        let mut contexts: Vec<Context> = contexts.into_values().collect();
        for context in &mut contexts {
            context.domain_events.sort_by(|a, b| a.name.cmp(&b.name));
            context
                .publishes
                .sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        }
        Catalog {
            format: FORMAT,
            contexts,
        }
    }

    /// The contract name and version of the integration event of type `id`.
    fn contract_of(&self, id: std::any::TypeId) -> Option<(String, u32)> {
        self.registry
            .integration_events()
            .iter()
            .find(|c| c.event().type_id() == id)
            .map(|c| (c.contract().to_owned(), c.version()))
    }
}

/// A handler as the catalog names it.
fn entry(handler: &HandlerInfo) -> HandlerEntry {
    HandlerEntry {
        name: handler.name().to_owned(),
        path: handler.path(),
        runs_use_cases: handler.publishes_domain_events(),
    }
}

/// `module::name`.
fn path(origin: Origin, name: &str) -> String {
    format!("{}::{name}", origin.module_path())
}
