//! Contract compatibility: a contract against the committed snapshot of its schema, or a
//! consumer's expectation against its producer's contract.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::docs::{json_files, overwrite, refresh_command, write_file};
use super::schema::{describe, reference, resolve, types};
use super::{Catalog, CatalogError, PublishedContract, pretty};

/// Which two schemas are compared, and so which changes break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// A contract against the snapshot of its schema. Compatible means that a consumer built
    /// against either schema reads the events of the other: events stay in streams and are
    /// replayed, and consumers move at their own pace.
    Snapshot,
    /// A consumer's expectation (its own type) against the producer's contract. Compatible
    /// means that the consumer reads what the producer publishes: the producer may send fields
    /// the consumer ignores.
    Consumer,
}

/// One difference between two schemas of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The field, as a path (`address.city`, `lines[]` for the items of a list, `prices{}` for
    /// the values of a map, `status(Shipped)` for the content of a variant); empty for the
    /// payload itself.
    pub field: String,
    /// What changed.
    pub kind: ChangeKind,
}

/// What changed, from the earlier schema (the snapshot, or the consumer's) to the later one
/// (the code's, or the producer's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// The field is gone.
    FieldRemoved {
        /// Whether the earlier schema required it.
        required: bool,
        /// A field added with the same schema, which may be its new name.
        renamed_to: Option<String>,
    },
    /// The field is new.
    FieldAdded {
        /// Whether the later schema requires it.
        required: bool,
    },
    /// The field was optional and is required.
    BecameRequired,
    /// The field was required and is optional.
    BecameOptional,
    /// The field's type changed.
    TypeChanged {
        /// The earlier type, in a few words.
        from: String,
        /// The later type.
        to: String,
    },
    /// A variant of an enum is gone.
    VariantRemoved {
        /// The variant.
        variant: String,
    },
    /// An enum has a new variant.
    VariantAdded {
        /// The variant.
        variant: String,
    },
    /// The contract's ordering key changed.
    KeyChanged {
        /// The earlier key field.
        from: Option<String>,
        /// The later key field.
        to: Option<String>,
    },
}

impl Change {
    /// Whether the change breaks consumers, compared in `direction`.
    pub fn is_breaking(&self, direction: Direction) -> bool {
        use ChangeKind::*;
        match (&self.kind, direction) {
            (FieldAdded { required }, Direction::Snapshot)
            | (FieldRemoved { required, .. }, Direction::Consumer) => *required,
            (FieldAdded { .. } | BecameRequired | VariantRemoved { .. }, Direction::Consumer) => {
                false
            }
            _ => true,
        }
    }

    /// The change in a sentence that says why it matters.
    pub fn describe(&self, direction: Direction) -> String {
        use ChangeKind::*;
        let field = if self.field.is_empty() {
            "the payload".to_owned()
        } else {
            format!("field `{}`", self.field)
        };
        let consumer = direction == Direction::Consumer;
        match &self.kind {
            FieldRemoved { renamed_to, .. } => {
                let renamed = renamed_to
                    .as_ref()
                    .map(|to| format!(" (renamed to `{to}`?)"))
                    .unwrap_or_default();
                if consumer {
                    format!(
                        "{field} is not in the producer's payload, and the consumer reads it{renamed}"
                    )
                } else {
                    format!(
                        "{field} was removed{renamed}: consumers built against the snapshot read it"
                    )
                }
            }
            FieldAdded { required: true } if !consumer => format!(
                "{field} is new and required: events published before it lack it (with `#[serde(default)]` it is optional, and the change additive)"
            ),
            FieldAdded { .. } if consumer => {
                format!("{field} is in the producer's payload; the consumer ignores it")
            }
            FieldAdded { .. } => format!("{field} was added, optional"),
            BecameRequired if consumer => {
                format!("{field} is required by the producer, optional for the consumer")
            }
            BecameRequired => {
                format!("{field} became required: events published before may lack it")
            }
            BecameOptional if consumer => format!(
                "{field} is optional in the producer's payload, and the consumer requires it"
            ),
            BecameOptional => format!(
                "{field} is no longer required: consumers built against the snapshot expect it"
            ),
            TypeChanged { from, to } if consumer => {
                format!("{field} is {from} for the consumer, {to} in the producer's payload")
            }
            TypeChanged { from, to } => format!("{field} changed type from {from} to {to}"),
            VariantRemoved { variant } if consumer => format!(
                "variant `{variant}` of {field} is not in the producer's payload; the consumer never receives it"
            ),
            VariantRemoved { variant } => format!(
                "variant `{variant}` of {field} was removed: events published before carry it"
            ),
            VariantAdded { variant } if consumer => format!(
                "the producer sends variant `{variant}` of {field}, which the consumer cannot read"
            ),
            VariantAdded { variant } => format!(
                "variant `{variant}` of {field} was added: consumers built against the snapshot cannot read it"
            ),
            KeyChanged { from, to } => {
                let name = |key: &Option<String>| match key {
                    Some(key) => format!("`{key}`"),
                    None => "none".to_owned(),
                };
                format!(
                    "the ordering key changed from {} to {}: events of one key no longer arrive in the order consumers rely on",
                    name(from),
                    name(to)
                )
            }
        }
    }
}

