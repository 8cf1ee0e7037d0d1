//! The Mermaid flowchart: use-case events → domain handlers and translations → contracts →
//! the handlers of the contexts that consume them.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{Catalog, HandlerEntry};
use crate::transport::address::contract_version;

impl Catalog {
    /// The flow as a Mermaid flowchart, read left to right: a box per context with its domain
    /// events (rounded), their domain handlers (rectangles) and translation handlers
    /// (subroutines, `From<&Event>` for a translation by `From`); the contracts (hexagons)
    /// between the contexts, with a dotted arrow to each handler that consumes one. A handler
    /// that takes `DomainEvents` says "runs use cases" under its name.
    ///
    /// It answers "which integration events does this use case cause, and who reacts?", and
    /// renders where Markdown's ` ```mermaid ` blocks do (GitHub, GitLab, ..).
    ///
    /// ```
    /// use tidings::prelude::*;
    ///
    /// #[domain_event]
    /// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    /// pub struct ProductPutOnSale { pub product_id: String }
    ///
    /// #[handles]
    /// fn project_product(event: &ProductPutOnSale) {}
    ///
    /// let mermaid = tidings::catalog().mermaid();
    /// assert!(mermaid.starts_with("flowchart LR\n"));
    /// assert!(mermaid.contains(r#"(["ProductPutOnSale"])"#));
    /// ```
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let mut edges = Vec::new();
        let mut contracts = BTreeSet::new();
        for context in &self.contexts {
            let c = &context.name;
            let _ = writeln!(out, "  subgraph {}[\"{}\"]", id(&["context", c]), label(c));
            for event in &context.domain_events {
                let event_id = id(&[c, "event", &event.name]);
                let _ = writeln!(out, "    {event_id}([\"{}\"]):::event", label(&event.name));
                for handler in &event.handlers {
                    let handler_id = id(&[c, "handler", &handler.name]);
                    let _ = writeln!(out, "    {handler_id}[\"{}\"]", handler_label(handler));
                    edges.push(format!("  {event_id} --> {handler_id}"));
                }
                for translation in &event.translations {
                    let contract_id = contract_id(&translation.contract, translation.version);
                    contracts.insert((translation.contract.clone(), translation.version));
                    match &translation.handler {
                        Some(handler) => {
                            let handler_id = id(&[c, "translation", &handler.name]);
                            let _ = writeln!(
                                out,
                                "    {handler_id}[[\"{}\"]]:::translation",
                                label(&handler.name)
                            );
                            edges.push(format!("  {event_id} --> {handler_id}"));
                            edges.push(format!("  {handler_id} --> {contract_id}"));
                        }
                        None => {
                            let from_id = id(&[c, "from", &event.name, &translation.contract]);
                            let _ = writeln!(
                                out,
                                "    {from_id}[[\"From#lt;#amp;{}#gt;\"]]:::translation",
                                label(&event.name)
                            );
                            edges.push(format!("  {event_id} --> {from_id}"));
                            edges.push(format!("  {from_id} --> {contract_id}"));
                        }
                    }
                }
            }
            for consumed in &context.consumes {
                let contract_id = contract_id(&consumed.name, consumed.version);
                contracts.insert((consumed.name.clone(), consumed.version));
                for handler in &consumed.handlers {
                    let handler_id = id(&[c, "handler", &handler.name]);
                    let _ = writeln!(
                        out,
                        "    {handler_id}[\"{}\"]:::inbound",
                        handler_label(handler)
                    );
                    edges.push(format!("  {contract_id} -.-> {handler_id}"));
                }
            }
            out.push_str("  end\n");
        }
        for (contract, version) in &contracts {
            let _ = writeln!(
                out,
                "  {}{{{{\"{} v{version}\"}}}}:::contract",
                contract_id(contract, *version),
                label(contract)
            );
        }
        for edge in edges {
            out.push_str(&edge);
            out.push('\n');
        }
        out.push_str(concat!(
            "  classDef event fill:#e8f1fb,stroke:#3b6ea8\n",
            "  classDef translation fill:#fdf3e1,stroke:#b7791f\n",
            "  classDef contract fill:#e6f4ea,stroke:#2f855a\n",
            "  classDef inbound fill:#f3e8fb,stroke:#6b46c1\n",
        ));
        out
    }
}

/// A node's id: the parts, each made of letters, digits and `_`, joined by `__`.
fn id(parts: &[&str]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|part| {
            part.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
        .collect();
    parts.join("__")
}

fn contract_id(contract: &str, version: u32) -> String {
    id(&["contract", &contract_version(contract, version)])
}

/// A handler's node's text: its name, and a second line if it runs use cases.
fn handler_label(handler: &HandlerEntry) -> String {
    if handler.runs_use_cases {
        format!("{}<br>runs use cases", label(&handler.name))
    } else {
        label(&handler.name)
    }
}

/// A node's text, inside `"…"`.
fn label(text: &str) -> String {
    text.replace('"', "#quot;")
}
