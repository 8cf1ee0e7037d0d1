//! Validate: the rules the macros enforce on what `parse` modeled, one `check_*` per rule. Each
//! error is spanned on the token the user must change and says the rule and the fix.
//!
//! Rules that need types (is `from = X` a domain event? does a returned type declare
//! `from = E`?) cannot be checked here: `expand` emits trait bounds for them, whose messages
//! live on the runtime's traits.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Fields, GenericParam, Generics, Ident, Path, Safety, Type};

use crate::errors::Errors;
use crate::parse::{DomainEventArgs, EventBody, EventItem, Handler, IntegrationEventArgs, Param};

/// The suffix of every integration event's name.
pub(crate) const INTEGRATION_SUFFIX: &str = "IntegrationEvent";

/// Past participles that mean "a record changed" and say nothing of what happened.
const GENERIC_WORDS: &[&str] = &[
    "updated",
    "changed",
    "modified",
    "saved",
    "edited",
    "altered",
    "persisted",
    "stored",
    "upserted",
];

/// Irregular past participles (regular ones end in `-ed`).
const IRREGULAR_PARTICIPLES: &[&str] = &[
    "arisen",
    "awoken",
    "beaten",
    "become",
    "begun",
    "bent",
    "bid",
    "bitten",
    "bled",
    "born",
    "bought",
    "bound",
    "bred",
    "broken",
    "brought",
    "built",
    "burnt",
    "caught",
    "chosen",
    "clung",
    "crept",
    "cut",
    "dealt",
    "done",
    "drawn",
    "dreamt",
    "driven",
    "dug",
    "eaten",
    "fallen",
    "fed",
    "felt",
    "fled",
    "flown",
    "forbidden",
    "forgiven",
    "forgotten",
    "fought",
    "found",
    "frozen",
    "given",
    "gone",
    "got",
    "gotten",
    "ground",
    "grown",
    "held",
    "hidden",
    "hit",
    "hung",
    "kept",
    "knelt",
    "known",
    "laid",
    "leapt",
    "led",
    "left",
    "lent",
    "lit",
    "lost",
    "made",
    "meant",
    "met",
    "mistaken",
    "outbid",
    "overdrawn",
    "overpaid",
    "overridden",
    "overseen",
    "overtaken",
    "overthrown",
    "overwritten",
    "paid",
    "prepaid",
    "put",
    "quit",
    "rebuilt",
    "redone",
    "remade",
    "repaid",
    "resent",
    "reset",
    "resold",
    "rewritten",
    "ridden",
    "risen",
    "rung",
    "said",
    "sat",
    "seen",
    "sent",
    "set",
    "shaken",
    "shed",
    "shot",
    "shown",
    "shut",
    "slept",
    "slid",
    "sold",
    "sought",
    "spent",
    "spilt",
    "split",
    "spoken",
    "spread",
    "spun",
    "stolen",
    "stood",
    "struck",
    "stuck",
    "sung",
    "sunk",
    "swept",
    "sworn",
    "swung",
    "taken",
    "taught",
    "thought",
    "thrown",
    "told",
    "torn",
    "undergone",
    "understood",
    "undertaken",
    "undone",
    "upheld",
    "upset",
    "wept",
    "withdrawn",
    "withheld",
    "withstood",
    "woken",
    "won",
    "worn",
    "wound",
    "written",
];

/// Words that end in `-ed` and are no past participle.
const NOT_PARTICIPLES: &[&str] = &[
    "bed", "breed", "deed", "embed", "feed", "greed", "hundred", "need", "red", "seed", "shred",
    "sled", "speed", "weed",
];

