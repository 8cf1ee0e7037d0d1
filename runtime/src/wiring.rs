//! Wiring: which handlers, translations and subscriptions one bounded context's app runs, and
//! the validation of all of it at `build()`.

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::event::EventKind;
use crate::handler::Deps;
use crate::registry::{
    DomainEventInfo, FromTranslation, HandlerInfo, IntegrationEventInfo, Origin, Registry,
};

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
    /// The routes of the event type `type_id`.
    pub(crate) fn routes_of(&self, type_id: TypeId) -> impl Iterator<Item = &Route> {
        self.by_event
            .get(&type_id)
            .into_iter()
            .flatten()
            .map(|&i| &self.routes[i])
    }

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

/// Why an app cannot be built: every problem found, each with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BuildError {
    context: String,
    problems: Vec<String>,
}

impl BuildError {
    /// The bounded context of the app.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Every problem, one sentence each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let s = if count == 1 { "" } else { "s" };
        write!(
            f,
            "the `{}` app is not wired right ({count} problem{s}):",
            self.context
        )?;
        for (i, problem) in self.problems.iter().enumerate() {
            write!(f, "\n  {}. {problem}", i + 1)?;
        }
        Ok(())
    }
}

/// Where an item is, for a problem's text.
fn at(origin: Origin) -> String {
    format!("{}, at {origin}", origin.module_path())
}

/// The name a From translation's deliveries are recorded under.
fn from_route_name(source: &str, contract: &IntegrationEventInfo) -> String {
    format!("From<&{source}> for {}", contract.name())
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

    if registry.is_empty() {
        problems.push(
            "no event or handler is linked into this program: if they live in another crate, \
             add `use that_crate as _;` to main.rs (and to each tests/*.rs that needs them)"
                .to_owned(),
        );
    }

    // Scope: with no `tidings::context!` declaration, everything belongs to every app.
    let declared = !registry.contexts().is_empty();
    let names: Vec<&str> = registry.contexts().iter().map(|c| c.name()).collect();
    let known = !declared || names.contains(&context);
    if !known {
        problems.push(format!(
            "no `tidings::context!(\"{context}\")` is declared (declared: {}): declare it in the \
             module of the `{context}` context, or build the app with one of those names",
            names.join(", ")
        ));
    }
    let in_scope =
        |origin: Origin| !declared || registry.context_of(origin.module_path()) == Some(context);
    if declared {
        for handler in registry.handlers() {
            if registry
                .context_of(handler.origin().module_path())
                .is_none()
            {
                problems.push(format!(
                    "handler `{}` ({}) belongs to no bounded context: add `tidings::context!(\"..\")` \
                     to its module or a module above it",
                    handler.name(),
                    at(handler.origin())
                ));
            }
        }
    }

    // Contracts: one type per name and version, in the whole program.
    let mut contracts: BTreeMap<(&str, u32), Vec<&IntegrationEventInfo>> = BTreeMap::new();
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
    for ((name, version), claimants) in &contracts {
        if claimants.len() > 1 {
            let types: Vec<String> = claimants
                .iter()
                .map(|c| format!("`{}` ({})", c.name(), at(c.origin())))
                .collect();
            problems.push(format!(
                "contract `{name}` version {version} is claimed by {}: give each type its own \
                 `name` or `version`",
                types.join(" and ")
            ));
        }
    }

    // Domain events of this context, by name.
    for event in registry
        .domain_events()
        .iter()
        .filter(|e| in_scope(e.origin()))
    {
        if let Some(other) = wiring.domain_events.insert(event.name(), event) {
            problems.push(format!(
                "two domain events of this context are named `{}` ({} and {}): the outbox records \
                 events by name, so rename one",
                event.name(),
                at(other.origin()),
                at(event.origin())
            ));
        }
    }

    // Handlers of this context, and their dependencies.
    for handler in registry.handlers().iter().filter(|h| in_scope(h.origin())) {
        for dep in handler.deps() {
            if !deps.contains(dep.type_id()) {
                problems.push(format!(
                    "handler `{}` ({}) takes `Dep<{}>`, and no value of that type was provided: \
                     add `.provide(..)` with a `{}` to the builder",
                    handler.name(),
                    at(handler.origin()),
                    dep.name(),
                    dep.name()
                ));
            }
        }
        if let Some(db) = handler.transaction()
            && transactions != Some(db.type_id())
        {
            problems.push(format!(
                "handler `{}` ({}) takes `&mut Transaction<'_, {}>`, and the app's store does not \
                 work in that database: give the builder `.store(..)` a store on it (`SqliteStore` \
                 for `Sqlite`, `PostgresStore` for `Postgres`)",
                handler.name(),
                at(handler.origin()),
                db.name()
            ));
        }
        let route = Route {
            name: handler.path(),
            target: Target::Handler(handler),
        };
        if !wiring.add(handler.event().type_id(), route) {
            problems.push(format!(
                "two handlers are named `{}` ({}): deliveries are recorded by handler path, so \
                 rename one (handlers declared inside functions share their module's path)",
                handler.path(),
                at(handler.origin())
            ));
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
            let mut ways: Vec<String> = handlers
                .iter()
                .map(|h| format!("handler `{}` ({})", h.name(), at(h.origin())))
                .collect();
            if from_impl.is_some() {
                ways.push(format!(
                    "`impl From<&{}> for {}`",
                    source.event().name(),
                    contract.name()
                ));
            }
            match (ways.len(), from_impl) {
                (0, _) => problems.push(format!(
                    "`{}` declares `from = {}` ({}), and nothing translates it: write \
                     `#[handles] fn ..(event: &{}) -> {}` or `impl From<&{}> for {}`; if the \
                     translation lives in another crate, add `use that_crate as _;`",
                    contract.name(),
                    source.event().name(),
                    at(contract.origin()),
                    source.event().name(),
                    contract.name(),
                    source.event().name(),
                    contract.name()
                )),
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
                _ => problems.push(format!(
                    "`{}` from `{}` is translated {} times, by {}: keep one, or the contract \
                     would be published more than once per event",
                    contract.name(),
                    source.event().name(),
                    ways.len(),
                    ways.join(" and ")
                )),
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
                None => problems.push(format!(
                    "handler `{}` ({}) consumes `{}`, which is not linked into this program: add \
                     `use that_crate as _;` for the crate that declares it",
                    handler.name(),
                    at(handler.origin()),
                    handler.event().name()
                )),
            }
        }
    }

    // An undeclared context has no handler either: that problem is already reported.
    if wiring.routes.is_empty() && !registry.is_empty() && known {
        problems.push(format!(
            "the `{context}` context has no handler and no translation: its handlers are in a \
             crate that is not linked (add `use that_crate as _;`), or under another context"
        ));
    }

    if problems.is_empty() {
        Ok(wiring)
    } else {
        Err(BuildError {
            context: context.to_owned(),
            problems,
        })
    }
}