/// What stops a contract check from passing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContractProblem {
    /// A contract breaks its snapshot, or a consumer's expectation.
    Breaking {
        /// The contract's name.
        contract: String,
        /// Its version.
        version: u32,
        /// What it was compared with: the snapshot's file, or the consumer and producer.
        against: String,
        /// How it was compared.
        direction: Direction,
        /// Every change found, breaking or not.
        changes: Vec<Change>,
        /// The domain events it is published `from`, for the fix.
        from: Vec<String>,
    },
    /// A published contract version has no snapshot.
    MissingSnapshot {
        /// The contract's name.
        contract: String,
        /// Its version.
        version: u32,
        /// The snapshot's file.
        path: PathBuf,
    },
    /// A snapshot's contract version is no longer published.
    Withdrawn {
        /// The contract's name.
        contract: String,
        /// Its version.
        version: u32,
        /// The snapshot's file.
        path: PathBuf,
    },
    /// A consumer expects a version of a contract that its producer does not publish.
    VersionNotPublished {
        /// The contract's name.
        contract: String,
        /// The version the consumer expects.
        version: u32,
        /// The consuming context.
        consumer: String,
        /// The versions the producer publishes.
        published: Vec<u32>,
    },
}

impl fmt::Display for ContractProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractProblem::Breaking {
                contract,
                version,
                against,
                direction,
                changes,
                from,
            } => {
                writeln!(f, "contract `{contract}` v{version} breaks {against}:")?;
                for change in changes.iter().filter(|c| c.is_breaking(*direction)) {
                    writeln!(f, "  - {}", change.describe(*direction))?;
                }
                let next = version + 1;
                let from = match from.as_slice() {
                    [one] => one.clone(),
                    many => format!("[{}]", many.join(", ")),
                };
                match direction {
                    Direction::Snapshot => write!(
                        f,
                        "  Fix: publish the new schema as version {next} next to version {version}: a second type with \
                         `#[integration_event(name = \"{contract}\", version = {next}, from = {from})]`, \
                         `from` the same domain events, until every consumer reads version {next}; or revert the change. \
                         (Delete the snapshot only if no consumer ever read version {version}.)"
                    ),
                    Direction::Consumer => write!(
                        f,
                        "  Fix: the producer publishes the change as version {next} and keeps publishing version {version} \
                         until this consumer moved; or the consumer's type follows the producer's schema."
                    ),
                }
            }
            ContractProblem::MissingSnapshot {
                contract,
                version,
                path,
            } => write!(
                f,
                "contract `{contract}` v{version} has no snapshot `{}`: write it with the command below and commit it",
                path.display()
            ),
            ContractProblem::Withdrawn {
                contract,
                version,
                path,
            } => write!(
                f,
                "snapshot `{}` is of contract `{contract}` v{version}, which this program no longer publishes: its consumers \
                 stop receiving it. Publish it again, or delete the snapshot once no consumer reads version {version}",
                path.display()
            ),
            ContractProblem::VersionNotPublished {
                contract,
                version,
                consumer,
                published,
            } => {
                let published: Vec<String> = published.iter().map(|v| format!("v{v}")).collect();
                write!(
                    f,
                    "context `{consumer}` consumes contract `{contract}` v{version}, and the producer publishes {} only: \
                     the consumer moves to a published version, or the producer keeps publishing v{version}",
                    published.join(", ")
                )
            }
        }
    }
}

