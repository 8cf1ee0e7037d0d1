//! The Markdown page: the diagram, then a section per context with tables a reviewer reads.

use std::fmt::Write;

use serde_json::Value;

use super::schema::{describe, resolve};
use super::{Catalog, Context, HandlerEntry};

impl Catalog {
    /// The catalog as a Markdown page: the [Mermaid diagram](Self::mermaid), then a section per
    /// context with its domain events (what handles and translates each), the contracts it
    /// publishes (version, key, `from`, consumers in this catalog, and the payload's fields) and
    /// the contracts it consumes (producer in this catalog, inbound handlers). A handler that
    /// takes `DomainEvents` is marked "runs use cases": its context's domain events may follow.
    ///
    /// ```
    /// use tidings::prelude::*;
    ///
    /// #[domain_event]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct OrderConfirmed { pub order_id: String }
    ///
    /// #[handles]
    /// fn print_label(event: &OrderConfirmed) {}
    ///
    /// let page = tidings::catalog().markdown();
    /// assert!(page.contains("| `OrderConfirmed` | `print_label` |  |"));
    /// ```
    pub fn markdown(&self) -> String {
        let mut out = String::from("# Event catalog\n\n");
        out.push_str(
            "What each use case's domain events lead to: the handlers that react in their bounded \
             context, the translations into integration events (the contracts), and the contexts \
             that consume those. Generated from the code by `tidings::catalog()`.\n\n",
        );
        let _ = write!(out, "```mermaid\n{}```\n", self.mermaid());
        for context in &self.contexts {
            self.context_section(&mut out, context);
        }
        out
    }

    fn context_section(&self, out: &mut String, context: &Context) {
        let _ = write!(out, "\n## Context `{}`\n", context.name);
        if !context.domain_events.is_empty() {
            out.push_str("\n### Domain events\n\n");
            out.push_str("| Domain event | Handlers | Translations |\n|---|---|---|\n");
            for event in &context.domain_events {
                let handlers = handler_list(&event.handlers);
                let translations: Vec<String> = event
                    .translations
                    .iter()
                    .map(|t| {
                        let by = match &t.handler {
                            Some(handler) => format!("`{}`", handler.name),
                            None => format!("`From<&{}>`", event.name),
                        };
                        format!("{by} → `{}` v{}", t.contract, t.version)
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "| `{}` | {handlers} | {} |",
                    event.name,
                    translations.join("<br>")
                );
            }
        }
        if !context.publishes.is_empty() {
            out.push_str("\n### Published contracts\n\n");
            out.push_str(
                "| Contract | Version | Type | Key | From | Consumed by |\n|---|---|---|---|---|---|\n",
            );
            for contract in &context.publishes {
                let consumers: Vec<String> = self
                    .contexts
                    .iter()
                    .flat_map(|c| {
                        c.consumes
                            .iter()
                            .filter(|k| k.name == contract.name && k.version == contract.version)
                            .flat_map(move |k| {
                                k.handlers
                                    .iter()
                                    .map(move |h| format!("`{}`: {}", c.name, handler(h)))
                            })
                    })
                    .collect();
                let key = contract
                    .key
                    .as_ref()
                    .map(|k| format!("`{k}`"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| `{}` | {} | `{}` | {key} | {} | {} |",
                    contract.name,
                    contract.version,
                    contract.type_name,
                    code_list(contract.from.iter().map(String::as_str)),
                    consumers.join("<br>"),
                );
            }
            for contract in &context.publishes {
                let _ = write!(out, "\n#### `{}` v{}\n\n", contract.name, contract.version);
                fields(out, &contract.schema);
            }
        }
        if !context.consumes.is_empty() {
            out.push_str("\n### Consumed contracts\n\n");
            out.push_str("| Contract | Version | Type | Published by | Inbound handlers |\n|---|---|---|---|---|\n");
            for consumed in &context.consumes {
                let producer = self
                    .published(&consumed.name, consumed.version)
                    .map(|(c, _)| format!("`{}`", c.name))
                    .unwrap_or_else(|| "another program".to_owned());
                let _ = writeln!(
                    out,
                    "| `{}` | {} | `{}` | {producer} | {} |",
                    consumed.name,
                    consumed.version,
                    consumed.type_name,
                    handler_list(&consumed.handlers),
                );
            }
        }
    }
}

/// The fields of a payload's schema as a table; a line for a payload that is no object.
fn fields(out: &mut String, root: &Value) {
    let properties = resolve(root, root)
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object);
    let Some(properties) = properties else {
        let _ = writeln!(out, "Payload: {}.", describe(root));
        return;
    };
    let required = |name: &str| {
        root.get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|v| v == name))
    };
    out.push_str("| Field | Type | Required |\n|---|---|---|\n");
    // By name, whatever the order serde_json keeps.
    let mut properties: Vec<(&String, &Value)> = properties.iter().collect();
    properties.sort_by(|a, b| a.0.cmp(b.0));
    for (name, schema) in properties {
        let required = if required(name) { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "| `{name}` | {} | {required} |",
            describe(schema).replace('|', "\\|")
        );
    }
}

/// `` `a`, `b` (runs use cases) ``.
fn handler_list(handlers: &[HandlerEntry]) -> String {
    let handlers: Vec<String> = handlers.iter().map(handler).collect();
    handlers.join(", ")
}

/// `` `name` ``, and what it does besides, if it runs use cases.
fn handler(handler: &HandlerEntry) -> String {
    if handler.runs_use_cases {
        format!("`{}` (runs use cases)", handler.name)
    } else {
        format!("`{}`", handler.name)
    }
}

/// `` `a`, `b` ``.
fn code_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(|item| format!("`{item}`")).collect();
    items.join(", ")
}
