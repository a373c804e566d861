//! Rich display in Jupyter through evcxr's protocol: a value with an `evcxr_display` method
//! prints `EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT`, and the kernel shows it.

use std::fmt::Write;

use crate::experiment::RunResult;
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
    let (w, h, m) = (420.0f64, 220.0f64, 40.0f64);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let series: Vec<(&str, &str, Vec<f32>)> = [
        (
            "train loss",
            "#1d4ed8",
            history.iter().map(|r| r.train_loss).collect::<Vec<_>>(),
        ),
        (
            "validation loss",
            "#b91c1c",
            history.iter().filter_map(|r| r.validation_loss).collect(),
        ),
    ]
    .into_iter()
    .filter(|(_, _, v)| !v.is_empty())
    .collect();
    let all: Vec<f32> = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = all
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let n = history.len().max(2) as f64;
    let px = |i: usize| m + (w - 2.0 * m) * i as f64 / (n - 1.0);
    let py = |v: f32| h - m - (h - 2.0 * m) * f64::from((v - lo) / (hi - lo));
    let _ = write!(
        s,
        r##"<line x1="{m}" y1="{0}" x2="{1}" y2="{0}" stroke="#475569"/><line x1="{m}" y1="{m}" x2="{m}" y2="{0}" stroke="#475569"/>"##,
        h - m,
        w - m
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">epoch</text>"#,
        w / 2.0,
        h - 8.0
    );
    let _ = write!(
        s,
        r#"<text x="{m}" y="{0}" text-anchor="middle">1</text><text x="{1}" y="{0}" text-anchor="middle">{2}</text>"#,
        h - m + 14.0,
        w - m,
        history.len()
    );
    let _ = write!(
        s,
        r#"<text x="4" y="{}">{hi:.3}</text><text x="4" y="{}">{lo:.3}</text>"#,
        m,
        h - m
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", px(i), py(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            w - m - 110.0,
            m + 14.0 * k as f64
        );
    }
    s.push_str("</svg>");
    s
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