/// The message of [`CatalogError::Contracts`].
pub(super) fn contract_problems(problems: &[ContractProblem], command: &str) -> String {
    let count = problems.len();
    let s = if count == 1 { "" } else { "s" };
    let mut message = format!("{count} contract problem{s}:");
    for (i, problem) in problems.iter().enumerate() {
        message.push_str(&format!("\n{}. {problem}", i + 1));
    }
    if problems
        .iter()
        .any(|p| matches!(p, ContractProblem::MissingSnapshot { .. }))
    {
        message.push_str(&format!(
            "\nWrite the missing snapshots (and refresh those changed compatibly) with\n  {command}"
        ));
    }
    message
}

/// What a contract check that passed has to say: contracts that changed compatibly, and the
/// snapshots it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContractsReport {
    /// One line per note.
    pub notes: Vec<String>,
}

/// The committed form of a contract version: a file `<contract>.v<version>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    contract: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    schema: Value,
}

impl Snapshot {
    fn of(contract: &PublishedContract) -> Snapshot {
        Snapshot {
            contract: contract.name.clone(),
            version: contract.version,
            key: contract.key.clone(),
            schema: contract.schema.clone(),
        }
    }

    /// The snapshot's file text.
    fn to_json(&self) -> String {
        pretty(&serde_json::to_value(self).expect("a snapshot is plain JSON data"))
    }

    fn file_name(contract: &str, version: u32) -> String {
        format!("{contract}.v{version}.json")
    }
}

impl Catalog {
    /// Compares each published contract version with the snapshot of its schema in `dir` (a
    /// folder of the package, such as `"contracts"`): the one-line test that stops a breaking
    /// change before it ships.
    ///
    /// ```no_run
    /// #[test]
    /// fn contracts_are_compatible() {
    ///     tidings::catalog().check_contracts("contracts").unwrap();
    /// }
    /// ```
    ///
    /// A contract is compatible with its snapshot when a consumer built against either schema
    /// reads the events of the other. So these break it, and fail with the contract, the field,
    /// what changed and the fix (publish a new version next to the old one, both `from` the
    /// same domain events, until consumers moved; or revert):
    ///
    /// - a field removed or renamed;
    /// - a field's type changed (`Option<T>` for `T` included);
    /// - a new required field (give it `#[serde(default)]`, and it is optional);
    /// - a field that becomes required, or no longer required;
    /// - an enum variant removed, or added;
    /// - the ordering key changed.
    ///
    /// A new optional field is additive: the check passes, and its report says how to
    /// refresh the snapshot. A published version with no snapshot fails, as does a snapshot
    /// whose version is no longer published.
    ///
    /// With `TIDINGS_CATALOG=overwrite` in the environment ([`OVERWRITE_ENV`](super::OVERWRITE_ENV)),
    /// missing snapshots are written and those changed compatibly are refreshed; a breaking
    /// change still fails. Snapshots are `<contract>.v<version>.json`: the contract's name,
    /// version, key and JSON Schema, pretty-printed, for review in a diff.
    pub fn check_contracts(&self, dir: impl AsRef<Path>) -> Result<ContractsReport, CatalogError> {
        self.compare_snapshots(dir.as_ref(), overwrite())
    }

    /// Compares as [`check_contracts`](Self::check_contracts) does in refresh mode: writes the
    /// missing snapshots and refreshes those changed compatibly; a breaking change, or a
    /// snapshot no longer published, still fails.
    pub fn refresh_contracts(
        &self,
        dir: impl AsRef<Path>,
    ) -> Result<ContractsReport, CatalogError> {
        self.compare_snapshots(dir.as_ref(), true)
    }

