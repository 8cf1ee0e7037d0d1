//! The arguments of the macros: `#[domain_event(..)]`, `#[integration_event(..)]`,
//! `#[handles(..)]` and `#[schema(..)]`, which all take `crate = ".."`, the path of a renamed `tidings` dependency. Each accepted key is a [`Symbol`] constant, used both to recognize the key
//! and to list the accepted keys in messages, so that the two cannot drift apart.

use std::fmt::{self, Display};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, LitInt, LitStr, Path, Token};

use crate::errors::Errors;

/// The name of an argument.
#[derive(Clone, Copy)]
pub(crate) struct Symbol(&'static str);

/// `#[domain_event(allow_generic_name)]`.
pub(crate) const ALLOW_GENERIC_NAME: Symbol = Symbol("allow_generic_name");
/// `#[domain_event(allow_non_past_tense)]`.
pub(crate) const ALLOW_NON_PAST_TENSE: Symbol = Symbol("allow_non_past_tense");
/// `#[integration_event(name = "..")]`.
pub(crate) const NAME: Symbol = Symbol("name");
/// `#[integration_event(version = N)]`.
pub(crate) const VERSION: Symbol = Symbol("version");
/// `#[integration_event(from = [..])]`.
pub(crate) const FROM: Symbol = Symbol("from");
/// `#[integration_event(key = field)]`.
pub(crate) const KEY: Symbol = Symbol("key");
/// `crate = "my_tidings"`, on every macro.
pub(crate) const CRATE: Symbol = Symbol("crate");

/// How `crate` is written.
const CRATE_EXAMPLE: &str = "crate = \"my_tidings\"";

impl PartialEq<Symbol> for Ident {
    fn eq(&self, symbol: &Symbol) -> bool {
        self == symbol.0
    }
}

impl Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `` `a`, `b` and `c` ``.
fn list(symbols: &[Symbol]) -> String {
    let quoted: Vec<String> = symbols.iter().map(|s| format!("`{s}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// One `key` or `key = value` argument, before its value is interpreted.
struct RawArg {
    key: Ident,
    value: Option<TokenStream>,
}

/// Splits `a = 1, b = [x, y], c` into arguments; each value runs to the next top-level comma.
fn raw_args(tokens: TokenStream) -> syn::Result<Vec<RawArg>> {
    let parser = |input: ParseStream| {
        let mut args = Vec::new();
        while !input.is_empty() {
            let key = input.call(Ident::parse_any)?;
            let value = if input.peek(Token![=]) {
                let eq: Token![=] = input.parse()?;
                let mut value = TokenStream::new();
                while !input.is_empty() && !input.peek(Token![,]) {
                    value.extend([input.parse::<TokenTree>()?]);
                }
                if value.is_empty() {
                    return Err(syn::Error::new(eq.span, format!("`{key} =` needs a value")));
                }
                Some(value)
            } else {
                None
            };
            args.push(RawArg { key, value });
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    };
    parser.parse2(tokens)
}

/// The arguments in `tokens`, with the error recorded if they do not split.
fn raw_args_or_record(tokens: TokenStream, errors: &mut Errors) -> Vec<RawArg> {
    raw_args(tokens).unwrap_or_else(|error| {
        errors.push(error);
        Vec::new()
    })
}

/// Remembers the first occurrence of an argument and reports the second.
fn set_once<T>(slot: &mut Option<T>, value: T, key: &Ident, errors: &mut Errors) {
    if slot.is_some() {
        errors.spanned(key, format!("duplicate argument `{key}`: give it once"));
    } else {
        *slot = Some(value);
    }
}

/// Reads `crate = "path"`: the path of the `tidings` crate, for a program that renames the
/// dependency.
fn crate_path(
    slot: &mut Option<Path>,
    key: &Ident,
    value: Option<TokenStream>,
    errors: &mut Errors,
) {
    let Some(value) = value else {
        errors.spanned(key, format!("`{key}` needs a value: `{CRATE_EXAMPLE}`"));
        return;
    };
    let Ok(lit) = syn::parse2::<LitStr>(value.clone()) else {
        errors.spanned(
            value,
            format!("`{CRATE}` takes the path of the `tidings` crate as a string literal: `{CRATE_EXAMPLE}`"),
        );
        return;
    };
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => set_once(slot, path, key, errors),
        Err(_) => errors.spanned(
            &lit,
            format!(
                "`{}` is not a path: `{CRATE}` takes the path of the `tidings` crate, as the program names it, such as `{CRATE_EXAMPLE}` or `crate = \"::my_tidings\"`",
                lit.value()
            ),
        ),
    }
}

/// The path of the `tidings` crate: the one given with `crate = ".."`, or `::tidings`.
fn runtime_path(krate: Option<&Path>) -> Path {
    krate
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(::tidings))
}

/// The keys `#[domain_event]` accepts.
const DOMAIN_EVENT_KEYS: &[Symbol] = &[ALLOW_GENERIC_NAME, ALLOW_NON_PAST_TENSE, CRATE];

/// `#[domain_event(..)]` arguments.
#[derive(Default)]
pub(crate) struct DomainEventArgs {
    /// `allow_generic_name`: a name such as `ProductUpdated` is wanted.
    pub(crate) allow_generic_name: Option<Ident>,
    /// `allow_non_past_tense`: a name with no past-tense word is wanted.
    pub(crate) allow_non_past_tense: Option<Ident>,
    /// `crate = ".."`.
    krate: Option<Path>,
}

impl DomainEventArgs {
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = DomainEventArgs::default();
        for RawArg { key, value } in raw_args_or_record(tokens, errors) {
            if key == CRATE {
                crate_path(&mut args.krate, &key, value, errors);
                continue;
            }
            let slot = if key == ALLOW_GENERIC_NAME {
                &mut args.allow_generic_name
            } else if key == ALLOW_NON_PAST_TENSE {
                &mut args.allow_non_past_tense
            } else {
                errors.spanned(
                    &key,
                    format!(
                        "unknown argument `{key}`: `#[domain_event]` takes {}",
                        list(DOMAIN_EVENT_KEYS)
                    ),
                );
                continue;
            };
            if let Some(value) = value {
                errors.spanned(
                    value,
                    format!("`{key}` takes no value: write `#[domain_event({key})]`"),
                );
            }
            set_once(slot, key.clone(), &key, errors);
        }
        args
    }

    /// The path of the `tidings` crate.
    pub(crate) fn krate(&self) -> Path {
        runtime_path(self.krate.as_ref())
    }
}

/// Interprets the value of one argument of `#[integration_event]`.
type Interpret = fn(&mut IntegrationEventArgs, &Ident, TokenStream, &mut Errors);

/// The keys `#[integration_event]` accepts, each with an example and how to read its value.
const INTEGRATION_EVENT_KEYS: &[(Symbol, &str, Interpret)] = &[
    (
        NAME,
        "name = \"catalog.product-updated\"",
        IntegrationEventArgs::name,
    ),
    (VERSION, "version = 2", IntegrationEventArgs::version),
    (
        FROM,
        "from = [ProductPutOnSale, ProductRestocked]",
        IntegrationEventArgs::from,
    ),
    (KEY, "key = product_id", IntegrationEventArgs::key),
    (CRATE, CRATE_EXAMPLE, IntegrationEventArgs::crate_arg),
];

/// `#[integration_event(..)]` arguments.
#[derive(Default)]
pub(crate) struct IntegrationEventArgs {
    /// `name = "..."`.
    pub(crate) name: Option<LitStr>,
    /// `version = N`.
    pub(crate) version: Option<LitInt>,
    /// `from = [A, B]` or `from = A`, with the value's tokens.
    pub(crate) from: Option<(TokenStream, Vec<Path>)>,
    /// `key = field`.
    pub(crate) key: Option<Ident>,
    /// `crate = ".."`.
    krate: Option<Path>,
}

impl IntegrationEventArgs {
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = IntegrationEventArgs::default();
        for RawArg { key, value } in raw_args_or_record(tokens, errors) {
            let Some((_, example, interpret)) = INTEGRATION_EVENT_KEYS
                .iter()
                .find(|(symbol, ..)| key == *symbol)
            else {
                let keys: Vec<Symbol> = INTEGRATION_EVENT_KEYS.iter().map(|k| k.0).collect();
                errors.spanned(
                    &key,
                    format!(
                        "unknown argument `{key}`: `#[integration_event]` takes {}",
                        list(&keys)
                    ),
                );
                continue;
            };
            match value {
                Some(value) => interpret(&mut args, &key, value, errors),
                None => errors.spanned(&key, format!("`{key}` needs a value: `{example}`")),
            }
        }
        args
    }

    fn name(&mut self, key: &Ident, value: TokenStream, errors: &mut Errors) {
        match syn::parse2::<LitStr>(value.clone()) {
            Ok(lit) => set_once(&mut self.name, lit, key, errors),
            Err(_) => errors.spanned(
                value,
                "`name` takes a string literal: `name = \"catalog.product-updated\"`",
            ),
        }
    }

    fn version(&mut self, key: &Ident, value: TokenStream, errors: &mut Errors) {
        match syn::parse2::<LitInt>(value.clone()) {
            Ok(lit) => set_once(&mut self.version, lit, key, errors),
            Err(_) => errors.spanned(value, "`version` takes a whole number: `version = 2`"),
        }
    }

    fn from(&mut self, key: &Ident, value: TokenStream, errors: &mut Errors) {
        let paths = Punctuated::<Path, Token![,]>::parse_terminated;
        let mut tokens = value.clone().into_iter();
        let parsed = match (tokens.next(), tokens.next()) {
            (Some(TokenTree::Group(group)), None) if group.delimiter() == Delimiter::Bracket => {
                paths.parse2(group.stream())
            }
            _ => syn::parse2::<Path>(value.clone()).map(|path| [path].into_iter().collect()),
        };
        match parsed {
            Ok(paths) => {
                let from = (value.clone(), paths.into_iter().collect());
                set_once(&mut self.from, from, key, errors);
            }
            Err(_) => errors.spanned(
                value,
                "`from` takes a domain event or a list of them: `from = ProductPutOnSale` or `from = [ProductPutOnSale, ProductRestocked]`",
            ),
        }
    }

    fn key(&mut self, key: &Ident, value: TokenStream, errors: &mut Errors) {
        match syn::parse2::<Ident>(value.clone()) {
            Ok(field) => set_once(&mut self.key, field, key, errors),
            Err(_) => errors.spanned(
                value,
                "`key` takes the name of a field of this struct: `key = product_id`",
            ),
        }
    }

    fn crate_arg(&mut self, key: &Ident, value: TokenStream, errors: &mut Errors) {
        crate_path(&mut self.krate, key, Some(value), errors);
    }

    /// The path of the `tidings` crate.
    pub(crate) fn krate(&self) -> Path {
        runtime_path(self.krate.as_ref())
    }
}

/// `#[handles(..)]` arguments.
pub(crate) type HandlesArgs = CrateArgs;

/// The arguments of a macro whose one argument is `crate = ".."`: `#[handles]` and `#[schema]`.
#[derive(Default)]
pub(crate) struct CrateArgs {
    /// `crate = ".."`.
    krate: Option<Path>,
}

impl CrateArgs {
    /// The arguments of `#[macro_name(..)]`.
    pub(crate) fn parse(tokens: TokenStream, macro_name: &str, errors: &mut Errors) -> Self {
        let mut args = CrateArgs::default();
        for RawArg { key, value } in raw_args_or_record(tokens, errors) {
            if key == CRATE {
                crate_path(&mut args.krate, &key, value, errors);
            } else {
                errors.spanned(
                    &key,
                    format!(
                        "unknown argument `{key}`: `#[{macro_name}]` takes only `{CRATE_EXAMPLE}`, the path of a renamed `tidings` dependency; without it, write `#[{macro_name}]`"
                    ),
                );
            }
        }
        args
    }

    /// The path of the `tidings` crate.
    pub(crate) fn krate(&self) -> Path {
        runtime_path(self.krate.as_ref())
    }
}
