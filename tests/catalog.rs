//! The event catalog: what it shows of a program, the documents a test keeps current, and each
//! rule of the contract checks, on schemas derived from real types.

use std::path::{Path, PathBuf};

use tidings::catalog::{
    Catalog, CatalogError, ChangeKind, Context, ContractProblem, FORMAT, PublishedContract,
};

/// The shipping context: a use case's event, its handlers, its contracts.
mod shipping {
    tidings::context!("shipping");

    use tidings::prelude::*;

    #[domain_event]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct ParcelWeighed {
        pub(crate) parcel_id: String,
        pub(crate) grams: u32,
    }

    #[handles]
    fn print_label(_event: &ParcelWeighed) {}

    #[integration_event(name = "shipping.parcel-weighed", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct ParcelWeighedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) grams: u32,
    }

    #[handles]
    fn publish_parcel_weighed(event: &ParcelWeighed) -> ParcelWeighedIntegrationEvent {
        ParcelWeighedIntegrationEvent {
            parcel_id: event.parcel_id.clone(),
            grams: event.grams,
        }
    }

    /// A status of the program's own inside a contract.
    #[tidings::schema]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) enum Status {
        Weighed,
        Lost,
    }

    #[integration_event(name = "shipping.parcel-status", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct ParcelStatusIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) status: Status,
    }

    impl From<&ParcelWeighed> for ParcelStatusIntegrationEvent {
        fn from(event: &ParcelWeighed) -> Self {
            ParcelStatusIntegrationEvent {
                parcel_id: event.parcel_id.clone(),
                status: Status::Weighed,
            }
        }
    }
}

/// The billing context: consumes shipping's contract.
mod billing {
    tidings::context!("billing");

    use super::shipping::ParcelWeighedIntegrationEvent;

    /// The publisher of the context, under another name: found by its type.
    type UseCases = tidings::DomainEvents;

    #[tidings::handles]
    fn charge_postage(_event: &ParcelWeighedIntegrationEvent, _use_cases: UseCases) {}

    #[tidings::handles]
    fn file_invoice(_event: &ParcelWeighedIntegrationEvent, _events: tidings::DomainEvents) {}

    #[tidings::handles]
    fn count_parcels(_event: &ParcelWeighedIntegrationEvent) {}
}

/// Schemas after a change, each the changed form of `shipping.parcel-weighed` (or of
/// `shipping.parcel-status`), under a contract name of its own so that the program holds both.
/// Nothing translates to them: the catalog is all these tests need.
mod changed {
    tidings::context!("changed");

    use super::shipping::ParcelWeighed;
    use tidings::prelude::*;

    #[integration_event(name = "renamed", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct RenamedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) weight_grams: u32,
    }

    #[integration_event(name = "retyped", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct RetypedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) grams: f64,
    }

    #[integration_event(name = "required-added", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct RequiredAddedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) grams: u32,
        pub(crate) carrier: String,
    }

    #[integration_event(name = "optional-added", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct OptionalAddedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) grams: u32,
        #[serde(default)]
        pub(crate) carrier: Option<String>,
    }

    #[integration_event(name = "rekeyed", from = ParcelWeighed, key = grams)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct RekeyedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) grams: u32,
    }

    #[tidings::schema]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    #[serde(rename = "Status")]
    pub(crate) enum FewerStatuses {
        Weighed,
    }

    #[integration_event(name = "variant-removed", from = ParcelWeighed, key = parcel_id)]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct VariantRemovedIntegrationEvent {
        pub(crate) parcel_id: String,
        pub(crate) status: FewerStatuses,
    }

    /// What a consumer that reads only the weight expects of `shipping.parcel-weighed`.
    #[integration_event(name = "shipping.parcel-weighed")]
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub(crate) struct WeightOnlyIntegrationEvent {
        pub(crate) grams: u32,
    }

    #[handles]
    fn read_weight(_event: &WeightOnlyIntegrationEvent) {}
}

/// A fresh folder for one test.
fn folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidings-catalog-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The published contract `name` of this program.
fn published(name: &str) -> PublishedContract {
    tidings::catalog()
        .contexts
        .into_iter()
        .flat_map(|c| c.publishes)
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("contract `{name}` is published"))
}

/// A catalog of one context that publishes `contracts`.
fn publishing(contracts: Vec<PublishedContract>) -> Catalog {
    Catalog {
        format: FORMAT,
        contexts: vec![Context {
            name: "shipping".to_owned(),
            domain_events: Vec::new(),
            publishes: contracts,
            consumes: Vec::new(),
        }],
    }
}

