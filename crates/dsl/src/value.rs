//! A spec document as a tree whose every node knows where it came from (line:column).
//!
//! YAML and JSON both parse through the YAML 1.2 event parser (JSON is YAML), so every
//! value of either format has a location. Scalars stay as text until a typed reader asks
//! for a bool, a number or a string (see `de.rs`).

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::{Diagnostic, Loc, Origin};

impl Loc {
    pub fn file(span: &Span) -> Loc {
        Loc {
            origin: Origin::File,
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Scalar text; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub loc: Loc,
}

impl Node {
    pub fn scalar(text: impl Into<String>, plain: bool, loc: Loc) -> Node {
        Node {
            kind: Kind::Scalar {
                text: text.into(),
                plain,
            },
            loc,
        }
    }

    /// The scalar's text, when this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Is this a plain `null`, `~` or empty scalar?
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short description of the node for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { text, .. } if self.is_null() && text.is_empty() => "nothing".into(),
            Kind::Scalar { text, plain: true } => format!("`{text}`"),
            Kind::Scalar { text, .. } => format!("the string \"{text}\""),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a map".into(),
        }
    }

    /// Value of `key` when this is a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses one YAML (or JSON) document into a located tree.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| syntax_error(&builder, text, &e))?;
        builder.event(event, span)?;
    }
    builder.finish()
}

/// A YAML syntax error at the point the parser stopped; an unclosed `{` or `[` is reported
/// where it was opened (the parser only notices at the end of the text).
fn syntax_error(builder: &Builder, text: &str, e: &saphyr_parser::ScanError) -> Diagnostic {
    let at = Loc {
        origin: Origin::File,
        line: e.marker().line(),
        col: e.marker().col() + 1,
    };
    let info = e.info();
    let bracket = if info.starts_with("while parsing a flow mapping") {
        Some('{')
    } else if info.starts_with("while parsing a flow sequence") {
        Some('[')
    } else {
        None
    };
    let opened = builder.stack.last().map(|open| match open {
        Open::Seq(_, loc, _) | Open::Map(_, _, loc, _) => *loc,
    });
    if let (Some(b), Some(open)) = (bracket, opened) {
        let rest: String = text.chars().skip(e.marker().index()).collect();
        let at_end = rest
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let close = if b == '{' { '}' } else { ']' };
        return if at_end {
            Diagnostic::at(
                open,
                "",
                format!("YAML syntax error: this `{b}` is never closed with `{close}`"),
            )
        } else {
            Diagnostic::at(
                at,
                "",
                format!(
                    "YAML syntax error: {info} (in the `{b}` opened at {}:{})",
                    open.line, open.col
                ),
            )
        };
    }
    Diagnostic::at(at, "", format!("YAML syntax error: {info}"))
}

enum Open {
    Seq(Vec<Node>, Loc, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Loc, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    done: Option<Node>,
    documents: usize,
    /// Anchored nodes with their size in nodes (what an alias to them adds).
    anchors: Vec<(usize, Node, usize)>,
    /// Nodes in the document so far, aliases expanded.
    nodes: usize,
}

/// The most YAML nodes a spec may expand to, aliases included: far more than any model a
/// person writes (a 20,000-layer list is ~120,000), far less than an alias bomb asks for
/// (nine levels of ten aliases are 10⁹).
pub const MAX_NODES: usize = 1_000_000;

/// Nodes in `n`'s tree, itself included.
fn size(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size(k) + size(v))
                .sum::<usize>()
        }
    }
}

