//! Expand: the code each macro emits. Every path to the runtime goes through `__private` of
//! the `tidings` crate (`::tidings`, or the path given with `crate = ".."`), and every item is
//! inside `const _: () = { .. };` so that no name leaks into the user's module.
//!
//! Checks that need types are emitted as calls whose tokens carry the span of the user's type,
//! so a failed bound points at that type and shows the message of the runtime's trait.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Path, Type};

use crate::args::{DomainEventArgs, HandlesArgs, IntegrationEventArgs};
use crate::ast::{EventBody, EventItem, Handler, Param, Produces};
use crate::names::{default_contract_name, path_name, tokens_name};

/// `#krate::__private`: where the expansions find everything of the runtime.
fn private(krate: &Path) -> TokenStream {
    quote!(#krate::__private)
}

/// `tokens` with every token at `span`: in a `quote_spanned!`, so that the whole expression, its
/// path to the runtime included, points where the user's token is.
fn at(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

/// Where an item is declared, for the registry.
fn origin(private: &TokenStream) -> TokenStream {
    quote! {
        #private::Origin::new(
            ::core::module_path!(), ::core::file!(), ::core::line!(), ::core::column!(),
        )
    }
}

/// A `TypeRef` to `ty`, named `name`.
fn type_ref(private: &TokenStream, ty: impl ToTokens, name: &str) -> TokenStream {
    quote! {
        #private::TypeRef::new(::core::any::TypeId::of::<#ty>(), #name)
    }
}

/// A type as the user wrote it.
fn type_name(ty: &Type) -> String {
    tokens_name(ty)
}

/// `ty` with every named lifetime, such as the handler's `'a`, made `'_`: it is written in the
/// expansion's items, where the handler's lifetimes are not declared.
fn inferred_lifetimes(ty: &Type) -> TokenStream {
    fn rewrite(tokens: TokenStream) -> TokenStream {
        let mut after_quote = false;
        tokens
            .into_iter()
            .map(|token| {
                let token = match token {
                    TokenTree::Group(group) => {
                        let mut rewritten = Group::new(group.delimiter(), rewrite(group.stream()));
                        rewritten.set_span(group.span());
                        TokenTree::Group(rewritten)
                    }
                    TokenTree::Ident(ident) if after_quote && ident != "static" => {
                        TokenTree::Ident(Ident::new("_", ident.span()))
                    }
                    other => other,
                };
                after_quote = matches!(&token, TokenTree::Punct(p) if p.as_char() == '\'');
                token
            })
            .collect()
    }
    rewrite(ty.to_token_stream())
}

/// The `Event` impl of an event type, and the `SealedEvent` impl that only the event macros write.
/// Spanned on its name: a type that is not serde-serializable gets the error there.
fn event_impl(private: &TokenStream, ident: &Ident, kind: &str) -> TokenStream {
    let name = ident.unraw().to_string();
    let kind = Ident::new(kind, Span::call_site());
    let p = at(private, ident.span());
    let event = quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl #p::Event for #ident
        where
            for<'__tidings> #ident: #p::EventData,
        {
            const NAME: &'static str = #name;
            const KIND: #p::EventKind = #p::EventKind::#kind;
        }
        const _: () = #p::check_event_serde::<#ident>();
        const _: () = #p::check_event_threads::<#ident>();
    };
    quote! {
        #[automatically_derived]
        impl #private::SealedEvent for #ident {}
        #event
    }
}

/// The registry's decoder of an event type: a probe, so that a type that is not
/// deserializable gets one error, from `check_event_serde`.
fn decoder(private: &TokenStream, ident: &Ident) -> TokenStream {
    quote! {
        fn __tidings_decoder() -> ::core::option::Option<#private::Decode> {
            #[allow(unused_imports)]
            use #private::{ProbeDecode as _, ProbeNoDecode as _};
            (&&#private::DecodeProbe::<#ident>::new()).decoder()
        }
    }
}

