//! The input the model gives the tool it calls, derived from the tool's JSON schema.

use serde_json::{json, Map, Value};

use crate::vocabulary::word_for;

/// The input the model gives a tool: an object with a value for each property of the schema
/// (the schema's order): the first `enum` value or the `const` if there is one, otherwise by
/// `type` (the first non-`null` one of a list): `string` → a short word derived from the
/// fingerprint and the property's path, `integer` and `number` → 1, `boolean` → true,
/// `array` → [], `null` → null, `object` (or a schema with `properties`) → the same, recursively;
/// any other schema → a word.
pub fn input_for(schema: &Value, fingerprint: &[u8]) -> Value {
    object_for(schema, fingerprint, "")
}

fn object_for(schema: &Value, fingerprint: &[u8], path: &str) -> Value {
    let mut object = Map::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let path = format!("{path}/{name}");
            object.insert(name.clone(), value_for(property, fingerprint, &path));
        }
    }
    Value::Object(object)
}

fn type_of(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    }
}

fn value_for(schema: &Value, fingerprint: &[u8], path: &str) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    match type_of(schema) {
        "object" => object_for(schema, fingerprint, path),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "array" => json!([]),
        "null" => Value::Null,
        _ => {
            let mut seed = fingerprint.to_vec();
            seed.push(0);
            seed.extend_from_slice(path.as_bytes());
            json!(word_for(&seed))
        }
    }
}
