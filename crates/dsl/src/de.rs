//! A serde `Deserializer` over the located tree: typed specs from YAML or JSON, where every
//! error carries the line:column of the offending value and its spec path.
//!
//! Written by hand (instead of serde_yaml's) because errors need a location and a spec path
//! for every value, valid choices for every enum, and because `--set` overrides live in the
//! same tree. Enums accept `{kind: {params}}`, a bare `kind` (params from their defaults) and
//! `kind:value` (for `builtin:iris`).

use std::fmt::Display;

use serde::de::{self, DeserializeSeed, Visitor};

use crate::error::{Loc, Origin};
use crate::suggest;
use crate::value::{Kind, Node};

/// An error while reading the tree; the innermost node that saw it sets the location.
#[derive(Debug)]
pub struct DeError {
    pub loc: Option<Loc>,
    pub path: Option<String>,
    pub message: String,
    /// Locate at the map key just read rather than at the map (unknown or misplaced keys).
    at_key: bool,
}

/// Prefix of a `custom` message that is about the key just read, so it is located there.
pub(crate) const AT_KEY: &str = "\u{1}at-key:";

impl DeError {
    fn new(message: impl Into<String>) -> DeError {
        DeError {
            loc: None,
            path: None,
            message: message.into(),
            at_key: false,
        }
    }

    pub(crate) fn located(mut self, loc: Loc, path: &str) -> DeError {
        if self.loc.is_none() {
            self.loc = Some(loc);
            self.path = Some(path.to_string());
        }
        self
    }
}

impl Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: Display>(msg: T) -> Self {
        let msg = msg.to_string();
        match msg.strip_prefix(AT_KEY) {
            Some(rest) => {
                let mut e = DeError::new(rest);
                e.at_key = true;
                e
            }
            None => DeError::new(msg),
        }
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError::new(format!(
            "expected {exp}, found {}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError::new(format!(
            "expected {exp}, found {}",
            describe_unexpected(&unexp)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::new(format!(
            "unknown key `{field}`{}",
            suggest::hint(field, expected)
        ));
        e.at_key = true;
        e
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        // The noun ("activation", "optimizer", …) is filled in from the spec path on the way out.
        DeError::new(format!(
            "unknown {{noun}} `{variant}`{}",
            suggest::hint(variant, expected)
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing required key `{field}`"))
    }
}

/// serde's `Unexpected` in the words of `Node::describe`.
fn describe_unexpected(u: &de::Unexpected) -> String {
    use de::Unexpected as U;
    match u {
        U::Bool(b) => format!("`{b}`"),
        U::Unsigned(n) => format!("`{n}`"),
        U::Signed(n) => format!("`{n}`"),
        U::Float(f) => format!("`{f}`"),
        U::Char(c) => format!("`{c}`"),
        U::Str(s) => format!("`{s}`"),
        U::Unit => "nothing".into(),
        U::Seq => "a list".into(),
        U::Map => "a map".into(),
        other => other.to_string(),
    }
}

/// What an unknown enum name is called in messages, from the last key of its spec path.
pub(crate) fn noun_for(path: &str) -> &'static str {
    let last = path
        .rsplit('.')
        .next()
        .unwrap_or("")
        .split('[')
        .next()
        .unwrap_or("");
    match last {
        "activation" => "activation",
        "optimizer" => "optimizer",
        "loss" => "loss",
        "source" => "data source",
        "builtin" => "builtin data set",
        "preprocess" => "preprocessing stage",
        "evaluate" => "metric",
        "init" => "initializer",
        "device" => "device",
        "sync" => "sync mode",
        "algorithm" => "parameter-server algorithm",
        "schedule" => "schedule",
        "compression" => "compression",
        "cluster" => "cluster",
        "model" => "layer",
        _ => "value",
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Deserializes one node; `path` is its spec path.
pub struct De<'a> {
    pub node: &'a Node,
    pub path: String,
}

impl<'a> De<'a> {
    pub fn new(node: &'a Node, path: String) -> De<'a> {
        De { node, path }
    }

    fn fail(&self, message: impl Into<String>) -> DeError {
        DeError::new(message).located(self.node.loc, &self.path)
    }

    fn expected(&self, what: &str) -> DeError {
        self.fail(format!("expected {what}, found {}", self.node.describe()))
    }

    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.kind {
            Kind::Scalar { text, plain } => Some((text.as_str(), *plain)),
            _ => None,
        }
    }

    fn int(&self) -> Result<i128, DeError> {
        match self.scalar() {
            Some((t, true)) => t
                .replace('_', "")
                .parse::<i128>()
                .map_err(|_| self.expected("an integer")),
            _ => Err(self.expected("an integer")),
        }
    }

    fn unsigned(&self) -> Result<u64, DeError> {
        let v = self.int()?;
        u64::try_from(v).map_err(|_| {
            self.fail(format!(
                "expected a non-negative integer, found {}",
                self.node.describe()
            ))
        })
    }

    fn float(&self) -> Result<f64, DeError> {
        match self.scalar() {
            Some((t, true)) => match t {
                ".inf" | ".Inf" | "+.inf" => Ok(f64::INFINITY),
                "-.inf" | "-.Inf" => Ok(f64::NEG_INFINITY),
                ".nan" | ".NaN" => Ok(f64::NAN),
                _ => t.parse::<f64>().map_err(|_| self.expected("a number")),
            },
            _ => Err(self.expected("a number")),
        }
    }

    /// Wraps a visitor's error so it points at this node.
    fn here<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.located(self.node.loc, &self.path))
    }
}

macro_rules! unsigned {
    ($($name:ident => $visit:ident $t:ty),*) => {$(
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.unsigned()?;
            let v = <$t>::try_from(v).map_err(|_| self.fail(format!("{v} is too large")))?;
            self.here(visitor.$visit(v))
        }
    )*};
}