    fn compare_snapshots(
        &self,
        dir: &Path,
        overwrite: bool,
    ) -> Result<ContractsReport, CatalogError> {
        let command = refresh_command();
        let mut report = ContractsReport::default();
        let mut problems = Vec::new();
        let mut published = BTreeSet::new();
        for contract in self.contexts.iter().flat_map(|c| &c.publishes) {
            let path = dir.join(Snapshot::file_name(&contract.name, contract.version));
            published.insert(path.clone());
            let current = Snapshot::of(contract);
            let Some(snapshot) = read_snapshot(&path)? else {
                if overwrite {
                    write_file(&path, &current.to_json())?;
                    report.notes.push(format!(
                        "wrote the snapshot of contract `{}` v{}: `{}`",
                        contract.name,
                        contract.version,
                        path.display()
                    ));
                } else {
                    problems.push(ContractProblem::MissingSnapshot {
                        contract: contract.name.clone(),
                        version: contract.version,
                        path,
                    });
                }
                continue;
            };
            let mut changes = diff(&snapshot.schema, &contract.schema);
            if snapshot.key != current.key {
                changes.push(Change {
                    field: String::new(),
                    kind: ChangeKind::KeyChanged {
                        from: snapshot.key.clone(),
                        to: current.key.clone(),
                    },
                });
            }
            if changes.iter().any(|c| c.is_breaking(Direction::Snapshot)) {
                problems.push(ContractProblem::Breaking {
                    contract: contract.name.clone(),
                    version: contract.version,
                    against: format!("its snapshot `{}`", path.display()),
                    direction: Direction::Snapshot,
                    changes,
                    from: contract.from.clone(),
                });
            } else if snapshot != current {
                let what: Vec<String> = changes
                    .iter()
                    .map(|c| c.describe(Direction::Snapshot))
                    .collect();
                let what = if what.is_empty() {
                    "its schema's text changed".to_owned()
                } else {
                    what.join("; ")
                };
                if overwrite {
                    write_file(&path, &current.to_json())?;
                    report.notes.push(format!(
                        "refreshed the snapshot `{}` of contract `{}` v{} ({what})",
                        path.display(),
                        contract.name,
                        contract.version
                    ));
                } else {
                    report.notes.push(format!(
                        "contract `{}` v{} changed compatibly ({what}); refresh its snapshot with `{command}`",
                        contract.name, contract.version
                    ));
                }
            }
        }
        for path in json_files(dir)? {
            if published.contains(&path) {
                continue;
            }
            if let Some(snapshot) = read_snapshot(&path)? {
                problems.push(ContractProblem::Withdrawn {
                    contract: snapshot.contract,
                    version: snapshot.version,
                    path,
                });
            }
        }
        for note in &report.notes {
            eprintln!("tidings: {note}");
        }
        if problems.is_empty() {
            Ok(report)
        } else {
            Err(CatalogError::Contracts { problems, command })
        }
    }

