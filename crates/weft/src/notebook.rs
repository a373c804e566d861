//! Rich display in Jupyter through evcxr's protocol: a value with an `evcxr_display` method
//! prints `EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT`, and the kernel shows it.

use std::fmt::Write;

use crate::experiment::{Check, RunResult};
use crate::EpochRecord;

/// Prints one rich output block for evcxr.
pub fn emit(mime: &str, content: &str) {
    println!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT");
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of the training (and validation) loss per epoch, as SVG.
pub fn loss_chart(history: &[EpochRecord]) -> String {
    let points: Vec<(f32, Option<f32>)> = history
        .iter()
        .map(|r| (r.train_loss, r.validation_loss))
        .collect();
    weft_viz::chart::loss_svg(&points, 420.0, 220.0)
}

/// The run as HTML: metrics table (splits × metrics), confusion matrix, loss chart.
pub fn run_html(r: &RunResult) -> String {
    let mut h = String::from(
        r#"<div class="weft-run"><table class="weft-metrics"><thead><tr><th>metric</th>"#,
    );
    let splits: Vec<&String> = r.metrics.keys().collect();
    for s in &splits {
        let _ = write!(h, "<th>{}</th>", esc(s));
    }
    h.push_str("</tr></thead><tbody>");
    let names = r.scalar_metric_names();
    for name in names {
        let _ = write!(h, "<tr><td>{}</td>", esc(name));
        for s in &splits {
            let cell = match r.metrics[*s].get(name).and_then(|v| v.as_f64()) {
                Some(v) => format!("{v:.4}"),
                None => "–".into(),
            };
            let _ = write!(h, r#"<td class="{name} {s}">{cell}</td>"#);
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    if let Some(serde_json::Value::Array(rows)) = r
        .metrics
        .get("test")
        .and_then(|m| m.get("confusion_matrix"))
    {
        h.push_str("<p>test confusion matrix (rows: true class, columns: predicted)</p><table class=\"weft-confusion\">");
        for row in rows {
            h.push_str("<tr>");
            for v in row.as_array().into_iter().flatten() {
                let _ = write!(h, "<td>{v}</td>");
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    let t = &r.train;
    let _ = write!(
        h,
        "<p>{} epochs in {:.2}s on {} ({:.0} samples/s, {} parameters); run directory <code>{}</code></p>",
        t.epochs,
        t.seconds,
        esc(&t.device),
        t.samples_per_sec,
        t.params,
        esc(&r.run_dir)
    );
    h.push_str(&loss_chart(&r.history));
    h.push_str("</div>");
    h
}

impl RunResult {
    /// Jupyter (evcxr): metrics table, confusion matrix and loss curve.
    pub fn evcxr_display(&self) {
        emit("text/html", &run_html(self));
    }
}

impl Check {
    /// Jupyter (evcxr): the one-line summary.
    pub fn evcxr_display(&self) {
        emit("text/html", &format!("<p>{}</p>", esc(&self.to_string())));
    }
}
