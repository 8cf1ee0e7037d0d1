//! The item model: the struct or enum under an event macro, and the function under
//! `#[handles]` with its parameters and return type. Errors that leave nothing to model are
//! reported here; the rules are `validate`'s.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{
    Abi, Attribute, Fields, FnArg, GenericArgument, Generics, Ident, Item, PathArguments,
    ReturnType, Signature, Token, Type, Visibility, braced,
};

use crate::errors::Errors;
use crate::names::tokens_name;

/// A struct or an enum under an event macro.
pub(crate) struct EventItem {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) body: EventBody,
    /// Whether the item derives `JsonSchema` itself, as `#[derive(schemars::JsonSchema)]`.
    pub(crate) derives_schema: bool,
    /// The types of the fields its JSON Schema is made of: every field's, but those that serde
    /// never reads (`skip`, `skip_deserializing`) or reads through a function (`with`,
    /// `deserialize_with`), and those whose schema is given (`#[schemars(with = ..)]`).
    pub(crate) schema_fields: Vec<Type>,
}

/// The part of an event item that the rules look at.
pub(crate) enum EventBody {
    /// A struct and its fields.
    Struct(Fields),
    /// An enum and its variants' names.
    Enum(Vec<Ident>),
}

impl EventItem {
    /// Parses the item under `#[macro_name]`; anything but a struct or an enum is an error,
    /// whose message ends with `why`, the reason the macro wants data.
    pub(crate) fn parse(item: TokenStream, macro_name: &str, why: &str) -> syn::Result<EventItem> {
        let item: Item = syn::parse2(item)?;
        let (ident, generics, body, attrs, schema_fields) = match item {
            Item::Struct(s) => {
                let schema_fields = schema_fields(&s.fields);
                (
                    s.ident,
                    s.generics,
                    EventBody::Struct(s.fields),
                    s.attrs,
                    schema_fields,
                )
            }
            Item::Enum(e) => {
                let schema_fields = e
                    .variants
                    .iter()
                    .filter(|v| !v.attrs.iter().any(|a| names_one_of(a, SKIPPED)))
                    .flat_map(|v| schema_fields(&v.fields))
                    .collect();
                let variants = e.variants.into_iter().map(|v| v.ident).collect();
                (
                    e.ident,
                    e.generics,
                    EventBody::Enum(variants),
                    e.attrs,
                    schema_fields,
                )
            }
            other => {
                let (what, span) = item_kind(&other);
                return Err(syn::Error::new(
                    span,
                    format!("`#[{macro_name}]` goes on a struct or an enum, not on {what}: {why}"),
                ));
            }
        };
        Ok(EventItem {
            ident,
            generics,
            body,
            derives_schema: attrs.iter().any(derives_json_schema),
            schema_fields,
        })
    }
}

/// What takes a field or a variant out of the schema, or gives its schema another way, in a
/// `#[serde(..)]` or `#[schemars(..)]` attribute.
const SKIPPED: &[&str] = &[
    "skip",
    "skip_deserializing",
    "with",
    "deserialize_with",
    "schema_with",
];

/// The types of `fields` that their schema is made of.
fn schema_fields(fields: &Fields) -> Vec<Type> {
    fields
        .iter()
        .filter(|f| !f.attrs.iter().any(|a| names_one_of(a, SKIPPED)))
        .map(|f| f.ty.clone())
        .collect()
}

/// Whether `attr` is `#[serde(..)]` or `#[schemars(..)]` with one of `words` at its top level.
fn names_one_of(attr: &Attribute, words: &[&str]) -> bool {
    let helper = attr.path().is_ident("serde") || attr.path().is_ident("schemars");
    let Ok(list) = attr.meta.require_list() else {
        return false;
    };
    helper
        && list.tokens.clone().into_iter().any(
            |token| matches!(token, TokenTree::Ident(ident) if words.iter().any(|w| ident == w)),
        )
}