    /// Compares the contracts this catalog consumes with those `other` publishes, and those
    /// it publishes with those `other` consumes: a consumer's expectations against its
    /// producer, each from its own program's catalog JSON.
    ///
    /// A consumer may leave out fields it does not read, and may know variants the producer
    /// never sends; it breaks when it requires a field the producer does not send (or sends as
    /// optional), when a type differs, or when the producer sends a variant it does not know.
    /// A contract name that `other` does not publish at all is another producer's, and
    /// skipped.
    ///
    /// ```no_run
    /// #[test]
    /// fn search_reads_what_catalog_publishes() {
    ///     let producer = std::fs::read_to_string("../catalog/docs/catalog.json").unwrap();
    ///     let producer = tidings::catalog::Catalog::from_json(&producer).unwrap();
    ///     tidings::catalog().check_against(&producer).unwrap();
    /// }
    /// ```
    pub fn check_against(&self, other: &Catalog) -> Result<ContractsReport, CatalogError> {
        let mut problems = Vec::new();
        let mut report = ContractsReport::default();
        let pairs = [(self, other), (other, self)];
        for (consumers, producers) in pairs {
            for context in &consumers.contexts {
                for consumed in &context.consumes {
                    let Some((producer, contract)) =
                        producers.published(&consumed.name, consumed.version)
                    else {
                        let published: Vec<u32> = producers
                            .contexts
                            .iter()
                            .flat_map(|c| &c.publishes)
                            .filter(|c| c.name == consumed.name)
                            .map(|c| c.version)
                            .collect();
                        if !published.is_empty() {
                            problems.push(ContractProblem::VersionNotPublished {
                                contract: consumed.name.clone(),
                                version: consumed.version,
                                consumer: context.name.clone(),
                                published,
                            });
                        }
                        continue;
                    };
                    let changes = diff(&consumed.schema, &contract.schema);
                    if changes.iter().any(|c| c.is_breaking(Direction::Consumer)) {
                        problems.push(ContractProblem::Breaking {
                            contract: contract.name.clone(),
                            version: contract.version,
                            against: format!(
                                "what context `{}` expects of it (published by context `{}`)",
                                context.name, producer.name
                            ),
                            direction: Direction::Consumer,
                            changes,
                            from: contract.from.clone(),
                        });
                    } else {
                        report.notes.push(format!(
                            "context `{}` reads contract `{}` v{} as context `{}` publishes it",
                            context.name, contract.name, contract.version, producer.name
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(report)
        } else {
            Err(CatalogError::Contracts {
                problems,
                command: refresh_command(),
            })
        }
    }
}

/// The snapshot at `path`; `None` if there is no such file.
fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, CatalogError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CatalogError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| CatalogError::Json {
            what: path.display().to_string(),
            expected: "a contract snapshot",
            source,
        })
}

/// Every change from schema `old` to schema `new` (root schemas, with their definitions),
/// breaking or not in either [`Direction`].
fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut walk = Walk {
        old_root: old,
        new_root: new,
        seen: HashSet::new(),
        changes: Vec::new(),
    };
    walk.compare("", old, new);
    walk.changes
}

struct Walk<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// The pairs of definitions compared, so that a recursive type ends.
    seen: HashSet<(String, String)>,
    changes: Vec<Change>,
}

impl<'a> Walk<'a> {
    fn change(&mut self, field: &str, kind: ChangeKind) {
        self.changes.push(Change {
            field: field.to_owned(),
            kind,
        });
    }

    fn compare(&mut self, field: &str, old: &'a Value, new: &'a Value) {
        if let (Some(o), Some(n)) = (reference(old), reference(new))
            && !self.seen.insert((o.to_owned(), n.to_owned()))
        {
            return;
        }
        let (Some(old_schema), Some(new_schema)) =
            (resolve(self.old_root, old), resolve(self.new_root, new))
        else {
            return;
        };
        let (old_types, new_types) = (types(old_schema), types(new_schema));
        let old_format = old_schema.get("format");
        let new_format = new_schema.get("format");
        if old_types != new_types || old_format != new_format {
            self.change(
                field,
                ChangeKind::TypeChanged {
                    from: describe(old),
                    to: describe(new),
                },
            );
            return;
        }
        let old_variants = variants(old_schema);
        let new_variants = variants(new_schema);
        if old_variants.is_some() || new_variants.is_some() {
            self.compare_variants(
                field,
                old_variants.unwrap_or_default(),
                new_variants.unwrap_or_default(),
            );
            return;
        }
        self.compare_object(field, old_schema, new_schema);
        if let (Some(o), Some(n)) = (old_schema.get("items"), new_schema.get("items"))
            && o.is_object()
            && n.is_object()
        {
            self.compare(&format!("{field}[]"), o, n);
        }
        let maps = (
            old_schema.get("additionalProperties"),
            new_schema.get("additionalProperties"),
        );
        if let (Some(o @ Value::Object(_)), Some(n @ Value::Object(_))) = maps {
            self.compare(&format!("{field}{{}}"), o, n);
        }
    }

