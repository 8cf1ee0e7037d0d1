//! JSON Schemas: made from a type, read by people, and placed in other documents.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// Where a draft-07 schema made by schemars keeps the schemas of the types it refers to.
const DEFINITIONS: &str = "#/definitions/";

/// The JSON Schema (draft-07) of `T`'s JSON form, as serde reads it: a field with a default
/// is not required, for instance.
pub(crate) fn of<T: JsonSchema>() -> Value {
    SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The subschema `schema` stands for in `root`: itself, or what its `$ref` points to. `None`
/// for a reference that `root` does not hold.
pub(crate) fn resolve<'s>(root: &'s Value, schema: &'s Value) -> Option<&'s Value> {
    let mut schema = schema;
    // A chain of references ends within as many steps as there are definitions.
    for _ in 0..=definitions(root).map_or(0, Map::len) {
        match reference(schema) {
            Some(name) => schema = definitions(root)?.get(name)?,
            None => return Some(schema),
        }
    }
    None
}

/// The name of the definition that `schema` refers to, if it is a reference.
pub(crate) fn reference(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix(DEFINITIONS)
}

fn definitions(root: &Value) -> Option<&Map<String, Value>> {
    root.get("definitions")?.as_object()
}

/// The JSON types `schema` allows, sorted; empty when it does not say.
pub(crate) fn types(schema: &Value) -> Vec<&str> {
    let mut types: Vec<&str> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    types.sort_unstable();
    types
}

/// `schema` in a few words: `string`, `integer (int64)`, `array of string`, `` `Address` `` (a
/// type of the schema's definitions, by name), `string or null`.
pub(crate) fn describe(schema: &Value) -> String {
    if let Some(name) = reference(schema) {
        return format!("`{name}`");
    }
    if let Some(value) = schema.get("const") {
        return format!("`{value}`");
    }
    if let Some(Value::Array(values)) = schema.get("enum") {
        let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        return format!("one of {}", values.join(", "));
    }
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = schema.get(alternatives) {
            let described: Vec<String> = options.iter().map(describe).collect();
            return described.join(" or ");
        }
    }
    let types = types(schema);
    let described: Vec<String> = types
        .iter()
        .map(|&ty| match ty {
            "array" => match schema.get("items") {
                Some(items) => format!("array of {}", describe(items)),
                None => "array".to_owned(),
            },
            "object" => match schema.get("additionalProperties") {
                Some(values @ Value::Object(_)) if schema.get("properties").is_none() => {
                    format!("map of {}", describe(values))
                }
                _ => "object".to_owned(),
            },
            "null" => "null".to_owned(),
            other => match schema.get("format").and_then(Value::as_str) {
                Some(format) => format!("{other} ({format})"),
                None => other.to_owned(),
            },
        })
        .collect();
    if described.is_empty() {
        "any".to_owned()
    } else {
        described.join(" or ")
    }
}

/// `schema`, a root schema, made to live at `pointer` in another document (such as
/// `#/components/schemas/x`): its meta-schema is left out, and its references to its
/// definitions point to them there.
pub(crate) fn embedded(schema: &Value, pointer: &str) -> Value {
    fn rewrite(value: &mut Value, prefix: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get_mut("$ref")
                    && let Some(name) = target.strip_prefix(DEFINITIONS)
                {
                    *target = format!("{prefix}{name}");
                }
                map.values_mut().for_each(|v| rewrite(v, prefix));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, prefix)),
            _ => {}
        }
    }
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    rewrite(&mut schema, &format!("{pointer}/definitions/"));
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_and_describe_by_name() {
        let root = json!({
            "type": "object",
            "properties": {
                "to": { "$ref": "#/definitions/Address" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "price": { "type": ["integer", "null"], "format": "int64" }
            },
            "definitions": { "Address": { "type": "object", "properties": {} } }
        });
        let to = &root["properties"]["to"];
        assert_eq!(resolve(&root, to), Some(&root["definitions"]["Address"]));
        assert_eq!(describe(to), "`Address`");
        assert_eq!(describe(&root["properties"]["tags"]), "array of string");
        assert_eq!(
            describe(&root["properties"]["price"]),
            "integer (int64) or null"
        );
        let embedded = embedded(&root, "#/components/schemas/x");
        assert_eq!(
            embedded["properties"]["to"]["$ref"],
            "#/components/schemas/x/definitions/Address"
        );
    }

    #[test]
    fn a_reference_loop_resolves_to_nothing() {
        let root = json!({ "definitions": { "A": { "$ref": "#/definitions/B" }, "B": { "$ref": "#/definitions/A" } } });
        assert_eq!(resolve(&root, &json!({ "$ref": "#/definitions/A" })), None);
    }
}