/// Splits a `CamelCase` name into lowercase words: `HTTPRequestSent` → `http`, `request`, `sent`.
pub(crate) fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let boundary = match prev {
            None => false,
            Some(p) if c == '_' || p == '_' => true,
            Some(p) => {
                c.is_uppercase()
                    && (p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(char::is_lowercase)))
            }
        };
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        if c != '_' {
            current.extend(c.to_lowercase());
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Whether `word` (lowercase) is a past participle.
fn is_past_tense(word: &str) -> bool {
    (word.len() > 3 && word.ends_with("ed") && !NOT_PARTICIPLES.contains(&word))
        || IRREGULAR_PARTICIPLES.contains(&word)
}

/// The default contract name: the type's name without the suffix, in kebab-case.
pub(crate) fn default_contract_name(ident: &Ident) -> String {
    let name = ident.unraw().to_string();
    let stem = name.strip_suffix(INTEGRATION_SUFFIX).unwrap_or(&name);
    words(stem).join("-")
}

// ---------------------------------------------------------------------------------------------
// Events

/// Events are concrete types.
pub(crate) fn check_no_generics(generics: &Generics, macro_name: &str, errors: &mut Errors) {
    if !generics.params.is_empty() {
        errors.spanned(
            generics,
            format!(
                "`#[{macro_name}]` types cannot have generic parameters or lifetimes: each event is one concrete, owned type that the registry names and the outbox stores; declare one type per event"
            ),
        );
    }
}

/// The rules of `#[domain_event]`.
pub(crate) fn domain_event(item: &EventItem, args: &DomainEventArgs, errors: &mut Errors) {
    check_no_generics(&item.generics, "domain_event", errors);
    if !check_not_integration_name(&item.ident, errors) {
        return;
    }
    match &item.body {
        EventBody::Struct(_) => check_domain_name(&item.ident, args, errors),
        EventBody::Enum(variants) => {
            for variant in variants {
                check_domain_name(variant, args, errors);
            }
        }
    }
}

/// A domain event is not named like an integration event. Returns whether it is not, so that
/// the other naming rules, which would only repeat the point, are skipped.
fn check_not_integration_name(ident: &Ident, errors: &mut Errors) -> bool {
    let named_like_integration = ident.to_string().ends_with(INTEGRATION_SUFFIX);
    if named_like_integration {
        errors.spanned(
            ident,
            format!(
                "`{ident}` is named like an integration event: a domain event's name is the fact itself, such as `ProductPutOnSale`; if `{ident}` is a contract for other contexts, mark it `#[integration_event(..)]` instead"
            ),
        );
    }
    !named_like_integration
}

/// A domain event's name (or an enum variant's) is specific and in the past tense.
fn check_domain_name(ident: &Ident, args: &DomainEventArgs, errors: &mut Errors) {
    let words = words(&ident.to_string());
    let past: Vec<&String> = words.iter().filter(|w| is_past_tense(w)).collect();
    let generic = past.iter().find(|w| GENERIC_WORDS.contains(&w.as_str()));
    let specific = past.iter().any(|w| !GENERIC_WORDS.contains(&w.as_str()));
    if past.is_empty() && args.allow_non_past_tense.is_none() {
        errors.spanned(
            ident,
            format!(
                "`{ident}` does not say what happened: name a domain event in the past tense, such as `OrderPlaced` or `ProductPutOnSale`; or write `#[domain_event(allow_non_past_tense)]`"
            ),
        );
    } else if let Some(word) = generic.filter(|_| !specific && args.allow_generic_name.is_none()) {
        errors.spanned(
            ident,
            format!(
                "`{ident}` is a generic name: say what happened in the domain's language, such as `PriceReduced`, not that something was {word} (that suits an integration event); or write `#[domain_event(allow_generic_name)]`"
            ),
        );
    }
}

/// The rules of `#[integration_event]`.
pub(crate) fn integration_event(
    item: &EventItem,
    args: &IntegrationEventArgs,
    errors: &mut Errors,
) {
    check_no_generics(&item.generics, "integration_event", errors);
    check_integration_name(&item.ident, errors);
    if let Some(name) = &args.name {
        check_contract_name(&name.value(), name.span(), errors);
    }
    if let Some(version) = &args.version {
        check_version(version, errors);
    }
    if let Some((from, sources)) = &args.from {
        check_sources(from, sources, errors);
    }
    if let Some(key) = &args.key {
        check_key(key, item, errors);
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

/// A contract name is one a broker accepts as a subject or routing key.
pub(crate) fn check_contract_name(name: &str, span: Span, errors: &mut Errors) {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        errors.push(syn::Error::new(
            span,
            format!(
                "`{name}` cannot be a contract name: use letters, digits, `-` and `_`, in segments separated by single dots, such as `catalog.product-updated`"
            ),
        ));
    }
}

/// A version is a whole number from 1.
fn check_version(version: &syn::LitInt, errors: &mut Errors) {
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
fn check_sources(from: &proc_macro2::TokenStream, sources: &[Path], errors: &mut Errors) {
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
fn check_key(key: &Ident, item: &EventItem, errors: &mut Errors) {
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

/// A path as the user wrote it: `events::ProductPutOnSale`.
pub(crate) fn path_name(path: &Path) -> String {
    tokens_name(path)
}

/// Tokens as a user would write them: `Box<dyn Mailer>`, `events::ProductPutOnSale`, not the
/// spaced-out `Box < dyn Mailer >` that printing tokens gives.
pub(crate) fn tokens_name(tokens: &impl ToTokens) -> String {
    let spaced = tokens.to_token_stream().to_string();
    let mut name = String::with_capacity(spaced.len());
    let chars: Vec<char> = spaced.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let before = i.checked_sub(1).map(|p| chars[p]);
            let after = chars.get(i + 1).copied();
            let tight = |c: Option<char>| {
                matches!(c, Some(':' | '<' | '>' | '&' | ',' | '(' | ')' | '[' | ']'))
            };
            // Keep the space after a comma and between words (`dyn Mailer`, `&'a str`).
            let keep = before == Some(',') || (!tight(before) && !tight(after));
            if !keep {
                continue;
            }
        }
        name.push(c);
    }
    name
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// The rules of `#[handles]` that `parse` does not need to model the function.
pub(crate) fn handler(handler: &Handler, errors: &mut Errors) {
    let sig = &handler.func.sig;
    let type_params: Vec<&GenericParam> = sig
        .generics
        .params
        .iter()
        .filter(|p| !matches!(p, GenericParam::Lifetime(_)))
        .collect();
    if !type_params.is_empty() {
        errors.spanned(
            &sig.generics,
            "`#[handles]` functions cannot be generic: the registry holds one concrete function per event type; write one handler per event",
        );
    }
    let transactions: Vec<&Type> = handler
        .params
        .iter()
        .filter_map(|param| match param {
            Param::Transaction { written, .. } => Some(&**written),
            _ => None,
        })
        .collect();
    if let Some(first) = transactions.first()
        && sig.asyncness.is_none()
    {
        errors.spanned(
            first,
            "a handler that takes the store's transaction is an `async fn`: its database work is awaited inside the transaction; write `async fn`",
        );
    }
    for extra in transactions.iter().skip(1) {
        errors.spanned(
            extra,
            "a handler takes the store's transaction once: its effect, its completion and the integration events it produces commit in that one transaction; remove this parameter",
        );
    }
    if let Safety::Unsafe(token) = &sig.safety {
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
    fn splits_camel_case_into_words() {
        assert_eq!(words("ProductPutOnSale"), ["product", "put", "on", "sale"]);
        assert_eq!(words("HTTPRequestSent"), ["http", "request", "sent"]);
        assert_eq!(words("Order2Shipped"), ["order2", "shipped"]);
        assert_eq!(words("Snake_Case"), ["snake", "case"]);
    }

    #[test]
    fn recognizes_past_participles() {
        for word in [
            "placed",
            "put",
            "sold",
            "withdrawn",
            "reset",
            "agreed",
            "shipped",
        ] {
            assert!(is_past_tense(word), "{word}");
        }
        for word in ["place", "need", "feed", "red", "sale", "ed"] {
            assert!(!is_past_tense(word), "{word}");
        }
    }

    #[test]
    fn derives_contract_names_in_kebab_case() {
        let name = |s: &str| default_contract_name(&Ident::new(s, Span::call_site()));
        assert_eq!(name("ProductUpdatedIntegrationEvent"), "product-updated");
        assert_eq!(name("HTTPRequestSentIntegrationEvent"), "http-request-sent");
    }

    #[test]
    fn names_types_as_users_write_them() {
        let name = |s: &str| tokens_name(&syn::parse_str::<syn::Type>(s).unwrap());
        assert_eq!(name("Box<dyn Mailer>"), "Box<dyn Mailer>");
        assert_eq!(name("&'static str"), "&'static str");
        assert_eq!(name("crate::events::X"), "crate::events::X");
        assert_eq!(name("HashMap<String, Vec<u8>>"), "HashMap<String, Vec<u8>>");
    }

    #[test]
    fn accepts_broker_safe_contract_names_only() {
        let valid = |name: &str| {
            let mut errors = Errors::default();
            check_contract_name(name, Span::call_site(), &mut errors);
            errors.is_empty()
        };
        assert!(valid("catalog.product-updated"));
        assert!(valid("catalog.product_updated.v2"));
        for name in ["", "a b", "a..b", ".a", "a.", "a.*", "a.>"] {
            assert!(!valid(name), "{name:?}");
        }
    }
}