    fn compare_object(&mut self, field: &str, old: &'a Value, new: &'a Value) {
        let properties = |schema: &'a Value| {
            schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
        };
        let required = |schema: &Value| -> BTreeSet<String> {
            schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old_required, new_required) = (required(old), required(new));
        let join = |name: &str| {
            if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            }
        };
        let new_properties: BTreeMap<&String, &'a Value> = properties(new).collect();
        let old_properties: BTreeMap<&String, &'a Value> = properties(old).collect();
        let added: Vec<(&String, &'a Value)> = new_properties
            .iter()
            .filter(|(name, _)| !old_properties.contains_key(*name))
            .map(|(name, schema)| (*name, *schema))
            .collect();
        for (name, old_property) in &old_properties {
            let Some(new_property) = new_properties.get(name) else {
                let was = describe(old_property);
                let renamed_to = added
                    .iter()
                    .find(|(_, schema)| describe(schema) == was)
                    .map(|(name, _)| join(name));
                self.change(
                    &join(name),
                    ChangeKind::FieldRemoved {
                        required: old_required.contains(*name),
                        renamed_to,
                    },
                );
                continue;
            };
            match (old_required.contains(*name), new_required.contains(*name)) {
                (true, false) => self.change(&join(name), ChangeKind::BecameOptional),
                (false, true) => self.change(&join(name), ChangeKind::BecameRequired),
                _ => {}
            }
            self.compare(&join(name), old_property, new_property);
        }
        for (name, _) in added {
            self.change(
                &join(name),
                ChangeKind::FieldAdded {
                    required: new_required.contains(name),
                },
            );
        }
    }

    fn compare_variants(
        &mut self,
        field: &str,
        old: Vec<(String, Option<&'a Value>)>,
        new: Vec<(String, Option<&'a Value>)>,
    ) {
        for (name, old_content) in &old {
            match new.iter().find(|(n, _)| n == name) {
                None => self.change(
                    field,
                    ChangeKind::VariantRemoved {
                        variant: name.clone(),
                    },
                ),
                Some((_, new_content)) => {
                    if let (Some(o), Some(n)) = (old_content, new_content) {
                        self.compare(&format!("{field}({name})"), o, n);
                    }
                }
            }
        }
        for (name, _) in &new {
            if !old.iter().any(|(n, _)| n == name) {
                self.change(
                    field,
                    ChangeKind::VariantAdded {
                        variant: name.clone(),
                    },
                );
            }
        }
    }
}

/// The variants of an enum's schema, by name, each with the schema of its content; `None` for a
/// schema that is no enum.
///
/// schemars writes a unit-only enum as `{"enum": [..]}` and an enum with data as `oneOf` (or
/// `anyOf` for `Option`-like choices) of: `{"enum": [..]}` for its unit variants, an object of
/// one required property for an externally tagged variant, an object whose tag property has a
/// `const` (or one-value `enum`) for an internally or adjacently tagged one.
fn variants(schema: &Value) -> Option<Vec<(String, Option<&Value>)>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.iter().map(|v| (label(v), None)).collect());
    }
    if let Some(value) = schema.get("const") {
        return Some(vec![(label(value), None)]);
    }
    let alternatives = ["oneOf", "anyOf"]
        .iter()
        .find_map(|key| schema.get(*key)?.as_array())?;
    let mut variants = Vec::new();
    for (i, alternative) in alternatives.iter().enumerate() {
        if let Some(Value::Array(values)) = alternative.get("enum") {
            variants.extend(values.iter().map(|v| (label(v), None)));
        } else if let Some(value) = alternative.get("const") {
            variants.push((label(value), None));
        } else if let Some(tag) = tag_value(alternative) {
            variants.push((tag, Some(alternative)));
        } else if let Some((name, content)) = external_tag(alternative) {
            variants.push((name, Some(content)));
        } else if types(alternative) == ["null"] {
            variants.push(("null".to_owned(), None));
        } else {
            variants.push((format!("#{}", i + 1), Some(alternative)));
        }
    }
    Some(variants)
}