/// What goes before an item whose JSON Schema is derived: a check that each of its fields'
/// types has a schema, spanned on the type, so that a field whose type has none is reported
/// there, first, with the message that says how to give it one; then, unless the item derives
/// `JsonSchema` itself, the attributes that derive it with the runtime's schemars, written
/// before the item's own attributes, so that its `#[serde(..)]` attributes shape the schema as
/// they shape the JSON. A generic item gets no checks: its fields' types are its parameters'.
pub(crate) fn schema_derive(item: &EventItem, krate: &Path) -> TokenStream {
    let private = private(krate);
    let checks = item.generics.params.is_empty().then(|| {
        let checks = item.schema_fields.iter().map(|ty| {
            let p = at(&private, ty.span());
            quote_spanned!(ty.span()=> #p::check_field_schema::<#ty>();)
        });
        quote! {
            #[doc(hidden)]
            const _: () = { #(#checks)* };
        }
    });
    let derive = (!item.derives_schema).then(|| {
        let schemars = quote!(#private::schemars).to_string();
        quote! {
            #[derive(#private::JsonSchema)]
            #[schemars(crate = #schemars)]
        }
    });
    quote!(#checks #derive)
}

/// The registry's schema of an event type.
fn schema(private: &TokenStream, item: &EventItem) -> TokenStream {
    let ident = &item.ident;
    quote! {
        fn __tidings_schema() -> #private::serde_json::Value {
            #private::schema_of::<#ident>()
        }
    }
}

/// `#[domain_event]`: the traits and the registration.
pub(crate) fn domain_event(item: &EventItem, args: &DomainEventArgs) -> TokenStream {
    let private = &private(&args.krate());
    let ident = &item.ident;
    let event_impl = event_impl(private, ident, "Domain");
    let decoder = decoder(private, ident);
    let schema = schema(private, item);
    let event = type_ref(private, ident, &ident.unraw().to_string());
    let origin = origin(private);
    quote! {
        #[doc(hidden)]
        const _: () = {
            #event_impl
            #[automatically_derived]
            impl #private::DomainEvent for #ident where for<'__tidings> #ident: #private::EventData {}
            #decoder
            #schema
            #private::inventory::submit! {
                #private::DomainEventInfo::new(#event, __tidings_decoder, __tidings_schema, #origin)
            }
        };
    }
}

/// `#[integration_event]`: the traits, one `DeclaresFrom` impl and one check per source, the
/// `From` probes, and the registration.
pub(crate) fn integration_event(item: &EventItem, args: &IntegrationEventArgs) -> TokenStream {
    let private = &private(&args.krate());
    let ident = &item.ident;
    let event_impl = event_impl(private, ident, "Integration");
    let decoder = decoder(private, ident);
    let schema = schema(private, item);
    let contract = args
        .name
        .as_ref()
        .map_or_else(|| default_contract_name(ident), syn::LitStr::value);
    let version = args
        .version
        .as_ref()
        .and_then(|v| v.base10_parse::<u32>().ok())
        .unwrap_or(1);
    // A key that names no field is reported by `validate`; the contract then has no key.
    let key_field = args.key.as_ref().filter(|key| match &item.body {
        EventBody::Struct(syn::Fields::Named(fields)) => {
            fields.named.iter().any(|f| f.ident.as_ref() == Some(*key))
        }
        _ => false,
    });
    let key_fn = match key_field {
        Some(field) => {
            // Located at the field, so a key type without `Display` is reported there; resolved
            // at the call site, so that `self` is the method's even when a `macro_rules!` wrote
            // the field's name.
            let span = Span::call_site().located_at(field.span());
            let p = at(private, span);
            let key = quote_spanned!(span=> #p::key_string(&self.#field));
            quote!(::core::option::Option::Some(#key))
        }
        _ => quote!(::core::option::Option::None),
    };
    let key_name = match key_field {
        Some(field) => {
            let field = field.unraw().to_string();
            quote!(::core::option::Option::Some(#field))
        }
        None => quote!(::core::option::Option::None),
    };
    // A source listed twice is reported by `validate`; it is expanded once.
    let mut sources: Vec<&Path> = Vec::new();
    for source in args.from.iter().flat_map(|(_, sources)| sources) {
        if !sources.iter().any(|s| path_name(s) == path_name(source)) {
            sources.push(source);
        }
    }
    let per_source = sources.iter().enumerate().map(|(i, source)| {
        let probe = format_ident!("__tidings_from_impl_{}", i);
        let span = source.span();
        let p = at(private, span);
        let declares = quote_spanned! {span=>
            #[automatically_derived]
            impl #p::DeclaresFrom<#source> for #ident {}
            const _: () = #p::check_from_source::<#source>();
        };
        let probe_fn = quote! {
            fn #probe() -> ::core::option::Option<#private::FromTranslation> {
                #[allow(unused_imports)]
                use #private::{ProbeFromImpl as _, ProbeNoFromImpl as _};
                (&&#private::FromProbe::<#ident, #source>::new()).translation()
            }
        };
        let source_ref = type_ref(private, source, &path_name(source));
        let entry = quote!(#private::TranslationSource::new(#source_ref, #probe));
        (quote!(#declares #probe_fn), entry)
    });
    let (items, entries): (Vec<_>, Vec<_>) = per_source.unzip();
    let event = type_ref(private, ident, &ident.unraw().to_string());
    let origin = origin(private);
    quote! {
        #[doc(hidden)]
        const _: () = {
            #event_impl
            #[automatically_derived]
            impl #private::IntegrationEvent for #ident
            where
                for<'__tidings> #ident: #private::EventData,
            {
                const CONTRACT: &'static str = #contract;
                const VERSION: u32 = #version;
                fn key(&self) -> ::core::option::Option<::std::string::String> {
                    #key_fn
                }
            }
            #(#items)*
            #decoder
            #schema
            #private::inventory::submit! {
                #private::IntegrationEventInfo::new(
                    #event, #contract, #version, #key_name, &[#(#entries),*], __tidings_decoder,
                    __tidings_schema, #origin,
                )
            }
        };
    }
}

/// `#[handles]`: the type-erased entry, the checks and the registration.
pub(crate) fn handler(handler: &Handler, args: &HandlesArgs) -> TokenStream {
    let private = &private(&args.krate());
    let func = &handler.sig.ident;
    let name = func.unraw().to_string();
    // Named after the handler, so that they can never be the handler's own name.
    let run = format_ident!("__tidings_run_{}", name);
    let invoke = format_ident!("__tidings_invoke_{}", name);
    let is_async = handler.sig.asyncness.is_some();
    let event = &handler.event;
    let event_name = type_name(event);

    let mut args = Vec::new();
    let mut bindings = Vec::new();
    // The `T` of each `Dep<T>`; `None` for a parameter resolved by its type that is no `Dep`.
    let mut deps = Vec::new();
    let mut deps_by_type = false;
    // Whether each parameter is `DomainEvents`: `true`, or, resolved by its type, a constant.
    let mut publishers = Vec::new();
    let mut transaction = None;
    // The transaction is taken out of the context for the call, and given back after it.
    let mut give_back = TokenStream::new();
    for (i, param) in handler.params.iter().enumerate() {
        let arg = format_ident!("__tidings_arg{}", i);
        let (binding, passed) = match param {
            Param::Dep(ty) => {
                let dep = type_ref(private, ty, &type_name(ty));
                deps.push(quote!(::core::option::Option::Some(#dep)));
                let p = at(private, ty.span());
                let dep = quote_spanned!(ty.span()=> #p::dep::<#ty>);
                (quote!(let #arg = #dep(__tidings_ctx)?;), quote!(#arg))
            }
            Param::Meta { by_ref: true } => {
                (quote!(let #arg = __tidings_ctx.meta();), quote!(#arg))
            }
            Param::Meta { by_ref: false } => (
                quote!(let #arg = ::core::clone::Clone::clone(__tidings_ctx.meta());),
                quote!(#arg),
            ),
            Param::Publisher => {
                publishers.push(quote!(true));
                (
                    quote!(let #arg = __tidings_ctx.domain_events()?;),
                    quote!(#arg),
                )
            }
            Param::Transaction { db, target, .. } => {
                transaction = Some(match db {
                    Some(db) => {
                        let name = type_name(db);
                        quote!(#private::TypeRef::of::<#db>(#name))
                    }
                    None => {
                        // Spanned on the type, where a type that is no transaction is reported.
                        let span = target.span();
                        let p = at(private, span);
                        let target = inferred_lifetimes(target);
                        quote_spanned! {span=>
                            #p::TypeRef::of_type::<<#target as #p::TransactionParam>::Database>()
                        }
                    }
                });
                give_back = quote!(__tidings_ctx.give_back_transaction(#arg););
                (
                    quote!(let mut #arg = __tidings_ctx.take_transaction()?;),
                    quote!(&mut *#arg),
                )
            }
            Param::ByType(ty) => {
                // Spanned on the type, where a type that is no parameter is reported.
                let span = ty.span();
                let p = at(private, span);
                let ty = inferred_lifetimes(ty);
                let param = quote_spanned!(span=> <#ty as #p::HandlerParam<'_>>);
                deps.push(quote_spanned!(span=> #param::DEP));
                publishers.push(quote_spanned!(span=> #param::PUBLISHER));
                deps_by_type = true;
                (
                    quote!(let #arg = #param::from_context(__tidings_ctx)?;),
                    quote!(#arg),
                )
            }
            Param::RefByType(ty) => {
                let span = ty.span();
                let p = at(private, span);
                let ty = inferred_lifetimes(ty);
                let param = quote_spanned!(span=> <#ty as #p::RefParam<'_>>::from_context);
                (quote!(let #arg = #param(__tidings_ctx);), quote!(#arg))
            }
        };
        bindings.push(binding);
        args.push(passed);
    }
    // The registry's `deps` is a slice of `TypeRef`: with parameters resolved by their type,
    // those that are no `Dep` are left out at compile time.
    let (deps_items, deps) = if deps_by_type {
        let items = quote! {
            const __TIDINGS_PARAMS: &[::core::option::Option<#private::TypeRef>] = &[#(#deps),*];
            const __TIDINGS_DEP_COUNT: usize = #private::dep_count(__TIDINGS_PARAMS);
            const __TIDINGS_DEPS: [#private::TypeRef; __TIDINGS_DEP_COUNT] =
                #private::deps_of(__TIDINGS_PARAMS);
        };
        (items, quote!(&__TIDINGS_DEPS))
    } else {
        let deps = handler.params.iter().filter_map(|param| match param {
            Param::Dep(ty) => Some(type_ref(private, ty, &type_name(ty))),
            _ => None,
        });
        (TokenStream::new(), quote!(&[#(#deps),*]))
    };

    let await_ = is_async.then(|| quote!(.await));
    let emit = |value: TokenStream| match &handler.output.produces {
        Produces::Nothing => quote!(#private::emit_nothing(#value)),
        Produces::One(ty) => {
            let p = at(private, ty.span());
            quote_spanned!(ty.span()=> #p::emit_one::<#ty>(#value))
        }
        Produces::Option(ty) => {
            let p = at(private, ty.span());
            quote_spanned!(ty.span()=> #p::emit_option::<#ty>(#value))
        }
        Produces::Vec(ty) => {
            let p = at(private, ty.span());
            quote_spanned!(ty.span()=> #p::emit_vec::<#ty>(#value))
        }
    };
    let convert = match &handler.output.error {
        None => emit(quote!(__tidings_output)),
        Some(error) => {
            let ok = emit(quote!(__tidings_value));
            let p = at(private, error.span());
            let failed = quote_spanned!(error.span()=> #p::failed::<#error>);
            quote! {
                match __tidings_output {
                    ::core::result::Result::Ok(__tidings_value) => #ok,
                    ::core::result::Result::Err(__tidings_error) => {
                        #[allow(unused_imports)]
                        use #private::{ProbeNotRetryable as _, ProbeRetryable as _};
                        let __tidings_retryable =
                            (&&#private::RetryProbe(&__tidings_error)).retryable();
                        ::core::result::Result::Err(::std::boxed::Box::new(
                            #failed(__tidings_error, __tidings_retryable),
                        ))
                    }
                }
            }
        }
    };
    let body = quote! {
        let __tidings_event =
            #private::downcast::<#event>(__tidings_event, #name, #event_name)?;
        #(#bindings)*
        let __tidings_output = #func(__tidings_event #(, #args)*) #await_;
        #give_back
        #convert
    };
    let async_ = is_async.then(|| quote!(async));
    let (invoke_fn, variant) = if is_async {
        let invoke_fn = quote! {
            fn #invoke<'a>(
                __tidings_event: #private::AnyEvent<'a>,
                __tidings_ctx: &'a #private::HandlerContext<'a>,
                __tidings_slot: ::core::pin::Pin<&mut #private::FutureSlot<'a>>,
                __tidings_cx: &mut ::core::task::Context<'_>,
            ) -> ::core::task::Poll<#private::HandlerResult> {
                // The future is built in the call's slot, in place if it fits (known here,
                // where its type is), and polled once. The bindings are prefixed, as all the
                // entries' are: a lowercase unit struct or const of the user's, in scope here,
                // would turn a plain name into a pattern.
                #private::FutureSlot::start(
                    __tidings_slot,
                    #run(__tidings_event, __tidings_ctx),
                    __tidings_cx,
                )
            }
        };
        (invoke_fn, quote!(Async(#invoke)))
    } else {
        (TokenStream::new(), quote!(Sync(#run)))
    };
    let run_fn = quote! {
        #async_ fn #run<'a>(
            __tidings_event: #private::AnyEvent<'a>,
            __tidings_ctx: &'a #private::HandlerContext<'a>,
        ) -> #private::HandlerResult {
            #body
        }
    };

    let produced = handler.output.produces.event();
    let translation_check = produced.map(|produced| {
        let p = at(private, produced.span());
        quote_spanned! {produced.span()=>
            #[allow(dead_code)]
            fn __tidings_check_translation() {
                #[allow(unused_imports)]
                use #p::{ProbeDomainKind as _, ProbeIntegrationKind as _, ProbeOtherKind as _};
                #p::check_translation::<#event, #produced, _>((
                    (&&&#p::KindProbe::<#event>::new()).kind(),
                    (&&&#p::KindProbe::<#produced>::new()).kind(),
                ));
            }
        }
    });
    let produces = match produced {
        Some(ty) => {
            let produced = type_ref(private, ty, &type_name(ty));
            quote!(::core::option::Option::Some(#produced))
        }
        None => quote!(::core::option::Option::None),
    };
    let transaction = match transaction {
        Some(db) => quote!(::core::option::Option::Some(#db)),
        None => quote!(::core::option::Option::None),
    };
    let publishes = quote! {
        const __TIDINGS_PUBLISHES: bool = false #(|| #publishers)*;
    };
    let event_ref = type_ref(private, event, &event_name);
    let p = at(private, event.span());
    let event_kind = quote_spanned!(event.span()=> #p::event_kind::<#event>());
    let origin = origin(private);
    quote! {
        #[doc(hidden)]
        const _: () = {
            #run_fn
            #invoke_fn
            #translation_check
            #deps_items
            #publishes
            #private::inventory::submit! {
                #private::HandlerInfo::new(
                    #name,
                    #event_ref,
                    #event_kind,
                    #deps,
                    #produces,
                    #transaction,
                    __TIDINGS_PUBLISHES,
                    #private::HandlerFn::#variant,
                    #origin,
                )
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Errors;
    use proc_macro2::TokenTree;

    /// Every identifier in `tokens`, groups included.
    fn idents(tokens: TokenStream) -> Vec<String> {
        tokens
            .into_iter()
            .flat_map(|token| match token {
                TokenTree::Ident(ident) => vec![ident.to_string()],
                TokenTree::Group(group) => idents(group.stream()),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Whether the expansion names the crate `tidings` itself, and whether it names `renamed`.
    fn names(expansion: TokenStream) -> (bool, bool) {
        let idents = idents(expansion);
        (
            idents.iter().any(|i| i == "tidings"),
            idents.iter().any(|i| i == "renamed"),
        )
    }

    #[test]
    fn every_path_to_the_runtime_starts_with_the_crate_argument() {
        let mut errors = Errors::default();
        let domain = EventItem::parse(
            quote!(
                struct OrderPlaced {
                    id: u64,
                }
            ),
            "domain_event",
            "",
        )
        .unwrap();
        let args = DomainEventArgs::parse(quote!(crate = "renamed"), &mut errors);
        assert_eq!(names(domain_event(&domain, &args)), (false, true));

        let contract = EventItem::parse(
            quote!(
                struct OrderPlacedIntegrationEvent {
                    id: u64,
                }
            ),
            "integration_event",
            "",
        )
        .unwrap();
        let args = IntegrationEventArgs::parse(
            quote!(from = OrderPlaced, key = id, crate = "::renamed"),
            &mut errors,
        );
        assert_eq!(names(integration_event(&contract, &args)), (false, true));
        let derive = schema_derive(&contract, &args.krate());
        assert_eq!(names(derive.clone()), (false, true));
        assert!(
            derive
                .to_string()
                .contains("\":: renamed :: __private :: schemars\""),
            "schemars is told where its crate is: {derive}"
        );

        let item = quote! {
            async fn bill(
                event: &OrderPlaced,
                meta: &EventMeta,
                ledger: Dep<Ledger>,
                tx: &mut Transaction<'_, Sqlite>,
                recs: Recs,
                envelope: &Meta,
            ) -> Result<Option<OrderPlacedIntegrationEvent>, std::io::Error> {
                Ok(None)
            }
        };
        let handler = Handler::parse(item, &mut errors).unwrap();
        let args = HandlesArgs::parse(quote!(crate = "crate::renamed"), "handles", &mut errors);
        assert_eq!(names(super::handler(&handler, &args)), (false, true));
        assert!(errors.is_empty());

        let args = HandlesArgs::parse(TokenStream::new(), "handles", &mut errors);
        assert_eq!(names(super::handler(&handler, &args)), (true, false));

        let item = quote! {
            async fn pay(event: &OrderPlaced, tx: &mut Tx<'a>) {}
        };
        let handler = Handler::parse(item, &mut errors).unwrap();
        let args = HandlesArgs::parse(quote!(crate = "renamed"), "handles", &mut errors);
        assert_eq!(names(super::handler(&handler, &args)), (false, true));
        assert!(errors.is_empty());
    }

    #[test]
    fn the_handlers_lifetimes_are_left_out_of_the_expansions_items() {
        let ty: Type = syn::parse_quote!(Tx<'a, 'static, '_, Inner<'b>, &'c u8>);
        let rewritten = inferred_lifetimes(&ty).to_string();
        assert_eq!(
            rewritten,
            quote!(Tx<'_, 'static, '_, Inner<'_>, &'_ u8>).to_string()
        );
    }
}
