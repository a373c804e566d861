//! The metrics table printed after `weft run`.

use std::fmt::Write;

use serde_json::Value;

use crate::RunResult;

fn cell(v: &Value) -> String {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| format!("{f:.4}"))
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// Split × metric table, then the confusion matrices, then the run summary.
pub fn table(r: &RunResult) -> String {
    let mut out = String::new();
    let splits: Vec<&String> = r.metrics.keys().collect();
    let names = r.scalar_metric_names();
    let _ = write!(out, "{:<12}", "metric");
    for s in &splits {
        let _ = write!(out, "{s:>12}");
    }
    out.push('\n');
    for name in names {
        let _ = write!(out, "{name:<12}");
        for s in &splits {
            let v = r.metrics[*s]
                .get(name)
                .map(cell)
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, "{v:>12}");
        }
        out.push('\n');
    }
    if let Some(Value::Array(rows)) = r
        .metrics
        .get("test")
        .and_then(|m| m.get("confusion_matrix"))
    {
        let _ = writeln!(
            out,
            "\ntest confusion matrix (rows: true class, columns: predicted):"
        );
        for row in rows {
            let cells: Vec<String> = row
                .as_array()
                .map(|r| r.iter().map(|v| format!("{:>6}", v.to_string())).collect())
                .unwrap_or_default();
            let _ = writeln!(out, "{}", cells.join(""));
        }
    }
    let t = &r.train;
    let _ = writeln!(
        out,
        "\n{} epochs in {:.2}s on {} ({:.0} samples/s, {} parameters){}\nrun directory: {}",
        t.epochs,
        t.seconds,
        t.device,
        t.samples_per_sec,
        t.params,
        t.stopped_early
            .as_ref()
            .map(|s| format!("\nstopped early: {s}"))
            .unwrap_or_default(),
        r.run_dir
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}
