//! Spec errors: each says where (file:line:col and spec path) and what would be valid.

use std::fmt;

/// Where a node came from: the spec file, or one `--set` override (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    Override(usize),
}

/// A location: 1-based line and column in the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub origin: Origin,
    pub line: usize,
    pub col: usize,
}

/// One problem in a spec, located by line:column and by spec path (`model[2].dense.units`).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub loc: Option<Loc>,
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn at(loc: Loc, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            loc: Some(loc),
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in a spec, with the names needed to print locations.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// The spec file's name as the user gave it (or `<spec>` for inline text).
    pub file: String,
    /// The `--set` expressions, so an error in one can be shown as it was written.
    pub overrides: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecError {
    pub(crate) fn one(file: &str, overrides: &[String], d: Diagnostic) -> SpecError {
        SpecError {
            file: file.to_string(),
            overrides: overrides.to_vec(),
            diagnostics: vec![d],
        }
    }

    /// Each diagnostic as one printed line (the form the tests assert).
    pub fn lines(&self) -> Vec<String> {
        self.diagnostics.iter().map(|d| self.render(d)).collect()
    }

    fn render(&self, d: &Diagnostic) -> String {
        let mut out = match d.loc {
            Some(Loc {
                origin: Origin::File,
                line,
                col,
            }) => format!("{}:{line}:{col}: ", self.file),
            Some(Loc {
                origin: Origin::Override(i),
                ..
            }) => format!(
                "--set {}: ",
                self.overrides.get(i).map(String::as_str).unwrap_or("?")
            ),
            None => format!("{}: ", self.file),
        };
        if !d.path.is_empty() {
            out.push_str(&d.path);
            out.push_str(": ");
        }
        out.push_str(&d.message);
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = self.lines();
        if lines.len() > 1 {
            writeln!(f, "{} problems in the spec:", lines.len())?;
        }
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}
