//! Validate: the rules the macros enforce on what `args` and `ast` modeled, one `check_*` per
//! rule, listed in one function per macro. Each error is spanned on the token the user must
//! change and says the rule and the fix.
//!
//! Rules that need types (is `from = X` a domain event? does a returned type declare
//! `from = E`?) cannot be checked here: `expand` emits trait bounds for them, whose messages
//! live on the runtime's traits.

use syn::{Fields, GenericParam, Generics, Ident, Safety, Type};

use crate::args::{
    ALLOW_GENERIC_NAME, ALLOW_NON_PAST_TENSE, DomainEventArgs, IntegrationEventArgs,
};
use crate::ast::{EventBody, EventItem, Handler, Param};
use crate::errors::Errors;
use crate::names::{INTEGRATION_SUFFIX, is_generic_word, is_past_tense, path_name, words};

/// The rules of `#[domain_event]`.
pub(crate) fn domain_event(item: &EventItem, args: &DomainEventArgs, errors: &mut Errors) {
    check_no_generics(&item.generics, "domain_event", errors);
    check_not_integration_name(&item.ident, errors);
    check_domain_names(item, args, errors);
}

/// The rules of `#[integration_event]`.
pub(crate) fn integration_event(
    item: &EventItem,
    args: &IntegrationEventArgs,
    errors: &mut Errors,
) {
    check_no_generics(&item.generics, "integration_event", errors);
    check_integration_name(&item.ident, errors);
    check_contract_name(args, errors);
    check_version(args, errors);
    check_sources(args, errors);
    check_key(item, args, errors);
}

/// The rules of `#[handles]` that `ast` does not need to model the function.
pub(crate) fn handler(handler: &Handler, errors: &mut Errors) {
    check_handler_not_generic(handler, errors);
    check_transaction_in_async_fn(handler, errors);
    check_transaction_once(handler, errors);
    check_handler_not_unsafe(handler, errors);
}

/// Events are concrete types.
fn check_no_generics(generics: &Generics, macro_name: &str, errors: &mut Errors) {
    if !generics.params.is_empty() {
        errors.spanned(
            generics,
            format!(
                "`#[{macro_name}]` types cannot have generic parameters or lifetimes: each event is one concrete, owned type that the registry names and the outbox stores; declare one type per event"
            ),
        );
    }
}

/// Whether `ident` is named like an integration event.
fn is_integration_name(ident: &Ident) -> bool {
    ident.to_string().ends_with(INTEGRATION_SUFFIX)
}

/// A domain event is not named like an integration event.
fn check_not_integration_name(ident: &Ident, errors: &mut Errors) {
    if is_integration_name(ident) {
        errors.spanned(
            ident,
            format!(
                "`{ident}` is named like an integration event: a domain event's name is the fact itself, such as `ProductPutOnSale`; if `{ident}` is a contract for other contexts, mark it `#[integration_event(..)]` instead"
            ),
        );
    }
}

/// A domain event's name says what happened: a struct's own name; an enum's own name when it
/// states the fact (`PaymentReceived { Card, Cash }`: one event whose variants are kinds of it);
/// otherwise, for an enum named for a family of events (`OrderEvent { Placed, Cancelled }`),
/// each variant's name.
fn check_domain_names(item: &EventItem, args: &DomainEventArgs, errors: &mut Errors) {
    // Named like an integration event: `check_not_integration_name` said it, and the other
    // naming rules would only repeat the point.
    if is_integration_name(&item.ident) {
        return;
    }
    match &item.body {
        EventBody::Enum(variants) if !has_past_tense(&item.ident) => {
            for variant in variants {
                check_domain_name(variant, args, errors);
            }
        }
        EventBody::Struct(_) | EventBody::Enum(_) => check_domain_name(&item.ident, args, errors),
    }
}

/// Whether a word of `ident` is in the past tense.
fn has_past_tense(ident: &Ident) -> bool {
    words(&ident.to_string()).iter().any(|w| is_past_tense(w))
}

/// A domain event's name (or an enum variant's) is specific and in the past tense.
fn check_domain_name(ident: &Ident, args: &DomainEventArgs, errors: &mut Errors) {
    let words = words(&ident.to_string());
    let past: Vec<&String> = words.iter().filter(|w| is_past_tense(w)).collect();
    let generic = past.iter().find(|w| is_generic_word(w));
    let specific = past.iter().any(|w| !is_generic_word(w));
    if past.is_empty() && args.allow_non_past_tense.is_none() {
        errors.spanned(
            ident,
            format!(
                "`{ident}` does not say what happened: name a domain event in the past tense, such as `OrderPlaced` or `ProductPutOnSale`; or write `#[domain_event({ALLOW_NON_PAST_TENSE})]`"
            ),
        );
    } else if let Some(word) = generic.filter(|_| !specific && args.allow_generic_name.is_none()) {
        errors.spanned(
            ident,
            format!(
                "`{ident}` is a generic name: say what happened in the domain's language, such as `PriceReduced`, not that something was {word} (that suits an integration event); or write `#[domain_event({ALLOW_GENERIC_NAME})]`"
            ),
        );
    }
}