/// Checks the contract `after` (published under `before`'s name) against a snapshot of
/// `before`, in a folder of its own.
fn check_change(test: &str, before: &str, after: &str) -> Result<Vec<String>, CatalogError> {
    let dir = folder(test);
    let before = published(before);
    publishing(vec![before.clone()])
        .refresh_contracts(&dir)
        .expect("the snapshot is written");
    let after = PublishedContract {
        name: before.name,
        ..published(after)
    };
    let result = publishing(vec![after]).check_contracts(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|report| report.notes)
}

/// The problems of a failed check, and its message.
fn problems(result: Result<Vec<String>, CatalogError>) -> (Vec<ContractProblem>, String) {
    match result {
        Err(error @ CatalogError::Contracts { .. }) => {
            let message = error.to_string();
            let CatalogError::Contracts { problems, .. } = error else {
                unreachable!()
            };
            (problems, message)
        }
        other => panic!("expected contract problems, got {other:?}"),
    }
}

/// The kinds of change of the one breaking problem.
fn changes(problems: &[ContractProblem]) -> Vec<(String, ChangeKind)> {
    match problems {
        [ContractProblem::Breaking { changes, .. }] => changes
            .iter()
            .map(|c| (c.field.clone(), c.kind.clone()))
            .collect(),
        other => panic!("expected one breaking problem, got {other:?}"),
    }
}

#[test]
fn the_catalog_shows_each_contexts_events_handlers_translations_and_consumers() {
    let catalog = tidings::catalog();
    let shipping = catalog.context("shipping").expect("declared");
    let weighed = &shipping.domain_events[0];
    assert_eq!(weighed.name, "ParcelWeighed");
    let handlers: Vec<&str> = weighed.handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(handlers, ["print_label"]);
    let translations: Vec<(&str, Option<&str>)> = weighed
        .translations
        .iter()
        .map(|t| {
            (
                t.contract.as_str(),
                t.handler.as_ref().map(|h| h.name.as_str()),
            )
        })
        .collect();
    assert!(translations.contains(&("shipping.parcel-weighed", Some("publish_parcel_weighed"))));
    assert!(
        translations.contains(&("shipping.parcel-status", None)),
        "a `From` translation has no handler"
    );
    let contract = published("shipping.parcel-weighed");
    assert_eq!(contract.key.as_deref(), Some("parcel_id"));
    assert_eq!(contract.from, ["ParcelWeighed"]);
    assert_eq!(contract.schema["properties"]["grams"]["format"], "uint32");

    let billing = catalog.context("billing").expect("declared");
    assert_eq!(billing.consumes[0].name, "shipping.parcel-weighed");
    let inbound: Vec<(&str, bool)> = billing.consumes[0]
        .handlers
        .iter()
        .map(|h| (h.name.as_str(), h.runs_use_cases))
        .collect();
    assert_eq!(
        inbound,
        [
            ("charge_postage", true),
            ("count_parcels", false),
            ("file_invoice", true)
        ],
        "a handler that takes `DomainEvents`, by name or alias, runs use cases"
    );

    let markdown = catalog.markdown();
    assert!(markdown.contains("## Context `shipping`"));
    assert!(markdown.contains("| `ParcelWeighed` | `print_label` | `From<&ParcelWeighed>` → `shipping.parcel-status` v1<br>`publish_parcel_weighed` → `shipping.parcel-weighed` v1 |"), "{markdown}");
    assert!(markdown.contains("`billing`: `charge_postage` (runs use cases)"));
    let mermaid = catalog.mermaid();
    assert!(mermaid.contains(
        "shipping__event__ParcelWeighed --> shipping__translation__publish_parcel_weighed"
    ));
    assert!(mermaid.contains(
        "shipping__translation__publish_parcel_weighed --> contract__shipping_parcel_weighed_v1"
    ));
    assert!(mermaid.contains(
        "shipping__from__ParcelWeighed__shipping_parcel_status --> contract__shipping_parcel_status_v1"
    ));
    assert!(mermaid.contains(
        "billing__handler__charge_postage[\"charge_postage<br>runs use cases\"]:::inbound"
    ));
    assert!(
        mermaid
            .contains("contract__shipping_parcel_weighed_v1 -.-> billing__handler__charge_postage")
    );
}

