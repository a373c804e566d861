//! `--set path=value` overrides, applied to the located tree before it is typed, so an
//! override is checked exactly like the file (and its errors point at the `--set`).

use crate::error::Diagnostic;
use crate::error::{Loc, Origin};
use crate::value::{self, Kind, Node};

/// One parsed step of a spec path: `model[2].dense.units` is key, index, key, key.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Splits a spec path into steps; `None` when it is malformed.
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            steps.push(Step::Key(name.to_string()));
        } else if rest.is_empty() {
            return None;
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            steps.push(Step::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    (!steps.is_empty()).then_some(steps)
}

/// Applies `expr` (`a.b[1].c=value`), the `index`-th override, to the tree.
pub fn apply(root: &mut Node, index: usize, expr: &str) -> Result<(), Diagnostic> {
    let origin = Loc {
        origin: Origin::Override(index),
        line: 1,
        col: 1,
    };
    let fail = |msg: String| Diagnostic::at(origin, "", msg);
    let (path, text) = expr
        .split_once('=')
        .ok_or_else(|| fail("expected `path=value`, e.g. `train.optimizer.adam.lr=0.01`".into()))?;
    let steps = parse_path(path.trim()).ok_or_else(|| {
        fail(format!(
            "`{path}` is not a spec path like `model[2].dense.units`"
        ))
    })?;
    let mut value = if text.trim().is_empty() {
        Node::scalar("", true, origin)
    } else if matches!(text.trim(), "null" | "~" | "Null" | "NULL") {
        // Unsets the key: the value goes back to its default (`parallelism.data=null`
        // turns data parallelism off).
        Node::scalar("null", true, origin)
    } else {
        value::parse(text).map_err(|d| fail(format!("bad value: {}", d.message)))?
    };
    relocate(&mut value, origin);

    let mut node = root;
    let mut walked = String::new();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        match step {
            Step::Key(key) => {
                // A bare enum name (`optimizer: adam`) becomes `{adam: }` so it can take params.
                if matches!(node.kind, Kind::Scalar { .. }) {
                    let entries = if node.is_null() {
                        Vec::new()
                    } else {
                        vec![(node.clone(), Node::scalar("", true, node.loc))]
                    };
                    node.kind = Kind::Map(entries);
                }
                let Kind::Map(entries) = &mut node.kind else {
                    return Err(Diagnostic::at(
                        origin,
                        walked.clone(),
                        format!("`{walked}` is a list; use an index like `{walked}[0]`"),
                    ));
                };
                let pos = match entries.iter().position(|(k, _)| k.as_str() == Some(key)) {
                    Some(p) => {
                        // Mark the key as overridden so a kind switch picks it.
                        entries[p].0.loc = origin;
                        p
                    }
                    None => {
                        entries.push((
                            Node::scalar(key.clone(), true, origin),
                            Node::scalar("", true, origin),
                        ));
                        entries.len() - 1
                    }
                };
                walked = crate::de::join(&walked, key);
                if last {
                    if value.is_null() && !text.trim().is_empty() {
                        entries.remove(pos);
                    } else {
                        entries[pos].1 = value;
                    }
                    return Ok(());
                }
                node = &mut entries[pos].1;
            }
            Step::Index(idx) => {
                let Kind::Seq(items) = &mut node.kind else {
                    return Err(Diagnostic::at(
                        origin,
                        walked.clone(),
                        format!("`{walked}` is not a list, so `[{idx}]` does not apply"),
                    ));
                };
                let len = items.len();
                let item = items.get_mut(*idx).ok_or_else(|| {
                    Diagnostic::at(
                        origin,
                        walked.clone(),
                        format!(
                            "index {idx} is out of range; `{walked}` has {len} item{}",
                            if len == 1 { "" } else { "s" }
                        ),
                    )
                })?;
                walked = format!("{walked}[{idx}]");
                if last {
                    *item = value;
                    return Ok(());
                }
                node = item;
            }
        }
    }
    Ok(())
}

fn relocate(node: &mut Node, loc: Loc) {
    node.loc = loc;
    match &mut node.kind {
        Kind::Scalar { .. } => {}
        Kind::Seq(items) => items.iter_mut().for_each(|n| relocate(n, loc)),
        Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            relocate(k, loc);
            relocate(v, loc);
        }),
    }
}

/// The node at a spec path, or the deepest ancestor that exists (for defaulted values).
pub fn locate<'a>(root: &'a Node, path: &str) -> &'a Node {
    let mut node = root;
    for step in parse_path(path).unwrap_or_default() {
        let next = match (&step, &node.kind) {
            (Step::Key(k), Kind::Map(_)) => node.get(k),
            (Step::Index(i), Kind::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(
            parse_path("model[2].dense.units"),
            Some(vec![
                Step::Key("model".into()),
                Step::Index(2),
                Step::Key("dense".into()),
                Step::Key("units".into())
            ])
        );
        assert_eq!(parse_path("a..b"), None);
        assert_eq!(parse_path("a[x]"), None);
    }

    #[test]
    fn sets_nested_values_and_creates_maps() {
        let mut root = value::parse("train: {epochs: 1}\n").unwrap();
        apply(&mut root, 0, "train.optimizer.adam.lr=0.5").unwrap();
        let lr = locate(&root, "train.optimizer.adam.lr");
        assert_eq!(lr.as_str(), Some("0.5"));
        assert_eq!(lr.loc.origin, Origin::Override(0));
    }
}
