//! Wiring: which handlers, translations and subscriptions one bounded context's app runs, and
//! the validation of all of it at `build()`.

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::deps::Deps;
use crate::error::{BuildError, Problem};
use crate::event::EventKind;
use crate::registry::{
    DomainEventInfo, FromTranslation, HandlerInfo, IntegrationEventInfo, Origin, Registry, TypeRef,
};
use crate::store::{StoredEvent, TypedEvent};

/// One thing that handles an event in an app: a `#[handles]` function, or a `From` translation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// A `#[handles]` function.
    Handler(&'static HandlerInfo),
    /// `impl From<&A> for I`.
    From {
        translation: FromTranslation,
        source: &'static str,
    },
}

/// A handler with the name its deliveries are recorded under.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) target: Target,
}

/// What one app runs.
#[derive(Debug, Default)]
pub(crate) struct Wiring {
    routes: Vec<Route>,
    by_event: HashMap<TypeId, Vec<usize>>,
    by_name: HashMap<String, usize>,
    /// The routes of each consumed contract, by (contract, version).
    pub(crate) consumed: BTreeMap<(&'static str, u32), Vec<usize>>,
    /// Domain events by name, to decode recorded rows.
    domain_events: HashMap<&'static str, &'static DomainEventInfo>,
    /// Contracts by name, to decode received messages.
    contracts: HashMap<&'static str, Vec<&'static IntegrationEventInfo>>,
}

impl Wiring {
    /// The route recorded under `name`.
    pub(crate) fn route(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name).map(|&i| &self.routes[i])
    }

    /// The names of every route, under which their deliveries are recorded.
    pub(crate) fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|route| route.name.as_str())
    }

    /// The route at `index`.
    pub(crate) fn route_at(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// The domain event recorded under `name`.
    pub(crate) fn domain_event(&self, name: &str) -> Option<&'static DomainEventInfo> {
        self.domain_events.get(name).copied()
    }

    /// The contract `name` at `version`.
    pub(crate) fn contract(
        &self,
        name: &str,
        version: u32,
    ) -> Option<&'static IntegrationEventInfo> {
        self.contracts
            .get(name)?
            .iter()
            .copied()
            .find(|c| c.version() == version)
    }

    /// The route names of each event type, as the publisher records them.
    pub(crate) fn routes_by_event(&self) -> HashMap<TypeId, Vec<String>> {
        self.by_event
            .iter()
            .map(|(&event, routes)| {
                let names = routes.iter().map(|&i| self.routes[i].name.clone());
                (event, names.collect())
            })
            .collect()
    }

    /// The domain event types declared in this context, handled or not.
    pub(crate) fn domain_event_types(&self) -> HashSet<TypeId> {
        let events = self.domain_events.values();
        events.map(|event| event.event().type_id()).collect()
    }

    /// The typed event of a stored one: as recorded in this process, or decoded from its JSON
    /// by the type this program declares for its name (and version).
    pub(crate) fn typed(&self, event: &StoredEvent) -> Result<TypedEvent, DecodeError> {
        if let Some(typed) = &event.typed {
            return Ok(typed.clone());
        }
        let decoder = match event.kind {
            EventKind::Domain => self.domain_event(&event.name).and_then(|e| e.decoder()),
            EventKind::Integration => self
                .contract(&event.name, event.version)
                .and_then(|c| c.decoder()),
        };
        let decoder = decoder.ok_or_else(|| DecodeError::Unknown {
            kind: event.kind,
            name: event.name.clone(),
            version: event.version,
        })?;
        decoder
            .decode(&event.payload)
            .map_err(|source| DecodeError::Json {
                name: event.name.clone(),
                source,
            })
    }

    /// Adds a route; returns `false`, adding nothing, if its name is taken.
    #[must_use]
    fn add(&mut self, event: TypeId, route: Route) -> bool {
        let index = self.routes.len();
        if self.by_name.insert(route.name.clone(), index).is_some() {
            return false;
        }
        self.by_event.entry(event).or_default().push(index);
        self.routes.push(route);
        true
    }
}