/// Whether `attr` is a `#[derive(..)]` that lists `JsonSchema` (by any path).
fn derives_json_schema(attr: &Attribute) -> bool {
    if !attr.path().is_ident("derive") {
        return false;
    }
    let Ok(list) = attr.meta.require_list() else {
        return false;
    };
    list.tokens
        .clone()
        .into_iter()
        .any(|token| matches!(token, TokenTree::Ident(ident) if ident == "JsonSchema"))
}

/// What an item is, in words, and the span of its keyword.
fn item_kind(item: &Item) -> (&'static str, Span) {
    match item {
        Item::Union(u) => ("a union", u.union_token.span),
        Item::Trait(t) => ("a trait", t.trait_token.span),
        Item::Fn(f) => ("a function", f.sig.fn_token.span),
        Item::Type(t) => ("a type alias", t.type_token.span),
        Item::Impl(i) => ("an impl block", i.impl_token.span),
        Item::Mod(m) => ("a module", m.mod_token.span),
        Item::Const(c) => ("a constant", c.const_token.span),
        Item::Static(s) => ("a static", s.static_token.span),
        Item::Struct(s) => ("a struct", s.struct_token.span),
        Item::Enum(e) => ("an enum", e.enum_token.span),
        other => ("this item", other.span()),
    }
}

/// A `#[handles]` function.
pub(crate) struct Handler {
    /// Its signature. The body is read as tokens only: it is rustc's to check, so a mistake in
    /// it gets rustc's error alone, and the handler is registered all the same.
    pub(crate) sig: Signature,
    /// `E` of the first parameter `&E`.
    pub(crate) event: Type,
    /// The parameters after the event.
    pub(crate) params: Vec<Param>,
    /// What it returns.
    pub(crate) output: Output,
}

/// A parameter after the event.
pub(crate) enum Param {
    /// `Dep<T>`, with `T`.
    Dep(Box<Type>),
    /// `EventMeta` (cloned) or `&EventMeta`.
    Meta { by_ref: bool },
    /// `DomainEvents`: the publisher of the handler's context.
    Publisher,
    /// `&mut X`: the store's transaction, the only parameter taken by `&mut`. `db` is the `DB`
    /// of `X` written `Transaction<'_, DB>`; for another `X`, such as a type alias, the
    /// expansion finds it through `X`'s type.
    Transaction {
        db: Option<Box<Type>>,
        target: Box<Type>,
        written: Box<Type>,
    },
    /// A type path taken by value that is none of the above by its spelling, such as a type
    /// alias of `Dep<T>`: resolved by its type.
    ByType(Box<Type>),
    /// `&X`, where `X` is a type path that is not `EventMeta` by its spelling: resolved by its
    /// type.
    RefByType(Box<Type>),
}

/// A handler's return type.
pub(crate) struct Output {
    /// `E` of `Result<_, E>`.
    pub(crate) error: Option<Type>,
    /// The integration events it produces.
    pub(crate) produces: Produces,
}

/// The successful part of a handler's return type.
pub(crate) enum Produces {
    /// `()`.
    Nothing,
    /// `I`.
    One(Type),
    /// `Option<I>`.
    Option(Type),
    /// `Vec<I>`.
    Vec(Type),
}

impl Produces {
    /// The integration event type `I`, if any.
    pub(crate) fn event(&self) -> Option<&Type> {
        match self {
            Produces::Nothing => None,
            Produces::One(ty) | Produces::Option(ty) | Produces::Vec(ty) => Some(ty),
        }
    }
}

pub(crate) const RETURN_FORMS: &str = "`()`, `Result<(), E>`, an integration event `I`, `Option<I>`, `Vec<I>`, or one of those in `Result<_, E>`";