macro_rules! signed {
    ($($name:ident => $visit:ident $t:ty),*) => {$(
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.int()?;
            let v = <$t>::try_from(v).map_err(|_| self.fail(format!("{v} is out of range")))?;
            self.here(visitor.$visit(v))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(_) => self.deserialize_seq(visitor),
            Kind::Map(_) => self.deserialize_map(visitor),
            Kind::Scalar { text, plain } => {
                let r = if self.node.is_null() {
                    visitor.visit_unit()
                } else if !plain {
                    visitor.visit_str(text)
                } else if text == "true" || text == "false" {
                    visitor.visit_bool(text == "true")
                } else if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(f) = text.parse::<f64>() {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(text)
                };
                self.here(r)
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(("true", true)) => self.here(visitor.visit_bool(true)),
            Some(("false", true)) => self.here(visitor.visit_bool(false)),
            _ => Err(self.expected("true or false")),
        }
    }

    unsigned!(deserialize_u8 => visit_u8 u8, deserialize_u16 => visit_u16 u16,
              deserialize_u32 => visit_u32 u32, deserialize_u64 => visit_u64 u64);
    signed!(deserialize_i8 => visit_i8 i8, deserialize_i16 => visit_i16 i16,
            deserialize_i32 => visit_i32 i32, deserialize_i64 => visit_i64 i64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.float()?;
        self.here(visitor.visit_f32(v as f32))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.float()?;
        self.here(visitor.visit_f64(v))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(_) if self.node.is_null() => Err(self.expected("a string")),
            Some((t, _)) => self.here(visitor.visit_str(t)),
            None => Err(self.expected("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            self.here(visitor.visit_none())
        } else {
            let (loc, path) = (self.node.loc, self.path.clone());
            visitor.visit_some(self).map_err(|e| e.located(loc, &path))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            self.here(visitor.visit_unit())
        } else {
            Err(self.expected("nothing"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => {
                let access = SeqAccess {
                    items: items.iter(),
                    index: 0,
                    path: &self.path,
                };
                self.here(visitor.visit_seq(access))
            }
            _ => Err(self.expected("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let empty = Vec::new();
        let entries = match &self.node.kind {
            Kind::Map(entries) => entries,
            _ if self.node.is_null() => &empty,
            _ => return Err(self.expected("a map")),
        };
        let mut access = MapAccess {
            entries: entries.iter(),
            value: None,
            path: &self.path,
            last_key: None,
        };
        let r = visitor.visit_map(&mut access);
        r.map_err(|e| match (e.at_key, access.last_key) {
            (true, Some(key_loc)) => e.located(key_loc, &self.path),
            _ => e.located(self.node.loc, &self.path),
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (tag, payload): (Node, Option<Node>) = match &self.node.kind {
            // `kind:value` also when quoted: JSON (`"source": "builtin:iris"`) has no plain scalars.
            Kind::Scalar { text, plain } if !self.node.is_null() => match text.split_once(':') {
                Some((t, v)) if !t.is_empty() && !v.trim().is_empty() => (
                    Node::scalar(t, true, self.node.loc),
                    Some(Node::scalar(v.trim(), *plain, self.node.loc)),
                ),
                _ => (self.node.clone(), None),
            },
            Kind::Map(entries) => {
                let chosen: Vec<&(Node, Node)> = if entries.len() > 1 {
                    // `--set a.kind.x=…` on a map naming another kind switches kinds.
                    let overridden: Vec<_> = entries
                        .iter()
                        .filter(|(k, _)| matches!(k.loc.origin, Origin::Override(_)))
                        .collect();
                    if overridden.len() == 1 {
                        overridden
                    } else {
                        entries.iter().collect()
                    }
                } else {
                    entries.iter().collect()
                };
                match chosen.as_slice() {
                    [(k, v)] => (k.clone(), Some(v.clone())),
                    [] => {
                        return Err(
                            self.fail("expected one key naming the kind, found an empty map")
                        )
                    }
                    many => {
                        let names: Vec<String> = many
                            .iter()
                            .map(|(k, _)| format!("`{}`", k.as_str().unwrap_or("?")))
                            .collect();
                        return Err(self.fail(format!(
                            "expected exactly one key naming the kind, found {}: {}",
                            many.len(),
                            names.join(", ")
                        )));
                    }
                }
            }
            _ => return Err(self.expected("a name or a map with one key")),
        };
        let access = EnumAccess {
            tag,
            payload,
            path: self.path.clone(),
        };
        let (loc, path) = (self.node.loc, self.path.clone());
        visitor.visit_enum(access).map_err(|e| {
            let mut e = e.located(loc, &path);
            let noun = noun_for(e.path.as_deref().unwrap_or(&path));
            e.message = e.message.replace("{noun}", noun);
            e
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(De::new(node, path.clone()))
            .map(Some)
            .map_err(|e| e.located(node.loc, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'p str,
    last_key: Option<Loc>,
}

impl<'de> de::MapAccess<'de> for &mut MapAccess<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let name = key.as_str().unwrap_or_default();
        self.last_key = Some(key.loc);
        self.value = Some((value, join(self.path, name)));
        seed.deserialize(De::new(key, self.path.to_string()))
            .map(Some)
            .map_err(|e| e.located(key.loc, self.path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| DeError::new("internal error: value without key"))?;
        seed.deserialize(De::new(node, path.clone()))
            .map_err(|e| e.located(node.loc, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess {
    tag: Node,
    payload: Option<Node>,
    path: String,
}

impl<'de> de::EnumAccess<'de> for EnumAccess {
    type Error = DeError;
    type Variant = VariantAccess;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantAccess), DeError> {
        let name = self.tag.as_str().unwrap_or_default().to_string();
        let value = seed
            .deserialize(De::new(&self.tag, self.path.clone()))
            .map_err(|e| e.located(self.tag.loc, &self.path))?;
        let payload = self
            .payload
            .unwrap_or_else(|| Node::scalar("", true, self.tag.loc));
        Ok((
            value,
            VariantAccess {
                payload,
                path: join(&self.path, &name),
                name,
            },
        ))
    }
}

struct VariantAccess {
    name: String,
    payload: Node,
    path: String,
}

impl<'de> de::VariantAccess<'de> for VariantAccess {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        let empty_map = matches!(&self.payload.kind, Kind::Map(m) if m.is_empty());
        if self.payload.is_null() || empty_map {
            Ok(())
        } else {
            Err(DeError::new(format!("`{}` takes no parameters", self.name))
                .located(self.payload.loc, &self.path))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(De::new(&self.payload, self.path.clone()))
            .map_err(|e| e.located(self.payload.loc, &self.path))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(De::new(&self.payload, self.path.clone()), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(De::new(&self.payload, self.path.clone()), visitor)
    }
}
