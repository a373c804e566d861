//! Hand-written readers for the model's two forms (list or graph) and graph nodes, whose
//! shape (a layer key beside `input`) the derived readers cannot express with good errors.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::de::AT_KEY;
use crate::spec::{GraphNode, GraphSpec, InputSource, Layer, Merge, ModelSpec};

const NODE_KEYS: &[&str] = &[
    "dense",
    "dropout",
    "batch_norm",
    "layer_norm",
    "activation",
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
                        "a node needs a layer (dense, dropout, batch_norm, layer_norm, activation) \
                         or a merge (add, concat)",
                    )),
                }
            }
        }
        d.deserialize_map(V)
    }
}