impl Builder {
    /// Counts `n` more nodes; refuses the spec past [`MAX_NODES`], before anything that large
    /// is allocated.
    fn count(&mut self, n: usize, loc: Loc) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::at(
                loc,
                "",
                format!("the spec expands to more than {MAX_NODES} YAML nodes (an alias repeats every node of its anchor); write it with fewer aliases"),
            ));
        }
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        let loc = Loc::file(&span);
        if matches!(
            event,
            Event::Scalar(..) | Event::SequenceEnd | Event::MappingEnd
        ) {
            self.count(1, loc)?;
        }
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::at(
                        loc,
                        "",
                        "a spec file holds one document; found a second `---`",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                // `!!str 2` is the string "2"; the core schema's other tags leave the value to
                // its typed reader; any other tag means nothing in a spec.
                let plain = match tag.as_deref() {
                    None => matches!(style, ScalarStyle::Plain),
                    Some(t) if t.is_yaml_core_schema() && t.suffix == "str" => false,
                    Some(t)
                        if t.is_yaml_core_schema()
                            && matches!(t.suffix.as_str(), "int" | "float" | "bool" | "null") =>
                    {
                        matches!(style, ScalarStyle::Plain)
                    }
                    Some(t) => {
                        return Err(Diagnostic::at(
                            loc,
                            "",
                            format!("the tag `{}{}` is not supported in a spec; write the plain value (`!!str` makes a string)", if t.is_yaml_core_schema() { "!!" } else { &t.handle }, t.suffix),
                        ))
                    }
                };
                self.push(Node::scalar(text.into_owned(), plain, loc), anchor)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(Vec::new(), loc, anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(Vec::new(), None, loc, anchor))
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(items, loc, anchor)) = self.stack.pop() {
                    self.push(
                        Node {
                            kind: Kind::Seq(items),
                            loc,
                        },
                        anchor,
                    )?;
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(entries, _, loc, anchor)) = self.stack.pop() {
                    self.push(
                        Node {
                            kind: Kind::Map(entries),
                            loc,
                        },
                        anchor,
                    )?;
                }
            }
            Event::Alias(id) => {
                let at = self
                    .anchors
                    .iter()
                    .rposition(|(a, ..)| *a == id)
                    .ok_or_else(|| Diagnostic::at(loc, "", "alias to an unknown anchor"))?;
                // Counted before the copy is made.
                self.count(self.anchors[at].2, loc)?;
                let node = self.anchors[at].1.clone();
                self.push(node, 0)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        if anchor != 0 {
            let n = size(&node);
            self.anchors.push((anchor, node.clone(), n));
        }
        match self.stack.last_mut() {
            None => self.done = Some(node),
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(entries, pending, ..)) => match pending.take() {
                None => {
                    if let Some(key) = node.as_str() {
                        if entries.iter().any(|(k, _)| k.as_str() == Some(key)) {
                            return Err(Diagnostic::at(
                                node.loc,
                                "",
                                format!("duplicate key `{key}`"),
                            ));
                        }
                    } else {
                        return Err(Diagnostic::at(
                            node.loc,
                            "",
                            "map keys must be plain strings",
                        ));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }

    fn finish(self) -> Result<Node, Diagnostic> {
        match self.done {
            Some(node) if !node.is_null() => Ok(node),
            _ => Err(Diagnostic {
                loc: Some(Loc {
                    origin: Origin::File,
                    line: 1,
                    col: 1,
                }),
                path: String::new(),
                message: "the spec is empty; it needs at least `name`, `data` and `model`".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based() {
        let node = parse("a: 1\nb:\n  c: [x, y]\n").unwrap();
        let c = node.get("b").unwrap().get("c").unwrap();
        assert_eq!((c.loc.line, c.loc.col), (3, 6));
        let Kind::Seq(items) = &c.kind else { panic!() };
        assert_eq!((items[1].loc.line, items[1].loc.col), (3, 10));
    }

    #[test]
    fn json_is_parsed_with_locations() {
        let node = parse("{\n  \"a\": {\"b\": 2}\n}").unwrap();
        let b = node.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.as_str(), Some("2"));
        assert_eq!((b.loc.line, b.loc.col), (2, 14)); // `  "a": {"b": 2}`: the 2 is column 14
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.loc.unwrap().line, 2);
    }
}
