//! SVG drawing of a plan: the workflow stages in a row, then the compute graph laid out in
//! layers, coloured by phase (forward, backward, update), edges as wide as their tensors.

use std::fmt::Write;

use crate::layout::{layered, Spacing};
use weft_common::units::human;
use weft_planner::{Phase, Plan};

/// `s` escaped for SVG/XML text and attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s` cut to `n` characters, with an ellipsis when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Fill and stroke of a phase's nodes (shared with the browser viewer).
pub fn colour(p: Phase) -> (&'static str, &'static str) {
    match p {
        Phase::Forward => ("#dbeafe", "#1d4ed8"),
        Phase::Backward => ("#fee2e2", "#b91c1c"),
        Phase::Update => ("#dcfce7", "#15803d"),
    }
}

/// The plan as a standalone SVG document.
pub fn plan_svg(plan: &Plan) -> String {
    let edges: Vec<(usize, usize)> = plan
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().map(move |i| (*i, n.id)))
        .collect();
    let sp = Spacing::default();
    let graph = layered(plan.nodes.len(), &edges, sp);
    let header = 86.0;
    let stage_w = 130.0;
    let width = graph
        .width
        .max(plan.workflow.len() as f64 * (stage_w + 20.0) + 40.0)
        .max(520.0);
    let height = graph.height + header + 10.0;
    let dx = (width - graph.width) / 2.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="monospace" font-size="11">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#64748b"/></marker></defs>"##);
    let c = &plan.cost;
    let _ = write!(
        s,
        r#"<text x="16" y="20" font-size="13" font-weight="bold">{} — {} params, {} FLOPs/step at batch {}</text>"#,
        esc(&plan.name),
        c.params,
        human(c.train_flops_per_step),
        c.batch_size
    );
    // Workflow stages in a row.
    for (i, st) in plan.workflow.iter().enumerate() {
        let x = 16.0 + i as f64 * (stage_w + 20.0);
        let _ = write!(
            s,
            r##"<g class="stage"><rect x="{x:.1}" y="34" width="{stage_w}" height="30" rx="6" fill="#f1f5f9" stroke="#475569"/><text x="{:.1}" y="53" text-anchor="middle">{}</text></g>"##,
            x + stage_w / 2.0,
            esc(st.kind.name())
        );
        if i + 1 < plan.workflow.len() {
            let _ = write!(
                s,
                r##"<line x1="{:.1}" y1="49" x2="{:.1}" y2="49" stroke="#64748b" marker-end="url(#arrow)"/>"##,
                x + stage_w,
                x + stage_w + 18.0
            );
        }
    }
    // Edges first, so boxes sit on top.
    for &(a, b) in &edges {
        let (pa, pb) = (&graph.nodes[a], &graph.nodes[b]);
        let numel = plan.nodes[a].shape.numel(plan.cost.batch_size).max(1) as f64;
        let w = (numel.log10() * 0.6).clamp(0.8, 4.0);
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#94a3b8" stroke-width="{w:.1}" marker-end="url(#arrow)"><title>{}</title></line>"##,
            dx + pa.x + pa.w / 2.0,
            header + pa.y + pa.h,
            dx + pb.x + pb.w / 2.0,
            header + pb.y,
            plan.nodes[a].shape
        );
    }
    for (n, p) in plan.nodes.iter().zip(&graph.nodes) {
        let (fill, stroke) = colour(n.phase);
        let (x, y) = (dx + p.x, header + p.y);
        let _ = write!(
            s,
            r##"<g class="node" data-id="{}"><title>{} {} {} flops={}</title><rect x="{x:.1}" y="{y:.1}" width="{:.0}" height="{:.0}" rx="5" fill="{fill}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#334155">{} {}</text></g>"##,
            n.id,
            esc(&n.name),
            esc(&n.op.name()),
            n.shape,
            human(n.flops),
            p.w,
            p.h,
            x + p.w / 2.0,
            y + 18.0,
            esc(&clip(&n.name, 24)),
            x + p.w / 2.0,
            y + 34.0,
            esc(&clip(&n.op.name(), 16)),
            n.shape
        );
    }
    s.push_str("</svg>");
    s
}
