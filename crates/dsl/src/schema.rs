//! The JSON Schema of the spec (`weft schema`), with the short forms the deserializer
//! accepts: schemars describes an enum only as `{kind: {params}}`, but a spec may also write
//! a bare `kind` when its parameters all have defaults (`optimizer: adam`,
//! `preprocess: [standard_scale]`), `kind:value` when the payload is one value
//! (`source: builtin:iris`), and `kind:` with nothing (`{adam: }`). Every shipped spec
//! validates against it with a real validator (the CLI tests).

use serde_json::{json, Map, Value};

use crate::spec::Spec;

/// The schema, short forms included.
pub fn json_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Spec)).unwrap_or_default();
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    add_short_forms(&mut schema, &defs);
    schema
}

/// What a `$ref` or inline schema is, resolved against `defs`.
fn resolve<'a>(s: &'a Value, defs: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| defs.get(name))
            .unwrap_or(s),
        None => s,
    }
}

/// Whether a payload can be left out (every field has a default).
fn all_defaults(payload: &Value, defs: &Value) -> bool {
    let p = resolve(payload, defs);
    p.get("type").and_then(Value::as_str) == Some("object")
        && p.get("required")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// Whether a payload is one scalar (`builtin:iris`, `csv:data.csv`).
fn scalar(payload: &Value, defs: &Value) -> bool {
    let p = resolve(payload, defs);
    match p.get("type").and_then(Value::as_str) {
        Some("string" | "number" | "integer" | "boolean") => true,
        Some(_) => false,
        None => p
            .get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|alts| alts.iter().all(|a| a.get("const").is_some())),
    }
}

/// The externally tagged variants of a `oneOf`: (kind, payload schema), or `None` when it
/// is not such an enum.
fn variants(alts: &[Value]) -> Option<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for a in alts {
        if a.get("type").and_then(Value::as_str) == Some("string") {
            continue; // unit variants are strings already
        }
        let props = a.get("properties")?.as_object()?;
        let required = a.get("required")?.as_array()?;
        if props.len() != 1 || required.len() != 1 {
            return None;
        }
        let (k, v) = props.iter().next()?;
        out.push((k.clone(), v.clone()));
    }
    (!out.is_empty()).then_some(out)
}

fn add_short_forms(node: &mut Value, defs: &Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(alts)) = map.get_mut("oneOf") {
                if let Some(vs) = variants(alts) {
                    extend(alts, &vs, defs);
                }
            }
            for v in map.values_mut() {
                add_short_forms(v, defs);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| add_short_forms(v, defs)),
        _ => {}
    }
}

fn extend(alts: &mut Vec<Value>, vs: &[(String, Value)], defs: &Value) {
    let bare: Vec<&String> = vs
        .iter()
        .filter(|(_, p)| all_defaults(p, defs))
        .map(|(k, _)| k)
        .collect();
    for a in alts.iter_mut() {
        // `{kind: }`: a null payload takes the defaults.
        if let Some(Value::Object(props)) = a.get_mut("properties") {
            for (k, p) in props.iter_mut() {
                if bare.contains(&k) {
                    *p = json!({ "anyOf": [p.clone(), { "type": "null" }] });
                }
            }
        }
    }
    if !bare.is_empty() {
        alts.push(json!({
            "type": "string",
            "enum": bare,
            "description": "A kind whose parameters all take their defaults.",
        }));
    }
    let valued: Vec<String> = vs
        .iter()
        .filter(|(_, p)| scalar(p, defs))
        .map(|(k, _)| regex_escape(k))
        .collect();
    if !valued.is_empty() {
        let mut m = Map::new();
        m.insert("type".into(), json!("string"));
        m.insert(
            "pattern".into(),
            json!(format!("^({}):.+$", valued.join("|"))),
        );
        m.insert(
            "description".into(),
            json!("`kind:value` for a kind that takes one value (`builtin:iris`)."),
        );
        alts.push(Value::Object(m));
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_take_their_short_forms() {
        let s = json_schema();
        let defs = &s["$defs"];
        let text = |name: &str| defs[name].to_string();
        assert!(
            text("Optimizer").contains("\"adam\""),
            "{}",
            text("Optimizer")
        );
        assert!(text("Preprocess").contains("standard_scale"));
        assert!(text("Source").contains("builtin"), "{}", text("Source"));
    }
}
