//! The loss chart (train and validation loss per epoch) as SVG: drawn live in the browser
//! and in notebooks' run summaries.

use std::fmt::Write;

use serde_json::Value;

/// A line chart of the train (and validation) loss per epoch, `w` × `h` pixels.
pub fn loss_svg(history: &[(f32, Option<f32>)], w: f64, h: f64) -> String {
    let m = 40.0f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="loss-chart" data-points="{}" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#,
        history.len()
    );
    let series: Vec<(&str, &str, Vec<f32>)> = [
        (
            "train loss",
            "#1d4ed8",
            history.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        (
            "validation loss",
            "#b91c1c",
            history.iter().filter_map(|r| r.1).collect(),
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

/// [`loss_svg`] of epoch records as JSON values (`train_loss`, `validation_loss`).
pub fn svg(records: &[Value], w: f64, h: f64) -> String {
    let points: Vec<(f32, Option<f32>)> = records
        .iter()
        .filter_map(|r| {
            let t = r.get("train_loss")?.as_f64()? as f32;
            let v = r
                .get("validation_loss")
                .and_then(Value::as_f64)
                .map(|v| v as f32);
            Some((t, v))
        })
        .collect();
    loss_svg(&points, w, h)
}
