//! Names: the words of a `CamelCase` name, which words are past participles, the default
//! contract name, and types and paths as a user writes them.

use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Ident, Path};

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
pub(crate) fn is_past_tense(word: &str) -> bool {
    (word.len() > 3 && word.ends_with("ed") && !NOT_PARTICIPLES.contains(&word))
        || IRREGULAR_PARTICIPLES.contains(&word)
}

/// Whether `word` (lowercase) means "a record changed" and says nothing of what happened.
pub(crate) fn is_generic_word(word: &str) -> bool {
    GENERIC_WORDS.contains(&word)
}

/// The default contract name: the type's name without the suffix, in kebab-case.
pub(crate) fn default_contract_name(ident: &Ident) -> String {
    let name = ident.unraw().to_string();
    let stem = name.strip_suffix(INTEGRATION_SUFFIX).unwrap_or(&name);
    words(stem).join("-")
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

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

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
}