/// Why a stored or received event could not be turned back into its type.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// This program declares no such event.
    #[error("no {kind} named `{name}`{} in this program", version_text(.kind, .version))]
    Unknown {
        kind: EventKind,
        name: String,
        version: u32,
    },
    /// The JSON does not fit the type.
    #[error("`{name}` could not be decoded")]
    Json {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The version of a contract, for an error's text.
fn version_text(kind: &EventKind, version: &u32) -> String {
    match kind {
        EventKind::Domain => String::new(),
        EventKind::Integration => format!(" at version {version}"),
    }
}

/// The name a From translation's deliveries are recorded under.
fn from_route_name(source: &str, contract: &IntegrationEventInfo) -> String {
    format!("From<&{source}> for {}", contract.name())
}

/// The database in whose transactions the app's store works.
#[derive(Debug, Clone, Copy)]
struct StoreDatabase {
    type_id: TypeId,
    /// Its `std::any::type_name`, where known.
    type_name: Option<&'static str>,
}

/// The `std::any::type_name` of the database type `id`: tidings' own databases are known, and so
/// is any database a handler's transaction names.
fn database_name(id: TypeId, registry: &Registry) -> Option<&'static str> {
    #[cfg(feature = "sqlite")]
    if id == TypeId::of::<sqlx::Sqlite>() {
        return Some(std::any::type_name::<sqlx::Sqlite>());
    }
    #[cfg(feature = "postgres")]
    if id == TypeId::of::<sqlx::Postgres>() {
        return Some(std::any::type_name::<sqlx::Postgres>());
    }
    registry
        .handlers()
        .iter()
        .filter_map(|handler| handler.transaction())
        .find(|db| db.type_id() == id)
        .map(|db| db.type_name())
}

/// What is wrong with `handler` taking a transaction of database `db` in an app whose store
/// works in `store`'s, if anything. A `db` of the store's name that is another type is the same
/// database from another version of sqlx: a build with two versions of sqlx.
fn transaction_problem(
    handler: &HandlerInfo,
    db: TypeRef,
    store: Option<StoreDatabase>,
) -> Option<Problem> {
    match store {
        Some(store) if store.type_id == db.type_id() => None,
        Some(StoreDatabase {
            type_name: Some(name),
            ..
        }) if name == db.type_name() => Some(Problem::SqlxVersionMismatch {
            handler: handler.name(),
            origin: handler.origin(),
            database: name,
        }),
        _ => Some(Problem::TransactionOfAnotherDatabase {
            handler: handler.name(),
            origin: handler.origin(),
            database: db.name(),
        }),
    }
}