#[test]
fn the_json_form_reads_back_and_combines_with_another_programs() {
    let catalog = tidings::catalog();
    let read = Catalog::from_json(&catalog.to_json()).expect("its own JSON");
    assert_eq!(read, catalog);
    let other =
        Catalog::from_json(&publishing(vec![published("renamed")]).to_json()).expect("JSON");
    let system = Catalog::combine([catalog.clone(), other]);
    let shipping = system.context("shipping").expect("merged");
    assert!(shipping.publishes.iter().any(|c| c.name == "renamed"));
    assert_eq!(system.contexts.len(), catalog.contexts.len());

    let future = catalog
        .to_json()
        .replacen("\"format\": 1", "\"format\": 2", 1);
    let error = Catalog::from_json(&future).expect_err("another format");
    assert!(error.to_string().contains("format 2"), "{error}");
}

#[test]
fn a_removed_or_renamed_field_breaks_the_contract_and_says_how_to_publish_a_new_version() {
    let (problems, message) = problems(check_change(
        "renamed",
        "shipping.parcel-weighed",
        "renamed",
    ));
    let changes = changes(&problems);
    assert_eq!(
        changes[0],
        (
            "grams".to_owned(),
            ChangeKind::FieldRemoved {
                required: true,
                renamed_to: Some("weight_grams".to_owned())
            }
        )
    );
    assert!(
        message.contains("contract `shipping.parcel-weighed` v1 breaks its snapshot"),
        "{message}"
    );
    assert!(
        message.contains("field `grams` was removed (renamed to `weight_grams`?)"),
        "{message}"
    );
    assert!(
        message.contains("version = 2, from = ParcelWeighed"),
        "{message}"
    );
    assert!(message.contains("or revert the change"), "{message}");
}

#[test]
fn a_field_whose_type_changed_breaks_the_contract() {
    let (problems, message) = problems(check_change(
        "retyped",
        "shipping.parcel-weighed",
        "retyped",
    ));
    assert_eq!(
        changes(&problems),
        [(
            "grams".to_owned(),
            ChangeKind::TypeChanged {
                from: "integer (uint32)".to_owned(),
                to: "number (double)".to_owned()
            }
        )]
    );
    assert!(
        message.contains("field `grams` changed type from integer (uint32) to number (double)"),
        "{message}"
    );
}

#[test]
fn a_new_required_field_breaks_the_contract_and_serde_default_makes_it_additive() {
    let (problems, message) = problems(check_change(
        "required",
        "shipping.parcel-weighed",
        "required-added",
    ));
    assert_eq!(
        changes(&problems),
        [(
            "carrier".to_owned(),
            ChangeKind::FieldAdded { required: true }
        )]
    );
    assert!(message.contains("`#[serde(default)]`"), "{message}");

    let notes = check_change("optional", "shipping.parcel-weighed", "optional-added")
        .expect("a new optional field is additive");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("changed compatibly (field `carrier` was added, optional)"),
        "{}",
        notes[0]
    );
    assert!(
        notes[0].contains("refresh its snapshot with `TIDINGS_CATALOG=overwrite cargo test"),
        "{}",
        notes[0]
    );
}

#[test]
fn an_enum_variant_removed_breaks_the_contract() {
    let (problems, message) = problems(check_change(
        "variant",
        "shipping.parcel-status",
        "variant-removed",
    ));
    assert_eq!(
        changes(&problems),
        [(
            "status".to_owned(),
            ChangeKind::VariantRemoved {
                variant: "Lost".to_owned()
            }
        )]
    );
    assert!(
        message.contains("variant `Lost` of field `status` was removed"),
        "{message}"
    );
}

#[test]
fn a_changed_key_breaks_the_contract() {
    let (problems, message) = problems(check_change(
        "rekeyed",
        "shipping.parcel-weighed",
        "rekeyed",
    ));
    assert_eq!(
        changes(&problems),
        [(
            String::new(),
            ChangeKind::KeyChanged {
                from: Some("parcel_id".to_owned()),
                to: Some("grams".to_owned())
            }
        )]
    );
    assert!(
        message.contains("the ordering key changed from `parcel_id` to `grams`"),
        "{message}"
    );
}

