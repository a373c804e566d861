//! Hand-written readers for the model's two forms (list or graph) and graph nodes, whose
//! shape (a layer key beside `input`) the derived readers cannot express with good errors.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;

use crate::de::AT_KEY;
use crate::spec::{GraphNode, GraphSpec, InputSource, Layer, Merge, ModelSpec, Padding, Pair};

const NODE_KEYS: &[&str] = &[
    "dense",
    "dropout",
    "batch_norm",
    "layer_norm",
    "activation",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool2d",
    "flatten",
    "add",
    "concat",
    "input",
];

impl<'de> Deserialize<'de> for ModelSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of layers or a graph (inputs, nodes, output)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ModelSpec, A::Error> {
                let mut layers = Vec::new();
                while let Some(layer) = seq.next_element::<Layer>()? {
                    layers.push(layer);
                }
                if layers.is_empty() {
                    return Err(de::Error::custom("the model has no layers"));
                }
                Ok(ModelSpec::Sequential(layers))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelSpec, A::Error> {
                GraphSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ModelSpec::Graph)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for InputSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`features`, a list of feature columns or `{embedding: {column, dim}}`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<InputSource, E> {
                if s == "features" {
                    Ok(InputSource::All(s.to_string()))
                } else {
                    Err(E::custom(format!(
                        "expected `features` or a list of feature columns, found `{s}`"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputSource, A::Error> {
                let mut cols = Vec::new();
                while let Some(c) = seq.next_element::<String>()? {
                    cols.push(c);
                }
                Ok(InputSource::Columns(cols))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<InputSource, A::Error> {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Embedding {
                    embedding: crate::spec::EmbeddingInput,
                }
                let e = Embedding::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(InputSource::Embedding {
                    embedding: e.embedding,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for GraphNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GraphNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a layer with `input`, or `add`/`concat` with a list of nodes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GraphNode, A::Error> {
                let mut input: Option<String> = None;
                let mut layer: Option<Layer> = None;
                let mut merge: Option<Merge> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let first = match (&layer, &merge) {
                        (Some(l), _) => Some(l.kind()),
                        (None, Some(Merge::Add(_))) => Some("add"),
                        (None, Some(Merge::Concat(_))) => Some("concat"),
                        (None, None) => None,
                    };
                    if let Some(first) =
                        first.filter(|_| key != "input" && NODE_KEYS.contains(&key.as_str()))
                    {
                        return Err(de::Error::custom(format!(
                            "{AT_KEY}a node has one layer or merge, found `{first}` and `{key}`; \
                             put `{key}` in a node of its own"
                        )));
                    }
                    match key.as_str() {
                        "input" => input = Some(map.next_value()?),
                        "dense" => layer = Some(Layer::Dense(map.next_value()?)),
                        "dropout" => layer = Some(Layer::Dropout(map.next_value()?)),
                        "batch_norm" => layer = Some(Layer::BatchNorm(map.next_value()?)),
                        "layer_norm" => layer = Some(Layer::LayerNorm(map.next_value()?)),
                        "activation" => layer = Some(Layer::Activation(map.next_value()?)),
                        "conv2d" => layer = Some(Layer::Conv2d(map.next_value()?)),
                        "max_pool2d" => layer = Some(Layer::MaxPool2d(map.next_value()?)),
                        "avg_pool2d" => layer = Some(Layer::AvgPool2d(map.next_value()?)),
                        "global_avg_pool2d" => {
                            layer = Some(Layer::GlobalAvgPool2d(map.next_value()?))
                        }
                        "flatten" => layer = Some(Layer::Flatten(map.next_value()?)),
                        "add" => merge = Some(Merge::Add(map.next_value()?)),
                        "concat" => merge = Some(Merge::Concat(map.next_value()?)),
                        other => return Err(de::Error::unknown_field(other, NODE_KEYS)),
                    }
                }
                match (layer, merge, input) {
                    (Some(layer), None, Some(input)) => Ok(GraphNode::Layer { layer, input }),
                    (Some(layer), None, None) => Err(de::Error::custom(format!(
                        "missing required key `input` (the node or input this `{}` layer reads)",
                        layer.kind()
                    ))),
                    (None, Some(_), Some(_)) => Err(de::Error::custom(
                        "a merge takes its inputs from its list; remove `input`",
                    )),
                    (None, Some(m), None) => Ok(GraphNode::Merge(m)),
                    _ => Err(de::Error::custom(
                        "a node needs a layer (dense, dropout, batch_norm, layer_norm, activation, \
                         conv2d, max_pool2d, avg_pool2d, global_avg_pool2d, flatten) or a merge \
                         (add, concat)",
                    )),
                }
            }
        }
        d.deserialize_map(V)
    }
}

/// `3` or `[3, 5]`.
impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pair;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number or a list [height, width]")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Pair, E> {
                Ok(Pair::Both(n as usize))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Pair, E> {
                usize::try_from(n).map(Pair::Both).map_err(|_| {
                    E::custom(format!(
                        "expected a whole number >= 0 or [height, width], found {n}"
                    ))
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = seq.next_element::<usize>()? {
                    v.push(n);
                }
                match v[..] {
                    [h, w] => Ok(Pair::Each([h, w])),
                    _ => Err(de::Error::custom(format!(
                        "expected [height, width], found a list of {}",
                        v.len()
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Pair {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pair::Both(n) => s.serialize_u64(*n as u64),
            Pair::Each(hw) => hw.serialize(s),
        }
    }
}

/// `valid`, `same`, `1` or `[1, 2]`.
impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Padding;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`valid`, `same`, a whole number or [height, width]")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Padding, E> {
                match s {
                    "valid" => Ok(Padding::Valid),
                    "same" => Ok(Padding::Same),
                    other => Err(E::custom(format!(
                        "unknown padding `{other}`; valid: `valid`, `same`, a whole number or [height, width]"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Padding, E> {
                Ok(Padding::Cells(Pair::Both(n as usize)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Padding, E> {
                usize::try_from(n)
                    .map(|n| Padding::Cells(Pair::Both(n)))
                    .map_err(|_| E::custom(format!("padding {n}: expected cells >= 0")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Padding, A::Error> {
                Pair::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Padding::Cells)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Padding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Padding::Valid => s.serialize_str("valid"),
            Padding::Same => s.serialize_str("same"),
            Padding::Cells(p) => p.serialize(s),
        }
    }
}