/// An integration event's name ends in `IntegrationEvent`.
fn check_integration_name(ident: &Ident, errors: &mut Errors) {
    let name = ident.to_string();
    match name.strip_suffix(INTEGRATION_SUFFIX) {
        Some(stem) if !stem.is_empty() => {}
        Some(_) => errors.spanned(
            ident,
            format!(
                "an integration event's name says which contract it is before `{INTEGRATION_SUFFIX}`, such as `ProductUpdatedIntegrationEvent`"
            ),
        ),
        None => errors.spanned(
            ident,
            format!(
                "`{ident}` is an integration event, so its name ends in `{INTEGRATION_SUFFIX}`: rename it `{ident}{INTEGRATION_SUFFIX}`; if it is a fact inside this context, mark it `#[domain_event]` instead"
            ),
        ),
    }
}

/// Whether a broker accepts `name` as a subject or routing key.
fn is_valid_contract_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A contract name is one a broker accepts as a subject or routing key.
fn check_contract_name(args: &IntegrationEventArgs, errors: &mut Errors) {
    let Some(lit) = &args.name else { return };
    let name = lit.value();
    if !is_valid_contract_name(&name) {
        errors.spanned(
            lit,
            format!(
                "`{name}` cannot be a contract name: use letters, digits, `-` and `_`, in segments separated by single dots, such as `catalog.product-updated`"
            ),
        );
    }
}

/// A version is a whole number from 1.
fn check_version(args: &IntegrationEventArgs, errors: &mut Errors) {
    let Some(version) = &args.version else { return };
    match version.base10_parse::<u32>() {
        Ok(0) => errors.spanned(version, "contract versions start at 1: `version = 1`"),
        Ok(_) => {}
        Err(_) => errors.spanned(
            version,
            "`version` takes a whole number from 1 to 4294967295: `version = 2`",
        ),
    }
}

/// `from` lists at least one domain event, each once.
fn check_sources(args: &IntegrationEventArgs, errors: &mut Errors) {
    let Some((from, sources)) = &args.from else {
        return;
    };
    if sources.is_empty() {
        errors.spanned(
            from,
            "`from = []` lists no domain event: list the domain events this contract is a reaction to, or leave `from` out for a contract this program only consumes",
        );
    }
    for (i, source) in sources.iter().enumerate() {
        let name = path_name(source);
        if sources[..i]
            .iter()
            .any(|earlier| path_name(earlier) == name)
        {
            errors.spanned(
                source,
                format!("`{name}` is listed twice in `from`: list each domain event once"),
            );
        }
    }
}

/// `key` names a field of the struct.
fn check_key(item: &EventItem, args: &IntegrationEventArgs, errors: &mut Errors) {
    let Some(key) = &args.key else { return };
    match &item.body {
        EventBody::Struct(Fields::Named(fields)) => {
            let exists = fields.named.iter().any(|f| f.ident.as_ref() == Some(key));
            if !exists {
                let names: Vec<String> = fields
                    .named
                    .iter()
                    .filter_map(|f| f.ident.as_ref().map(|i| format!("`{i}`")))
                    .collect();
                errors.spanned(
                    key,
                    format!(
                        "`{}` has no field `{key}`: `key` names the field that orders publication; its fields are {}",
                        item.ident,
                        names.join(", ")
                    ),
                );
            }
        }
        EventBody::Struct(_) => errors.spanned(
            key,
            format!(
                "`key` names a field, and `{}` has no named fields: give it named fields, or leave `key` out",
                item.ident
            ),
        ),
        EventBody::Enum(_) => errors.spanned(
            key,
            format!(
                "`key` names a field of a struct, and `{}` is an enum: make the contract a struct, or leave `key` out",
                item.ident
            ),
        ),
    }
}

/// A handler is one concrete function.
fn check_handler_not_generic(handler: &Handler, errors: &mut Errors) {
    let generics = &handler.sig.generics;
    let type_params = generics
        .params
        .iter()
        .any(|p| !matches!(p, GenericParam::Lifetime(_)));
    if type_params {
        errors.spanned(
            generics,
            "`#[handles]` functions cannot be generic: the registry holds one concrete function per event type; write one handler per event",
        );
    }
}

/// The store's transactions a handler takes, as written.
fn transactions(handler: &Handler) -> impl Iterator<Item = &Type> {
    handler.params.iter().filter_map(|param| match param {
        Param::Transaction { written, .. } => Some(&**written),
        _ => None,
    })
}

/// A handler that takes the store's transaction is async.
fn check_transaction_in_async_fn(handler: &Handler, errors: &mut Errors) {
    if let Some(first) = transactions(handler).next()
        && handler.sig.asyncness.is_none()
    {
        errors.spanned(
            first,
            "a handler that takes the store's transaction is an `async fn`: its database work is awaited inside the transaction; write `async fn`",
        );
    }
}

/// A handler takes the store's transaction at most once.
fn check_transaction_once(handler: &Handler, errors: &mut Errors) {
    for extra in transactions(handler).skip(1) {
        errors.spanned(
            extra,
            "a handler takes the store's transaction once: its effect, its completion and the integration events it produces commit in that one transaction; remove this parameter",
        );
    }
}

/// A handler is safe to call.
fn check_handler_not_unsafe(handler: &Handler, errors: &mut Errors) {
    if let Safety::Unsafe(token) = &handler.sig.safety {
        errors.spanned(
            token,
            "`#[handles]` functions cannot be `unsafe`: the runtime calls them with no way to uphold their contract; make the function safe and put the `unsafe` block inside",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_broker_safe_contract_names_only() {
        let valid = is_valid_contract_name;
        assert!(valid("catalog.product-updated"));
        assert!(valid("catalog.product_updated.v2"));
        for name in ["", "a b", "a..b", ".a", "a.", "a.*", "a.>"] {
            assert!(!valid(name), "{name:?}");
        }
    }
}
