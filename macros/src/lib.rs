//! The macros of [tidings](https://docs.rs/tidings): `#[domain_event]`, `#[integration_event]`,
//! `#[handles]` and `#[schema]`. Use them through the `tidings` crate, which documents them; the code they
//! emit names `::tidings`, or the path given with `crate = ".."` where the dependency is renamed.
//!
//! Each macro parses its arguments (`args`) and its item (`ast`), checks the rules (`validate`),
//! then emits code (`expand`). On an error the item is still emitted as written,
//! with every error found, so one mistake gives its own error and no cascade.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

// Each module uses only those before it in this order: names, errors, args and ast, validate,
// expand; this file puts them together.
mod args;
mod ast;
mod errors;
mod expand;
mod names;
mod validate;

use args::{CrateArgs, DomainEventArgs, HandlesArgs, IntegrationEventArgs};
use ast::{EventItem, Handler};
use errors::Errors;

/// Marks a domain event. See `tidings::domain_event`.
#[proc_macro_attribute]
pub fn domain_event(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let mut errors = Errors::default();
    let args = DomainEventArgs::parse(args.into(), &mut errors);
    let (derive, expansion) = match EventItem::parse(item.clone(), "domain_event", EVENT_IS_DATA) {
        Ok(event) => {
            validate::domain_event(&event, &args, &mut errors);
            // Naming mistakes still get the impls, so that uses of the type compile.
            let derive = event_schema_derive(&event, args.krate());
            let expansion = event
                .generics
                .params
                .is_empty()
                .then(|| expand::domain_event(&event, &args));
            (derive, expansion)
        }
        Err(error) => {
            errors.push(error);
            (None, None)
        }
    };
    output(derive, item, expansion, errors)
}

/// Marks an integration event. See `tidings::integration_event`.
#[proc_macro_attribute]
pub fn integration_event(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let mut errors = Errors::default();
    let args = IntegrationEventArgs::parse(args.into(), &mut errors);
    let parsed = EventItem::parse(item.clone(), "integration_event", EVENT_IS_DATA);
    let (derive, expansion) = match parsed {
        Ok(event) => {
            validate::integration_event(&event, &args, &mut errors);
            let derive = event_schema_derive(&event, args.krate());
            let expansion = event
                .generics
                .params
                .is_empty()
                .then(|| expand::integration_event(&event, &args));
            (derive, expansion)
        }
        Err(error) => {
            errors.push(error);
            (None, None)
        }
    };
    output(derive, item, expansion, errors)
}

/// Marks a handler. See `tidings::handles`.
#[proc_macro_attribute]
pub fn handles(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let mut errors = Errors::default();
    let args = HandlesArgs::parse(args.into(), "handles", &mut errors);
    let expansion = Handler::parse(item.clone(), &mut errors).and_then(|handler| {
        validate::handler(&handler, &mut errors);
        // A handler with a mistake is not registered: its entry would not compile either.
        errors.is_empty().then(|| expand::handler(&handler, &args))
    });
    output(None, item, expansion, errors)
}

/// Gives a type that events hold its JSON Schema. See `tidings::schema`.
#[proc_macro_attribute]
pub fn schema(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let mut errors = Errors::default();
    let args = CrateArgs::parse(args.into(), "schema", &mut errors);
    let derive = match EventItem::parse(item.clone(), "schema", SCHEMA_IS_DATA) {
        Ok(data) => Some(expand::schema_derive(&data, &args.krate())),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    output(derive, item, None, errors)
}

/// Why an event macro goes on a struct or an enum.
const EVENT_IS_DATA: &str = "an event is data that is recorded and sent";

/// Why `#[schema]` goes on a struct or an enum.
const SCHEMA_IS_DATA: &str = "it describes data that events hold";

/// What derives an event's JSON Schema; nothing for an item that cannot be an event (generic
/// parameters).
fn event_schema_derive(event: &EventItem, krate: syn::Path) -> Option<TokenStream2> {
    let wanted = event.generics.params.is_empty();
    wanted.then(|| expand::schema_derive(event, &krate))
}

/// The attributes written before the item, the item as written, then the errors, then the
/// expansion.
fn output(
    before: Option<TokenStream2>,
    item: TokenStream2,
    expansion: Option<TokenStream2>,
    errors: Errors,
) -> TokenStream {
    let mut output = before.unwrap_or_default();
    output.extend(item);
    output.extend(errors.into_compile_errors());
    output.extend(expansion);
    output.into()
}