#[test]
fn a_contract_without_a_snapshot_fails_until_refresh_mode_writes_it() {
    let dir = folder("missing");
    let catalog = publishing(vec![published("shipping.parcel-weighed")]);
    let (problems, message) = problems(catalog.check_contracts(&dir).map(|r| r.notes));
    assert!(matches!(
        &problems[..],
        [ContractProblem::MissingSnapshot { version: 1, .. }]
    ));
    assert!(message.contains("has no snapshot"), "{message}");
    assert!(message.contains("TIDINGS_CATALOG=overwrite cargo test -p tidings-tests -- a_contract_without_a_snapshot_fails_until_refresh_mode_writes_it"), "{message}");

    let report = catalog.refresh_contracts(&dir).expect("written");
    assert!(
        report.notes[0].starts_with("wrote the snapshot of contract `shipping.parcel-weighed` v1")
    );
    let snapshot =
        std::fs::read_to_string(dir.join("shipping.parcel-weighed.v1.json")).expect("written");
    assert!(snapshot.contains("\"key\": \"parcel_id\""), "{snapshot}");
    assert_eq!(
        catalog.check_contracts(&dir).expect("current").notes,
        Vec::<String>::new()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_of_a_version_no_longer_published_fails() {
    let dir = folder("withdrawn");
    publishing(vec![
        published("shipping.parcel-weighed"),
        published("renamed"),
    ])
    .refresh_contracts(&dir)
    .expect("written");
    let catalog = publishing(vec![published("shipping.parcel-weighed")]);
    let (problems, message) = problems(catalog.check_contracts(&dir).map(|r| r.notes));
    assert!(
        matches!(&problems[..], [ContractProblem::Withdrawn { contract, .. }] if contract == "renamed")
    );
    assert!(message.contains("no longer publishes"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_consumer_is_checked_against_its_producers_catalog() {
    let catalog = tidings::catalog();
    // The `changed` context reads only `grams` of shipping's contract: compatible.
    let producer = publishing(vec![published("shipping.parcel-weighed")]);
    let consumer = Catalog {
        format: FORMAT,
        contexts: vec![catalog.context("changed").expect("declared").clone()],
    };
    let report = consumer
        .check_against(&producer)
        .expect("the consumer reads what is published");
    assert!(
        report.notes[0].contains("context `changed` reads contract `shipping.parcel-weighed` v1")
    );

    // A producer that renamed `grams`: the consumer cannot read it.
    let renamed = publishing(vec![PublishedContract {
        name: "shipping.parcel-weighed".to_owned(),
        ..published("renamed")
    }]);
    let (_, message) = problems(consumer.check_against(&renamed).map(|r| r.notes));
    assert!(
        message
            .contains("field `grams` is not in the producer's payload, and the consumer reads it"),
        "{message}"
    );
    assert!(
        message.contains("keeps publishing version 1 until this consumer moved"),
        "{message}"
    );
    // Checked from the producer's side, the same problem.
    assert!(renamed.check_against(&consumer).is_err());
}

#[test]
fn committed_documents_that_differ_from_the_code_fail_with_the_refresh_command() {
    let dir = folder("docs");
    let catalog = tidings::catalog();
    let written = catalog.docs().write(&dir).expect("written");
    assert!(written.contains(&dir.join("asyncapi/shipping.kafka.json")));
    assert!(written.contains(&dir.join("asyncapi/shipping.googlepubsub.json")));
    catalog.docs().check(&dir).expect("current");

    std::fs::write(dir.join("catalog.md"), "# An old catalog\n").expect("written");
    std::fs::write(dir.join("asyncapi/gone.nats.json"), "{}").expect("written");
    std::fs::remove_file(dir.join("asyncapi/billing.amqp.json")).expect("removed");
    let error = catalog.docs().check(&dir).expect_err("stale");
    let message = error.to_string();
    assert!(message.contains(&path(&dir, "catalog.md")), "{message}");
    assert!(
        message.contains(&path(&dir, "asyncapi/billing.amqp.json")),
        "{message}"
    );
    assert!(
        message.contains(&path(&dir, "asyncapi/gone.nats.json")),
        "a document the code no longer produces: {message}"
    );
    assert!(message.contains("TIDINGS_CATALOG=overwrite cargo test -p tidings-tests -- committed_documents_that_differ_from_the_code_fail_with_the_refresh_command"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

#[test]
fn asyncapi_documents_carry_the_brokers_addresses_and_the_cloudevents_headers() {
    use tidings::catalog::Broker;
    let catalog = tidings::catalog();
    let nats = catalog
        .asyncapi("shipping", &Broker::nats())
        .expect("a context");
    let channel = &nats["channels"]["shipping.parcel-weighed.v1"];
    assert_eq!(channel["address"], "tidings.shipping.parcel-weighed.v1");
    let message = &nats["components"]["messages"]["shipping.parcel-weighed.v1"];
    assert_eq!(message["contentType"], "application/cloudevents+json");
    assert_eq!(
        message["payload"]["schemaFormat"],
        "application/schema+json;version=draft-07"
    );
    assert_eq!(
        nats["operations"]["publish.shipping.parcel-weighed.v1"]["action"],
        "send"
    );

    let amqp = catalog
        .asyncapi("billing", &Broker::rabbitmq())
        .expect("a context");
    let channel = &amqp["channels"]["shipping.parcel-weighed.v1"];
    assert_eq!(channel["address"], "shipping.parcel-weighed.v1");
    assert_eq!(channel["bindings"]["amqp"]["exchange"]["name"], "tidings");
    let headers = &amqp["components"]["messages"]["shipping.parcel-weighed.v1"]["headers"];
    assert_eq!(headers["properties"]["ce-id"]["format"], "uuid");
    assert_eq!(
        amqp["operations"]["consume.shipping.parcel-weighed.v1"]["action"],
        "receive"
    );

    let kafka = catalog
        .asyncapi("shipping", &Broker::kafka())
        .expect("a context");
    let headers = &kafka["components"]["messages"]["shipping.parcel-status.v1"]["headers"];
    assert!(
        headers["required"]
            .as_array()
            .is_some_and(|r| r.contains(&"ce_type".into()))
    );
    let schemas = &kafka["components"]["schemas"]["shipping.parcel-status.v1"];
    assert_eq!(
        schemas["properties"]["status"]["$ref"],
        "#/components/schemas/shipping.parcel-status.v1/definitions/Status"
    );

    let pubsub = catalog
        .asyncapi("billing", &Broker::pubsub())
        .expect("a context");
    let channel = &pubsub["channels"]["shipping.parcel-weighed.v1"];
    assert_eq!(channel["address"], "tidings.shipping.parcel-weighed.v1");
    assert!(
        channel.get("bindings").is_none(),
        "the channel binding requires schema settings that the topics do not have: {channel}"
    );
    let message = &pubsub["components"]["messages"]["shipping.parcel-weighed.v1"];
    assert_eq!(message["contentType"], "application/json");
    assert_eq!(
        message["bindings"]["googlepubsub"]["bindingVersion"],
        "0.2.0"
    );
    assert!(
        message["description"]
            .as_str()
            .is_some_and(|d| d.contains("`parcel_id`")),
        "{}",
        message["description"]
    );
    assert_eq!(
        message["correlationId"]["location"],
        "$message.header#/ce-correlationid"
    );
    let headers = &message["headers"];
    assert_eq!(headers["properties"]["ce-id"]["format"], "uuid");
    assert_eq!(
        headers["properties"]["Content-Type"]["const"],
        "application/json"
    );
    for required in [
        "ce-id",
        "ce-type",
        "ce-source",
        "ce-specversion",
        "Content-Type",
    ] {
        assert!(
            headers["required"]
                .as_array()
                .is_some_and(|r| r.contains(&required.into())),
            "{required} is required"
        );
    }
    assert!(
        pubsub["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Google Cloud Pub/Sub")),
        "{}",
        pubsub["info"]
    );
    assert_eq!(
        pubsub["operations"]["consume.shipping.parcel-weighed.v1"]["action"],
        "receive"
    );
    assert_eq!(
        Broker::PubSub {
            topic_prefix: "acme".to_owned()
        }
        .address("shipping.parcel-weighed", 2),
        "acme.shipping.parcel-weighed.v2"
    );

    let unknown = catalog
        .asyncapi("nowhere", &Broker::nats())
        .expect_err("no such context");
    assert!(
        unknown
            .to_string()
            .contains("`billing`, `changed`, `shipping`"),
        "{unknown}"
    );
}

/// What `TIDINGS_CATALOG=overwrite cargo test` does, in a run of this test binary with it set:
/// the missing snapshot and the missing documents are written, and the checks pass.
#[test]
fn refresh_mode_is_switched_on_by_the_environment_variable() {
    let dir = folder("environment");
    let run = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "checks_in_the_folder_of_the_environment",
            "--ignored",
        ])
        .env(tidings::catalog::OVERWRITE_ENV, "overwrite")
        .env("CATALOG_TEST_FOLDER", &dir)
        .output()
        .expect("the test binary runs");
    let output = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{output}");
    assert!(output.contains("1 passed"), "{output}");
    assert!(
        dir.join("contracts/shipping.parcel-weighed.v1.json")
            .is_file()
    );
    assert!(dir.join("docs/catalog.md").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run by `refresh_mode_is_switched_on_by_the_environment_variable`, with the folder to check.
#[test]
#[ignore = "run by refresh_mode_is_switched_on_by_the_environment_variable"]
fn checks_in_the_folder_of_the_environment() {
    let dir = PathBuf::from(std::env::var_os("CATALOG_TEST_FOLDER").expect("a folder"));
    publishing(vec![published("shipping.parcel-weighed")])
        .check_contracts(dir.join("contracts"))
        .expect("written in refresh mode");
    tidings::catalog()
        .docs()
        .check(dir.join("docs"))
        .expect("written in refresh mode");
}