impl Handler {
    /// Parses the function under `#[handles]`. Returns `None`, with the errors recorded, when
    /// it is no function or its signature has a part that cannot be modeled.
    pub(crate) fn parse(item: TokenStream, errors: &mut Errors) -> Option<Handler> {
        let sig = match signature.parse2(item.clone()) {
            Ok(Some(sig)) => sig,
            Ok(None) => {
                errors.push(not_a_function(item));
                return None;
            }
            Err(error) => {
                errors.push(error);
                return None;
            }
        };
        let mut inputs = sig.inputs.iter();
        let first = inputs.next();
        let event = match first {
            None => {
                errors.spanned(
                    &sig.ident,
                    format!(
                        "`{}` takes no parameter: a `#[handles]` function takes the event it handles as its first parameter, `event: &MyEvent`",
                        sig.ident
                    ),
                );
                None
            }
            Some(FnArg::Receiver(receiver)) => {
                errors.spanned(
                    receiver.self_token,
                    format!(
                        "`#[handles]` goes on a free function, not on a method: write a free function `{}(event: &MyEvent, ..)` outside the `impl` block, and call the method from it",
                        sig.ident
                    ),
                );
                None
            }
            Some(FnArg::Typed(first)) => event_param(&first.ty, errors),
        };
        // After a `self`, the parameters are a method's: no use reporting them too.
        let is_method = matches!(first, Some(FnArg::Receiver(_)));
        let params: Vec<Param> = inputs
            .take_while(|_| !is_method)
            .filter_map(|input| match input {
                FnArg::Typed(param) => extra_param(&param.ty, errors),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let output = output(&sig.output, errors);
        let (Some(event), Some(output)) = (event, output) else {
            return None;
        };
        if !errors.is_empty() {
            return None;
        }
        Some(Handler {
            sig,
            event,
            params,
            output,
        })
    }
}

/// The signature of a function item, its body left unparsed; `None` if the item is no function.
fn signature(input: ParseStream) -> syn::Result<Option<Signature>> {
    input.call(Attribute::parse_outer)?;
    input.parse::<Visibility>()?;
    let fork = input.fork();
    let is_fn = fork.parse::<Option<Token![const]>>().is_ok()
        && fork.parse::<Option<Token![async]>>().is_ok()
        && fork.parse::<Option<Token![unsafe]>>().is_ok()
        && fork.parse::<Option<Abi>>().is_ok()
        && fork.peek(Token![fn]);
    if !is_fn {
        input.parse::<TokenStream>()?;
        return Ok(None);
    }
    let sig: Signature = input.parse()?;
    let body;
    braced!(body in input);
    body.parse::<TokenStream>()?;
    Ok(Some(sig))
}

/// The error for `#[handles]` on an item that is no function.
fn not_a_function(item: TokenStream) -> syn::Error {
    match syn::parse2::<Item>(item) {
        Ok(item) => {
            let (what, span) = item_kind(&item);
            syn::Error::new(
                span,
                format!("`#[handles]` goes on a free `fn` or `async fn`, not on {what}"),
            )
        }
        Err(error) => error,
    }
}

/// `ty` without the invisible groups of a `$t:ty` macro fragment and without parentheses.
fn bare(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// `E` from the first parameter `&E`.
fn event_param(ty: &Type, errors: &mut Errors) -> Option<Type> {
    match bare(ty) {
        Type::Reference(r) if r.mutability.is_none() => Some((*r.elem).clone()),
        Type::Reference(r) => {
            errors.spanned(
                r.mutability,
                "a handler takes the event by shared reference, `&E`: several handlers read the same event, none may change it",
            );
            None
        }
        _ => {
            errors.spanned(
                ty,
                "the first parameter of a `#[handles]` function is the event it handles, by reference: `event: &MyEvent`",
            );
            None
        }
    }
}

/// The last segment of a type path, if `ty` is a path.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match bare(ty) {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// The type arguments of `segment` (`<A, B>`), lifetimes left out.
fn type_args(segment: &syn::PathSegment) -> Vec<&Type> {
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The parameters a `#[handles]` function takes after the event, in words.
const PARAMETERS: &str = "`Dep<T>` (a provided dependency), `EventMeta`, `&EventMeta`, `DomainEvents` or `&mut Transaction<'_, DB>` (the store's transaction)";

/// A parameter after the event: `Dep<T>`, `EventMeta`, `&EventMeta`, `DomainEvents` or
/// `&mut Transaction<'_, DB>` by their spelling. Another type path, such as a type alias of one
/// of them, is left to the expansion, which resolves it by its type; a form that is none of
/// them whatever its types is an error here.
fn extra_param(ty: &Type, errors: &mut Errors) -> Option<Param> {
    let ty = bare(ty);
    let known = |ty: &Type, names: &[&str]| {
        last_segment(ty).is_some_and(|s| names.iter().any(|name| s.ident == name))
    };
    let hint = match ty {
        Type::Reference(r) if r.mutability.is_some() => {
            let target = bare(&r.elem);
            if let Some(segment) = last_segment(target)
                && segment.ident == "Transaction"
                && let [db] = type_args(segment).as_slice()
            {
                return Some(Param::Transaction {
                    db: Some(Box::new((*db).clone())),
                    target: Box::new(target.clone()),
                    written: Box::new(ty.clone()),
                });
            }
            if by_type(target) && !known(target, &["Dep", "DomainEvents", "EventMeta"]) {
                return Some(Param::Transaction {
                    db: None,
                    target: Box::new(target.clone()),
                    written: Box::new(ty.clone()),
                });
            }
            if known(target, &["Dep", "DomainEvents"]) {
                "; take it by value, without `&mut`".to_owned()
            } else if known(target, &["EventMeta"]) {
                "; take `EventMeta` or `&EventMeta`, without `mut`".to_owned()
            } else {
                String::new()
            }
        }
        Type::Reference(r) => {
            let target = bare(&r.elem);
            if let Some(segment) = last_segment(target)
                && segment.ident == "EventMeta"
                && type_args(segment).is_empty()
            {
                return Some(Param::Meta { by_ref: true });
            }
            if by_type(target) && !known(target, &["Dep", "DomainEvents", "Transaction"]) {
                return Some(Param::RefByType(Box::new(target.clone())));
            }
            if known(target, &["Dep", "DomainEvents"]) {
                "; take it by value, without `&`".to_owned()
            } else if known(target, &["Transaction"]) {
                "; take the store's transaction by `&mut`".to_owned()
            } else {
                let inner = tokens_name(target);
                format!(
                    "; to use a `{inner}`, take `Dep<{inner}>` and provide the value to the app"
                )
            }
        }
        _ => {
            if let Some(segment) = last_segment(ty) {
                let args = type_args(segment);
                match (segment.ident.to_string().as_str(), args.as_slice()) {
                    ("EventMeta", []) => return Some(Param::Meta { by_ref: false }),
                    ("Dep", [dep]) => return Some(Param::Dep(Box::new((*dep).clone()))),
                    ("DomainEvents", []) => return Some(Param::Publisher),
                    ("Transaction", _) => {
                        return unsupported(
                            ty,
                            "; take the store's transaction by `&mut`, `&mut Transaction<'_, DB>`",
                            errors,
                        );
                    }
                    ("EventMeta" | "Dep" | "DomainEvents", _) => {
                        return unsupported(ty, "", errors);
                    }
                    _ => {}
                }
            }
            if by_type(ty) {
                return Some(Param::ByType(Box::new(ty.clone())));
            }
            String::new()
        }
    };
    unsupported(ty, &hint, errors)
}

/// Whether `ty` may be a handler parameter by its type though not by its spelling: a type path,
/// such as a type alias, or a macro that expands to a type.
fn by_type(ty: &Type) -> bool {
    matches!(bare(ty), Type::Path(_) | Type::Macro(_))
}

/// The error for a parameter that is no handler parameter, whatever its types.
fn unsupported(ty: &Type, hint: &str, errors: &mut Errors) -> Option<Param> {
    errors.spanned(
        ty,
        format!(
            "unsupported parameter: after the event, a `#[handles]` function takes {PARAMETERS}{hint}"
        ),
    );
    None
}

/// The model of a return type.
fn output(ret: &ReturnType, errors: &mut Errors) -> Option<Output> {
    let ty = match ret {
        ReturnType::Default => {
            return Some(Output {
                error: None,
                produces: Produces::Nothing,
            });
        }
        ReturnType::Type(_, ty) => bare(ty),
    };
    let unsupported = |errors: &mut Errors, at: &Type| {
        errors.spanned(
            at,
            format!("unsupported return type: a `#[handles]` function returns {RETURN_FORMS}"),
        );
    };
    let (ok, error) = match last_segment(ty) {
        Some(segment) if segment.ident == "Result" => match type_args(segment).as_slice() {
            [ok, error] => (*ok, Some((*error).clone())),
            _ => {
                errors.spanned(
                    ty,
                    "write the error type of `Result` out, `Result<T, E>`: tidings checks that `E` implements `std::error::Error`",
                );
                return None;
            }
        },
        _ => (ty, None),
    };
    let ok = bare(ok);
    let produces = match ok {
        Type::Tuple(t) if t.elems.is_empty() => Produces::Nothing,
        Type::Path(_) => {
            let segment = last_segment(ok);
            let args = segment.map(type_args).unwrap_or_default();
            match (
                segment.map(|s| s.ident.to_string()).as_deref(),
                args.as_slice(),
            ) {
                (Some("Option"), [event]) => Produces::Option((*event).clone()),
                (Some("Vec"), [event]) => Produces::Vec((*event).clone()),
                (Some("Result"), _) => {
                    unsupported(errors, ok);
                    return None;
                }
                _ => Produces::One(ok.clone()),
            }
        }
        _ => {
            unsupported(errors, ok);
            return None;
        }
    };
    Some(Output { error, produces })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn a_handler_body_is_left_to_rustc() {
        let mut errors = Errors::default();
        let item = quote! {
            /// Docs.
            pub(crate) async fn project(event: &ProductPutOnSale) {
                let id = event.id.clone()
                println!("{id}");
            }
        };
        let handler = Handler::parse(item, &mut errors).expect("the signature is modeled");
        assert!(errors.is_empty());
        assert_eq!(handler.sig.ident, "project");
    }

    /// The parameters of `item`, modeled, and the errors.
    fn params(item: TokenStream) -> (Vec<Param>, Vec<String>) {
        let mut errors = Errors::default();
        let sig: Signature = syn::parse2(item).unwrap();
        let params = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(param) => extra_param(&param.ty, &mut errors),
                FnArg::Receiver(_) => None,
            })
            .collect();
        (params, errors.messages())
    }

    #[test]
    fn parameters_are_recognised_by_their_spelling_first() {
        let (params, errors) = params(quote! {
            fn f(a: Dep<Catalog>, b: EventMeta, c: &EventMeta, d: DomainEvents, e: &mut sqlx::Transaction<'_, Sqlite>)
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(
            params.as_slice(),
            [
                Param::Dep(_),
                Param::Meta { by_ref: false },
                Param::Meta { by_ref: true },
                Param::Publisher,
                Param::Transaction { db: Some(_), .. },
            ]
        ));
    }

    #[test]
    fn other_type_paths_are_left_to_their_types() {
        let (params, errors) = params(quote! {
            fn f(a: Recs, b: &Meta, c: &mut Tx<'_>, d: &mut store::Transaction<'a>, e: deps!())
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(
            params.as_slice(),
            [
                Param::ByType(_),
                Param::RefByType(_),
                Param::Transaction { db: None, .. },
                Param::Transaction { db: None, .. },
                Param::ByType(_),
            ]
        ));
    }

    #[test]
    fn forms_that_no_type_makes_a_parameter_are_refused_by_the_macro() {
        let (params, errors) = params(quote! {
            fn f(a: &Dep<Catalog>, b: &mut DomainEvents, c: Transaction<'_, Sqlite>, d: (u32, u32), e: &[u8])
        });
        assert!(params.is_empty());
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("take it by value, without `&`"));
        assert!(errors[1].contains("take it by value, without `&mut`"));
        assert!(errors[2].contains("take the store's transaction by `&mut`"));
        assert!(errors.iter().all(|e| e.contains("unsupported parameter")));
    }
}
