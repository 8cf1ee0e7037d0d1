//! Expand: the code each macro emits. Every path to the runtime goes through
//! `::tidings::__private`, and every item is inside
//! `const _: () = { .. };` so that no name leaks into the user's module.
//!
//! Checks that need types are emitted as calls whose tokens carry the span of the user's type,
//! so a failed bound points at that type and shows the message of the runtime's trait.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Path, Type};

use crate::args::{DomainEventArgs, HandlesArgs, IntegrationEventArgs};
use crate::ast::{EventBody, EventItem, Handler, Param, Produces};
use crate::names::{default_contract_name, path_name, tokens_name};

/// Where an item is declared, for the registry.
fn origin() -> TokenStream {
    quote! {
        ::tidings::__private::Origin::new(
            ::core::module_path!(), ::core::file!(), ::core::line!(), ::core::column!(),
        )
    }
}

/// A `TypeRef` to `ty`, named `name`.
fn type_ref(ty: impl ToTokens, name: &str) -> TokenStream {
    quote! {
        ::tidings::__private::TypeRef::new(::core::any::TypeId::of::<#ty>(), #name)
    }
}

/// A type as the user wrote it.
fn type_name(ty: &Type) -> String {
    tokens_name(ty)
}

/// The `Event` impl of an event type, and the `Sealed` impl that only the event macros write.
/// Spanned on its name: a type that is not serde-serializable gets the error there.
fn event_impl(ident: &Ident, kind: &str) -> TokenStream {
    let name = ident.unraw().to_string();
    let kind = Ident::new(kind, Span::call_site());
    let event = quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl ::tidings::__private::Event for #ident
        where
            for<'__tidings> #ident: ::tidings::__private::EventData,
        {
            const NAME: &'static str = #name;
            const KIND: ::tidings::__private::EventKind = ::tidings::__private::EventKind::#kind;
        }
        const _: () = ::tidings::__private::check_event_serde::<#ident>();
        const _: () = ::tidings::__private::check_event_threads::<#ident>();
    };
    quote! {
        #[automatically_derived]
        impl ::tidings::__private::Sealed for #ident {}
        #event
    }
}

