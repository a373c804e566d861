//! weft-dsl: the experiment spec — types, YAML/JSON parsing with line:column for every
//! value, validation with spec paths and "did you mean", `--set` overrides, JSON Schema.
//!
//! Pure: no file system, threads or clocks; the same code runs in the CLI and in wasm32.

mod de;
mod error;
mod model_de;
pub mod overrides;
mod schema;
pub mod spec;
pub mod suggest;
mod validate;
pub mod value;

pub use error::{Diagnostic, Loc, Origin, SpecError};
pub use spec::*;
pub use validate::{node_inputs, MAX_TIMEOUT_S};
pub use value::Node;

use serde::Deserialize;

/// A parsed spec document: the located tree (with overrides applied) and its names.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file name used in messages (`specs/iris.yaml`, or `<spec>` for inline text).
    pub file: String,
    pub overrides: Vec<String>,
    pub root: Node,
}

impl Document {
    /// Parses YAML or JSON text. JSON gets a strict syntax check first (for JSON's own
    /// error messages); both then share the YAML reader, which locates every value.
    pub fn parse(file: &str, text: &str) -> Result<Document, SpecError> {
        let looks_json = file.ends_with(".json") || text.trim_start().starts_with('{');
        if looks_json {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
                let d = Diagnostic::at(
                    Loc {
                        origin: Origin::File,
                        line: e.line(),
                        col: e.column(),
                    },
                    "",
                    format!("JSON syntax error: {}", strip_position(&e.to_string())),
                );
                return Err(SpecError::one(file, &[], d));
            }
        }
        let root = value::parse(text).map_err(|d| SpecError::one(file, &[], d))?;
        Ok(Document {
            file: file.to_string(),
            overrides: Vec::new(),
            root,
        })
    }

    /// Applies one `--set path=value`.
    pub fn set(&mut self, expr: &str) -> Result<(), SpecError> {
        let index = self.overrides.len();
        self.overrides.push(expr.to_string());
        overrides::apply(&mut self.root, index, expr).map_err(|d| self.error(d))
    }

    /// The typed, validated spec with defaults applied.
    pub fn spec(&self) -> Result<Spec, SpecError> {
        let spec = Spec::deserialize(de::De::new(&self.root, String::new())).map_err(|e| {
            self.error(Diagnostic {
                loc: e.loc,
                path: e.path.unwrap_or_default(),
                message: e.message,
            })
        })?;
        let problems = validate::validate(&spec);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(SpecError {
                file: self.file.clone(),
                overrides: self.overrides.clone(),
                diagnostics: problems
                    .into_iter()
                    .map(|p| self.diagnostic(&p.path, p.message))
                    .collect(),
            })
        }
    }

    /// A diagnostic at a spec path (located at the value, or its nearest written ancestor).
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            loc: Some(overrides::locate(&self.root, path).loc),
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// A one-problem error at a spec path, for later stages (planner, data) to report.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> SpecError {
        self.error(self.diagnostic(path, message))
    }

    fn error(&self, d: Diagnostic) -> SpecError {
        SpecError::one(&self.file, &self.overrides, d)
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Parses, applies overrides, types and validates in one call.
pub fn load(file: &str, text: &str, sets: &[String]) -> Result<(Spec, Document), SpecError> {
    let mut doc = Document::parse(file, text)?;
    for s in sets {
        doc.set(s)?;
    }
    let spec = doc.spec()?;
    Ok((spec, doc))
}

pub use schema::json_schema;