/// Works out what the app of `context` runs from `registry`, with `deps` provided and a store
/// that works in the transactions of the database `transactions` (if any), and checks it all;
/// every problem is reported at once.
pub(crate) fn wire(
    context: &str,
    registry: &Registry,
    deps: &Deps,
    transactions: Option<TypeId>,
) -> Result<Wiring, BuildError> {
    let mut problems = Vec::new();
    let mut wiring = Wiring::default();
    let store_database = transactions.map(|id| StoreDatabase {
        type_id: id,
        type_name: database_name(id, registry),
    });

    if registry.is_empty() {
        problems.push(Problem::NothingLinked);
    }

    // Scope: with no `tidings::context!` declaration, everything belongs to every app.
    let declared = !registry.contexts().is_empty();
    let names: Vec<&'static str> = registry.contexts().iter().map(|c| c.name()).collect();
    let known = !declared || names.contains(&context);
    if !known {
        problems.push(Problem::UndeclaredContext {
            context: context.to_owned(),
            declared: names,
        });
    }
    let in_scope =
        |origin: Origin| !declared || registry.context_of(origin.module_path()) == Some(context);
    if declared {
        for handler in registry.handlers() {
            if registry
                .context_of(handler.origin().module_path())
                .is_none()
            {
                problems.push(Problem::HandlerOutsideContexts {
                    handler: handler.name(),
                    origin: handler.origin(),
                });
            }
        }
    }

    // Contracts: one type per name and version, in the whole program.
    let mut contracts: BTreeMap<(&'static str, u32), Vec<&IntegrationEventInfo>> = BTreeMap::new();
    for contract in registry.integration_events() {
        contracts
            .entry((contract.contract(), contract.version()))
            .or_default()
            .push(contract);
        wiring
            .contracts
            .entry(contract.contract())
            .or_default()
            .push(contract);
    }
    for ((contract, version), claimants) in contracts {
        if claimants.len() > 1 {
            problems.push(Problem::ContractClaimedTwice {
                contract,
                version,
                claimants: claimants.iter().map(|c| (c.name(), c.origin())).collect(),
            });
        }
    }

    // Domain events of this context, by name.
    for event in registry
        .domain_events()
        .iter()
        .filter(|e| in_scope(e.origin()))
    {
        if let Some(other) = wiring.domain_events.insert(event.name(), event) {
            problems.push(Problem::DomainEventNameTaken {
                name: event.name(),
                first: other.origin(),
                second: event.origin(),
            });
        }
    }

    // Handlers of this context, and their dependencies.
    for handler in registry.handlers().iter().filter(|h| in_scope(h.origin())) {
        for dep in handler.deps() {
            if !deps.contains(dep.type_id()) {
                problems.push(Problem::MissingDependency {
                    handler: handler.name(),
                    origin: handler.origin(),
                    dependency: dep.name(),
                });
            }
        }
        if let Some(db) = handler.transaction()
            && let Some(problem) = transaction_problem(handler, db, store_database)
        {
            problems.push(problem);
        }
        let route = Route {
            name: handler.path(),
            target: Target::Handler(handler),
        };
        if !wiring.add(handler.event().type_id(), route) {
            problems.push(Problem::HandlerNameTaken {
                path: handler.path(),
                origin: handler.origin(),
            });
        }
    }

    // Translations: each `from` source of this context has exactly one.
    for contract in registry.integration_events() {
        for source in contract.sources() {
            let source_in_scope = registry
                .domain_events()
                .iter()
                .find(|e| e.event().type_id() == source.event().type_id())
                .is_none_or(|e| in_scope(e.origin()));
            if !source_in_scope {
                continue;
            }
            let handlers: Vec<&HandlerInfo> = registry
                .translation_handlers(contract.event().type_id(), source.event().type_id())
                .filter(|h| in_scope(h.origin()))
                .collect();
            let from_impl = source.from_impl();
            let mut translations: Vec<String> = handlers
                .iter()
                .map(|h| {
                    format!(
                        "handler `{}` ({}, at {})",
                        h.name(),
                        h.origin().module_path(),
                        h.origin()
                    )
                })
                .collect();
            if from_impl.is_some() {
                translations.push(format!(
                    "`impl From<&{}> for {}`",
                    source.event().name(),
                    contract.name()
                ));
            }
            match (translations.len(), from_impl) {
                (0, _) => problems.push(Problem::Untranslated {
                    contract: contract.name(),
                    source_event: source.event().name(),
                    origin: contract.origin(),
                }),
                (1, Some(translation)) => {
                    let route = Route {
                        name: from_route_name(source.event().name(), contract),
                        target: Target::From {
                            translation,
                            source: source.event().name(),
                        },
                    };
                    // A From route's name holds two type names: it cannot clash.
                    let _ = wiring.add(source.event().type_id(), route);
                }
                (1, None) => {}
                _ => problems.push(Problem::TranslatedTwice {
                    contract: contract.name(),
                    source_event: source.event().name(),
                    translations,
                }),
            }
        }
    }

    // Subscriptions: the contracts this context's inbound handlers consume.
    for (index, route) in wiring.routes.iter().enumerate() {
        if let Target::Handler(handler) = route.target
            && handler.event_kind() == EventKind::Integration
        {
            match registry
                .integration_events()
                .iter()
                .find(|c| c.event().type_id() == handler.event().type_id())
            {
                Some(contract) => wiring
                    .consumed
                    .entry((contract.contract(), contract.version()))
                    .or_default()
                    .push(index),
                None => problems.push(Problem::ContractNotLinked {
                    handler: handler.name(),
                    origin: handler.origin(),
                    contract: handler.event().name(),
                }),
            }
        }
    }

    // An undeclared context has no handler either: that problem is already reported.
    if wiring.routes.is_empty() && !registry.is_empty() && known {
        problems.push(Problem::NoHandler {
            context: context.to_owned(),
        });
    }

    if problems.is_empty() {
        Ok(wiring)
    } else {
        Err(BuildError::new(context.to_owned(), problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::HandlerFn;
    use crate::event::EventKind;

    /// The name of the store's database, as another version of sqlx would give it for its own
    /// type of that name.
    fn same_name() -> &'static str {
        "sqlx_sqlite::database::Sqlite"
    }

    /// The database type of another version of sqlx: another type.
    struct OtherSqlite;

    fn handler(db: TypeRef) -> &'static HandlerInfo {
        Box::leak(Box::new(HandlerInfo::new(
            "save_product",
            TypeRef::of::<()>("ProductPutOnSale"),
            EventKind::Domain,
            &[],
            None,
            Some(db),
            false,
            HandlerFn::Sync(|_, _| Ok(None)),
            Origin::new("shop::catalog", "src/catalog.rs", 12, 1),
        )))
    }

    fn store() -> Option<StoreDatabase> {
        struct StoreSqlite;
        Some(StoreDatabase {
            type_id: TypeId::of::<StoreSqlite>(),
            type_name: Some(same_name()),
        })
    }

    #[test]
    fn a_database_of_the_stores_name_and_another_type_is_another_sqlx_version() {
        let db = TypeRef::with_type_name(TypeId::of::<OtherSqlite>(), "Sqlite", same_name);
        let problem = transaction_problem(handler(db), db, store()).unwrap();
        assert!(matches!(
            problem,
            Problem::SqlxVersionMismatch {
                handler: "save_product",
                database: "sqlx_sqlite::database::Sqlite",
                ..
            }
        ));
        assert_eq!(
            problem.to_string(),
            "handler `save_product` (shop::catalog, at src/catalog.rs:12:1) takes a transaction of \
             `sqlx_sqlite::database::Sqlite` from another version of sqlx than tidings' (0.9), so \
             the app's store, which works in tidings' `sqlx_sqlite::database::Sqlite`, cannot give \
             it one: make the handler's crate depend on sqlx 0.9, with the features it uses, in \
             place of the other version (`cargo tree -d -i sqlx` lists the versions of sqlx in the \
             build)"
        );
    }

    #[test]
    fn a_database_of_another_name_is_another_database() {
        fn postgres() -> &'static str {
            "sqlx_postgres::database::Postgres"
        }
        let db = TypeRef::with_type_name(TypeId::of::<OtherSqlite>(), "Postgres", postgres);
        let problem = transaction_problem(handler(db), db, store()).unwrap();
        assert!(matches!(
            problem,
            Problem::TransactionOfAnotherDatabase {
                database: "Postgres",
                ..
            }
        ));
        let no_store = transaction_problem(handler(db), db, None).unwrap();
        assert!(matches!(
            no_store,
            Problem::TransactionOfAnotherDatabase { .. }
        ));
    }

    #[test]
    fn the_stores_database_is_no_problem() {
        let db = TypeRef::with_type_name(TypeId::of::<OtherSqlite>(), "Sqlite", same_name);
        let store = StoreDatabase {
            type_id: TypeId::of::<OtherSqlite>(),
            type_name: None,
        };
        assert_eq!(transaction_problem(handler(db), db, Some(store)), None);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn tidings_own_databases_have_their_names() {
        let registry = crate::registry::registry();
        assert_eq!(
            database_name(TypeId::of::<sqlx::Sqlite>(), registry),
            Some(std::any::type_name::<sqlx::Sqlite>())
        );
        assert_eq!(database_name(TypeId::of::<OtherSqlite>(), registry), None);
    }
}