/// The registry's decoder of an event type: a probe, so that a type that is not
/// deserializable gets one error, from `check_event_serde`.
fn decoder(ident: &Ident) -> TokenStream {
    quote! {
        fn __tidings_decoder() -> ::core::option::Option<::tidings::__private::Decode> {
            #[allow(unused_imports)]
            use ::tidings::__private::{ProbeDecode as _, ProbeNoDecode as _};
            (&&::tidings::__private::DecodeProbe::<#ident>::new()).decoder()
        }
    }
}

/// `#[domain_event]`: the traits and the registration.
pub(crate) fn domain_event(item: &EventItem, _args: &DomainEventArgs) -> TokenStream {
    let ident = &item.ident;
    let event_impl = event_impl(ident, "Domain");
    let decoder = decoder(ident);
    let event = type_ref(ident, &ident.unraw().to_string());
    let origin = origin();
    quote! {
        #[doc(hidden)]
        const _: () = {
            #event_impl
            #[automatically_derived]
            impl ::tidings::__private::DomainEvent for #ident where for<'__tidings> #ident: ::tidings::__private::EventData {}
            #decoder
            ::tidings::__private::inventory::submit! {
                ::tidings::__private::DomainEventInfo::new(#event, __tidings_decoder, #origin)
            }
        };
    }
}

/// `#[integration_event]`: the traits, one `DeclaresFrom` impl and one check per source, the
/// `From` probes, and the registration.
pub(crate) fn integration_event(item: &EventItem, args: &IntegrationEventArgs) -> TokenStream {
    let ident = &item.ident;
    let event_impl = event_impl(ident, "Integration");
    let decoder = decoder(ident);
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
            let key = quote_spanned!(span=> ::tidings::__private::key_string(&self.#field));
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
        let declares = quote_spanned! {span=>
            #[automatically_derived]
            impl ::tidings::__private::DeclaresFrom<#source> for #ident {}
            const _: () = ::tidings::__private::check_from_source::<#source>();
        };
        let probe_fn = quote! {
            fn #probe() -> ::core::option::Option<::tidings::__private::FromTranslation> {
                #[allow(unused_imports)]
                use ::tidings::__private::{ProbeFromImpl as _, ProbeNoFromImpl as _};
                (&&::tidings::__private::FromProbe::<#ident, #source>::new()).translation()
            }
        };
        let source_ref = type_ref(source, &path_name(source));
        let entry = quote!(::tidings::__private::TranslationSource::new(#source_ref, #probe));
        (quote!(#declares #probe_fn), entry)
    });
    let (items, entries): (Vec<_>, Vec<_>) = per_source.unzip();
    let event = type_ref(ident, &ident.unraw().to_string());
    let origin = origin();
    quote! {
        #[doc(hidden)]
        const _: () = {
            #event_impl
            #[automatically_derived]
            impl ::tidings::__private::IntegrationEvent for #ident
            where
                for<'__tidings> #ident: ::tidings::__private::EventData,
            {
                const CONTRACT: &'static str = #contract;
                const VERSION: u32 = #version;
                fn key(&self) -> ::core::option::Option<::std::string::String> {
                    #key_fn
                }
            }
            #(#items)*
            #decoder
            ::tidings::__private::inventory::submit! {
                ::tidings::__private::IntegrationEventInfo::new(
                    #event, #contract, #version, #key_name, &[#(#entries),*], __tidings_decoder, #origin,
                )
            }
        };
    }
}

/// `#[handles]`: the type-erased entry, the checks and the registration.
pub(crate) fn handler(handler: &Handler, _args: &HandlesArgs) -> TokenStream {
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
    let mut deps = Vec::new();
    let mut transaction = None;
    // The transaction is taken out of the context for the call, and given back after it.
    let mut give_back = TokenStream::new();
    for (i, param) in handler.params.iter().enumerate() {
        let arg = format_ident!("__tidings_arg{}", i);
        let (binding, passed) = match param {
            Param::Dep(ty) => {
                deps.push(type_ref(ty, &type_name(ty)));
                let dep = quote_spanned!(ty.span()=> ::tidings::__private::dep::<#ty>);
                (quote!(let #arg = #dep(&__tidings_ctx)?;), quote!(#arg))
            }
            Param::Meta { by_ref: true } => {
                (quote!(let #arg = __tidings_ctx.meta();), quote!(#arg))
            }
            Param::Meta { by_ref: false } => (
                quote!(let #arg = ::core::clone::Clone::clone(__tidings_ctx.meta());),
                quote!(#arg),
            ),
            Param::Publisher => (
                quote!(let #arg = __tidings_ctx.domain_events()?;),
                quote!(#arg),
            ),
            Param::Transaction { db, .. } => {
                transaction = Some(type_ref(db, &type_name(db)));
                give_back = quote!(__tidings_ctx.give_back_transaction(#arg););
                (
                    quote!(let mut #arg = __tidings_ctx.take_transaction()?;),
                    quote!(&mut *#arg),
                )
            }
        };
        bindings.push(binding);
        args.push(passed);
    }

    let await_ = is_async.then(|| quote!(.await));
    let emit = |value: TokenStream| match &handler.output.produces {
        Produces::Nothing => quote!(::tidings::__private::emit_nothing(#value)),
        Produces::One(ty) => {
            quote_spanned!(ty.span()=> ::tidings::__private::emit_one::<#ty>(#value))
        }
        Produces::Option(ty) => {
            quote_spanned!(ty.span()=> ::tidings::__private::emit_option::<#ty>(#value))
        }
        Produces::Vec(ty) => {
            quote_spanned!(ty.span()=> ::tidings::__private::emit_vec::<#ty>(#value))
        }
    };
    let convert = match &handler.output.error {
        None => emit(quote!(__tidings_output)),
        Some(error) => {
            let ok = emit(quote!(__tidings_value));
            let failed = quote_spanned!(error.span()=> ::tidings::__private::failed::<#error>);
            quote! {
                match __tidings_output {
                    ::core::result::Result::Ok(__tidings_value) => #ok,
                    ::core::result::Result::Err(__tidings_error) => {
                        #[allow(unused_imports)]
                        use ::tidings::__private::{ProbeNotRetryable as _, ProbeRetryable as _};
                        let __tidings_retryable =
                            (&&::tidings::__private::RetryProbe(&__tidings_error)).retryable();
                        ::core::result::Result::Err(#failed(__tidings_error, __tidings_retryable))
                    }
                }
            }
        }
    };
    let body = quote! {
        let __tidings_event =
            ::tidings::__private::downcast::<#event>(__tidings_event, #name, #event_name)?;
        #(#bindings)*
        let __tidings_output = #func(__tidings_event #(, #args)*) #await_;
        #give_back
        #convert
    };
    let async_ = is_async.then(|| quote!(async));
    let (invoke_fn, variant) = if is_async {
        let invoke_fn = quote! {
            fn #invoke<'a>(
                event: &'a (dyn ::core::any::Any + ::core::marker::Send + ::core::marker::Sync),
                ctx: ::tidings::__private::HandlerContext<'a>,
            ) -> ::tidings::__private::HandlerFuture<'a> {
                ::std::boxed::Box::pin(#run(event, ctx))
            }
        };
        (invoke_fn, quote!(Async(#invoke)))
    } else {
        (TokenStream::new(), quote!(Sync(#run)))
    };
    let run_fn = quote! {
        #async_ fn #run<'a>(
            __tidings_event: &'a (dyn ::core::any::Any + ::core::marker::Send + ::core::marker::Sync),
            __tidings_ctx: ::tidings::__private::HandlerContext<'a>,
        ) -> ::tidings::__private::HandlerResult {
            #body
        }
    };

    let produced = handler.output.produces.event();
    let translation_check = produced.map(|produced| {
        quote_spanned! {produced.span()=>
            #[allow(dead_code)]
            fn __tidings_check_translation() {
                #[allow(unused_imports)]
                use ::tidings::__private::{ProbeDomainKind as _, ProbeIntegrationKind as _, ProbeOtherKind as _};
                ::tidings::__private::check_translation::<#event, #produced, _>((
                    (&&&::tidings::__private::KindProbe::<#event>::new()).kind(),
                    (&&&::tidings::__private::KindProbe::<#produced>::new()).kind(),
                ));
            }
        }
    });
    let produces = match produced {
        Some(ty) => {
            let produced = type_ref(ty, &type_name(ty));
            quote!(::core::option::Option::Some(#produced))
        }
        None => quote!(::core::option::Option::None),
    };
    let transaction = match transaction {
        Some(db) => quote!(::core::option::Option::Some(#db)),
        None => quote!(::core::option::Option::None),
    };
    let event_ref = type_ref(event, &event_name);
    let event_kind = quote_spanned!(event.span()=> ::tidings::__private::event_kind::<#event>());
    let origin = origin();
    quote! {
        #[doc(hidden)]
        const _: () = {
            #run_fn
            #invoke_fn
            #translation_check
            ::tidings::__private::inventory::submit! {
                ::tidings::__private::HandlerInfo::new(
                    #name,
                    #event_ref,
                    #event_kind,
                    &[#(#deps),*],
                    #produces,
                    #transaction,
                    ::tidings::__private::HandlerFn::#variant,
                    #origin,
                )
            }
        };
    }
}
