//! The view laid out (the layered layout of `layout.rs`: layers, crossing reduction,
//! coordinates) and drawn as SVG. Every node carries `data-*` attributes the page uses for
//! search, clicks and the detail panel; groups of the train stage get a frame with a header
//! that collapses them.

use std::fmt::Write;

use crate::layout::{layered_in_bands, Layout, Spacing};
use crate::svg::{clip, colour, esc};
use serde::Serialize;
use weft_planner::Phase;

use crate::view::{group_of, Kind, View};

/// A drawing: the SVG, its size, and where each node went (for zooming to it).
#[derive(Debug, Clone, Serialize)]
pub struct Drawing {
    pub svg: String,
    pub width: f64,
    pub height: f64,
    pub boxes: Vec<[f64; 4]>,
}

/// Fill and stroke of a node by what it is.
fn colours(kind: Kind, group: Option<Phase>) -> (&'static str, &'static str) {
    match (kind, group) {
        (Kind::Stage, _) | (_, None) => ("#f1f5f9", "#475569"),
        (_, Some(p)) => colour(p),
    }
}

const BUCKET: [&str; 4] = ["#d97706", "#7c3aed", "#0891b2", "#be185d"];

/// The layered layout of `view`: stages before the graph, forward, backward, update and
/// the stages after it each in their own band of layers.
pub fn layout(view: &View) -> Layout {
    let edges: Vec<(usize, usize)> = view.edges.iter().map(|e| (e.from, e.to)).collect();
    let mut seen_graph = false;
    let bands: Vec<usize> = view
        .nodes
        .iter()
        .map(|n| {
            let band = match n.group {
                Some(Phase::Forward) => 1,
                Some(Phase::Backward) => 2,
                Some(Phase::Update) => 3,
                None if seen_graph => 4,
                None => 0,
            };
            seen_graph |= n.group.is_some();
            band
        })
        .collect();
    layered_in_bands(view.nodes.len(), &edges, &bands, Spacing::default())
}

/// Lays out and draws `view`.
pub fn draw(view: &View) -> Drawing {
    let lay = layout(view);
    let pad = 28.0; // room for group headers
    let (width, height) = (lay.width + 2.0 * pad, lay.height + 2.0 * pad);
    let mut s = String::with_capacity(256 * view.nodes.len() + 1024);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="graph-svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="ui-monospace, monospace" font-size="11">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#64748b"/></marker></defs>"##);
    let boxes: Vec<[f64; 4]> = lay
        .nodes
        .iter()
        .map(|p| [p.x + pad, p.y + pad, p.w, p.h])
        .collect();
    // Frames of the open groups, behind everything.
    let mut headers = String::new();
    for p in [Phase::Forward, Phase::Backward, Phase::Update] {
        let g = group_of(p);
        let members: Vec<&[f64; 4]> = view
            .nodes
            .iter()
            .zip(&boxes)
            .filter(|(n, _)| n.kind == Kind::Op && n.group == Some(p))
            .map(|(_, b)| b)
            .collect();
        if members.is_empty() {
            continue;
        }
        let x0 = members.iter().map(|b| b[0]).fold(f64::INFINITY, f64::min) - 10.0;
        let y0 = members.iter().map(|b| b[1]).fold(f64::INFINITY, f64::min) - 22.0;
        let x1 = members.iter().map(|b| b[0] + b[2]).fold(0.0, f64::max) + 10.0;
        let y1 = members.iter().map(|b| b[1] + b[3]).fold(0.0, f64::max) + 8.0;
        let (_, stroke) = colour(p);
        let _ = write!(
            s,
            r##"<rect class="group-frame" data-group="{g}" x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" rx="8" fill="none" stroke="{stroke}" stroke-opacity="0.35" stroke-dasharray="4 3"/>"##,
            x1 - x0,
            y1 - y0,
        );
        // Headers go on top of everything, so edges never cover them.
        let _ = write!(
            headers,
            r##"<text class="group-header" data-group="{g}" x="{:.1}" y="{:.1}" fill="{stroke}" font-weight="bold" style="cursor:pointer">▾ {g} ({} nodes)</text>"##,
            x0 + 8.0,
            y0 + 14.0,
            members.len()
        );
    }
    // Edges, as wide as their tensors (log scale), labelled with the shape.
    for e in &view.edges {
        let (a, b) = (&boxes[e.from], &boxes[e.to]);
        let (x1, y1) = (a[0] + a[2] / 2.0, a[1] + a[3]);
        let (x2, y2) = (b[0] + b[2] / 2.0, b[1]);
        let w = if e.bytes == 0 {
            1.2
        } else {
            (1.0 + (e.bytes as f64).log10() * 0.6).clamp(1.0, 6.0)
        };
        let mid = (y1 + y2) / 2.0;
        let _ = write!(
            s,
            r##"<path class="edge" data-from="{}" data-to="{}" d="M{x1:.1},{y1:.1} C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}" fill="none" stroke="#94a3b8" stroke-width="{w:.1}" marker-end="url(#arrow)"><title>{}</title></path>"##,
            e.from,
            e.to,
            esc(&e.label)
        );
    }
    for (i, (n, b)) in view.nodes.iter().zip(&boxes).enumerate() {
        let (fill, stroke) = colours(n.kind, n.group);
        let kind = match n.kind {
            Kind::Stage => "stage",
            Kind::Group => "group",
            Kind::Op => "op",
        };
        let outline = match (n.bucket, n.fused) {
            (Some(k), _) => format!(
                r#" stroke="{}" stroke-width="2.5""#,
                BUCKET[k % BUCKET.len()]
            ),
            (None, true) => {
                format!(r#" stroke="{stroke}" stroke-width="2.5" stroke-dasharray="6 2""#)
            }
            _ => format!(r#" stroke="{stroke}""#),
        };
        let group_attr = match (n.kind, n.group) {
            (Kind::Group, Some(p)) => format!(r#" data-group="{}""#, group_of(p)),
            _ => String::new(),
        };
        let second = match n.kind {
            Kind::Op => format!("{} {}", n.op, n.shape),
            _ => n.op.clone(),
        };
        let tag = match n.bucket {
            Some(k) => format!(
                r##"<text x="{:.1}" y="12" text-anchor="end" fill="{}" font-size="9">bucket {k}</text>"##,
                b[2] - 4.0,
                BUCKET[k % BUCKET.len()]
            ),
            None => String::new(),
        };
        let _ = write!(
            s,
            r##"<g class="node {kind}" data-node="{i}" data-key="{}" data-name="{}" data-op="{}" data-kind="{kind}"{group_attr} transform="translate({:.1},{:.1})"><rect width="{:.0}" height="{:.0}" rx="6" fill="{fill}"{outline}/><text x="8" y="18" font-weight="bold">{}</text><text x="8" y="34" fill="#334155">{}</text>{tag}<title>{}</title></g>"##,
            esc(&n.key),
            esc(&n.name),
            esc(&n.op),
            b[0],
            b[1],
            b[2],
            b[3],
            esc(&clip(&n.name, 24)),
            esc(&clip(&second, 26)),
            esc(&format!("{} — {}", n.name, second)),
        );
    }
    s.push_str(&headers);
    s.push_str("</svg>");
    Drawing {
        svg: s,
        width,
        height,
        boxes,
    }
}