/// A variant's name from a JSON value: the string itself, or the value's text.
fn label(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The value of the tag property of an internally or adjacently tagged variant.
fn tag_value(schema: &Value) -> Option<String> {
    schema
        .get("properties")?
        .as_object()?
        .values()
        .find_map(|property| match property.get("const") {
            Some(value) => Some(label(value)),
            None => match property.get("enum")?.as_array()?.as_slice() {
                [one] => Some(label(one)),
                _ => None,
            },
        })
}

/// The name and content of an externally tagged variant: an object of one required property.
fn external_tag(schema: &Value) -> Option<(String, &Value)> {
    let properties = schema.get("properties")?.as_object()?;
    let required = schema.get("required")?.as_array()?;
    match (properties.iter().next(), properties.len(), required.len()) {
        (Some((name, content)), 1, 1) => Some((name.clone(), content)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(properties: Value, required: &[&str]) -> Value {
        json!({ "type": "object", "properties": properties, "required": required })
    }

    fn kinds(changes: &[Change]) -> Vec<(&str, &ChangeKind)> {
        changes
            .iter()
            .map(|c| (c.field.as_str(), &c.kind))
            .collect()
    }

    #[test]
    fn a_field_renamed_is_one_removed_with_its_likely_new_name() {
        let old = object(json!({ "price": { "type": "integer" } }), &["price"]);
        let new = object(
            json!({ "price_cents": { "type": "integer" } }),
            &["price_cents"],
        );
        let changes = diff(&old, &new);
        assert_eq!(
            kinds(&changes)[0],
            (
                "price",
                &ChangeKind::FieldRemoved {
                    required: true,
                    renamed_to: Some("price_cents".to_owned())
                }
            )
        );
        assert!(changes[0].is_breaking(Direction::Snapshot));
        assert!(changes[1].is_breaking(Direction::Snapshot), "new required");
    }

    #[test]
    fn an_optional_field_added_is_additive_and_a_consumer_ignores_extra_fields() {
        let old = object(json!({ "id": { "type": "string" } }), &["id"]);
        let new = object(
            json!({ "id": { "type": "string" }, "note": { "type": ["string", "null"] } }),
            &["id"],
        );
        let changes = diff(&old, &new);
        assert_eq!(
            kinds(&changes),
            [("note", &ChangeKind::FieldAdded { required: false })]
        );
        assert!(!changes[0].is_breaking(Direction::Snapshot));
        let required = object(
            json!({ "id": { "type": "string" }, "note": { "type": "string" } }),
            &["id", "note"],
        );
        let changes = diff(&old, &required);
        assert!(!changes[0].is_breaking(Direction::Consumer));
    }

    #[test]
    fn nested_types_variants_and_recursion_are_followed() {
        let old = json!({
            "type": "object",
            "properties": {
                "to": { "$ref": "#/definitions/Address" },
                "status": { "type": "string", "enum": ["Placed", "Shipped"] }
            },
            "required": ["to", "status"],
            "definitions": {
                "Address": {
                    "type": "object",
                    "properties": { "city": { "type": "string" }, "next": { "$ref": "#/definitions/Address" } },
                    "required": ["city"]
                }
            }
        });
        let mut new = old.clone();
        new["definitions"]["Address"]["properties"]["city"] = json!({ "type": "integer" });
        new["properties"]["status"]["enum"] = json!(["Placed", "Delivered"]);
        let changes = diff(&old, &new);
        assert_eq!(
            kinds(&changes),
            [
                (
                    "status",
                    &ChangeKind::VariantRemoved {
                        variant: "Shipped".to_owned()
                    }
                ),
                (
                    "status",
                    &ChangeKind::VariantAdded {
                        variant: "Delivered".to_owned()
                    }
                ),
                (
                    "to.city",
                    &ChangeKind::TypeChanged {
                        from: "string".to_owned(),
                        to: "integer".to_owned()
                    }
                ),
            ]
        );
        let consumer = diff(&old, &new);
        let breaking: Vec<_> = consumer
            .iter()
            .filter(|c| c.is_breaking(Direction::Consumer))
            .map(|c| c.describe(Direction::Consumer))
            .collect();
        assert_eq!(breaking.len(), 2, "{breaking:?}");
    }

    #[test]
    fn tagged_variants_are_named_by_their_tag() {
        let variant = |tag: &str, field: &str| json!({ "type": "object", "properties": { "type": { "type": "string", "const": tag }, field: { "type": "string" } }, "required": ["type", field] });
        let old = json!({ "oneOf": [variant("Card", "last4"), variant("Cash", "till")] });
        let new = json!({ "oneOf": [variant("Card", "last_four"), variant("Cash", "till")] });
        let changes = diff(&old, &new);
        assert_eq!(changes[0].field, "(Card).last4");
        assert!(matches!(changes[0].kind, ChangeKind::FieldRemoved { .. }));
    }
}
