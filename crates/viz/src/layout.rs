//! Layered graph layout (Sugiyama-style): layers by longest path, crossing reduction by
//! barycentres, then coordinates. Pure and deterministic, so the notebook's SVG and a
//! browser viewer draw the same picture.

/// A node's box in the layout (top-left corner and size, in pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub layer: usize,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Placed>,
    pub width: f64,
    pub height: f64,
}

/// Sizes and gaps of a layout.
#[derive(Debug, Clone, Copy)]
pub struct Spacing {
    pub node_w: f64,
    pub node_h: f64,
    pub gap_x: f64,
    pub gap_y: f64,
    pub margin: f64,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing {
            node_w: 180.0,
            node_h: 46.0,
            gap_x: 24.0,
            gap_y: 34.0,
            margin: 16.0,
        }
    }
}

/// Lays out `n` nodes with `edges` (from, to); `from` must come before `to` in 0..n
/// (a topological numbering, as plan node ids are). Edges that break that are ignored.
pub fn layered(n: usize, edges: &[(usize, usize)], sp: Spacing) -> Layout {
    layered_in_bands(n, edges, &vec![0; n], sp)
}

/// [`layered`] with every node in a band (`bands[v]`): the nodes of a band all sit below
/// those of lower bands (the viewer keeps forward, backward and update apart this way).
pub fn layered_in_bands(
    n: usize,
    edges: &[(usize, usize)],
    bands: &[usize],
    sp: Spacing,
) -> Layout {
    let band = |v: usize| bands.get(v).copied().unwrap_or(0);
    let mut layer = vec![0usize; n];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut sorted: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|(a, b)| a < b && *b < n && band(*a) <= band(*b))
        .collect();
    sorted.sort();
    for &(a, b) in &sorted {
        preds[b].push(a);
        succs[a].push(b);
    }
    // Longest path, band by band: a band starts below the deepest node of the ones before.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|v| (band(*v), *v));
    let mut floor = 0;
    let mut deepest = 0;
    let mut current = order.first().map_or(0, |v| band(*v));
    let mut floors = std::collections::HashMap::new();
    for &v in &order {
        if band(v) != current {
            current = band(v);
            floor = deepest + 1;
        }
        floors.insert(current, floor);
        let from_preds = preds[v].iter().map(|p| layer[*p] + 1).max().unwrap_or(0);
        layer[v] = from_preds.max(floor);
        deepest = deepest.max(layer[v]);
    }
    // Sources (inputs, parameters) sit just above their first reader, not all at the top
    // of their band.
    for v in 0..n {
        if preds[v].is_empty() {
            if let Some(first) = succs[v].iter().map(|s| layer[*s]).min() {
                let top = floors.get(&band(v)).copied().unwrap_or(0);
                layer[v] = first.saturating_sub(1).max(top);
            }
        }
    }
    let depth = layer.iter().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for v in 0..n {
        rows[layer[v]].push(v);
    }
    // Crossing reduction: alternate downward and upward barycentre sweeps.
    let mut pos = vec![0.0f64; n];
    let reindex = |rows: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for row in rows {
            for (i, v) in row.iter().enumerate() {
                pos[*v] = i as f64;
            }
        }
    };
    reindex(&rows, &mut pos);
    for sweep in 0..8 {
        let down = sweep % 2 == 0;
        let order: Vec<usize> = if down {
            (1..depth).collect()
        } else {
            (0..depth.saturating_sub(1)).rev().collect()
        };
        for l in order {
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|v| {
                    let nb = if down { &preds[*v] } else { &succs[*v] };
                    let key = if nb.is_empty() {
                        pos[*v]
                    } else {
                        nb.iter().map(|u| pos[*u]).sum::<f64>() / nb.len() as f64
                    };
                    (key, *v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            rows[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, v) in rows[l].iter().enumerate() {
                pos[*v] = i as f64;
            }
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let width = 2.0 * sp.margin + widest * sp.node_w + (widest - 1.0).max(0.0) * sp.gap_x;
    let height =
        2.0 * sp.margin + depth as f64 * sp.node_h + (depth as f64 - 1.0).max(0.0) * sp.gap_y;
    let mut nodes = vec![
        Placed {
            layer: 0,
            x: 0.0,
            y: 0.0,
            w: sp.node_w,
            h: sp.node_h
        };
        n
    ];
    for (l, row) in rows.iter().enumerate() {
        let row_w = row.len() as f64 * sp.node_w + (row.len() as f64 - 1.0).max(0.0) * sp.gap_x;
        let left = (width - row_w) / 2.0;
        for (i, v) in row.iter().enumerate() {
            nodes[*v] = Placed {
                layer: l,
                x: left + i as f64 * (sp.node_w + sp.gap_x),
                y: sp.margin + l as f64 * (sp.node_h + sp.gap_y),
                w: sp.node_w,
                h: sp.node_h,
            };
        }
    }
    Layout {
        nodes,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &Placed, b: &Placed) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn edges_go_down_boxes_do_not_overlap_and_layout_is_deterministic() {
        let edges = [(0, 2), (1, 2), (2, 3), (0, 4), (3, 5), (4, 5), (1, 5)];
        let l = layered(6, &edges, Spacing::default());
        for (a, b) in edges {
            assert!(l.nodes[a].y < l.nodes[b].y, "edge {a}->{b} goes down");
        }
        for i in 0..6 {
            for j in i + 1..6 {
                assert!(!overlaps(&l.nodes[i], &l.nodes[j]), "{i} and {j} overlap");
            }
        }
        assert_eq!(l, layered(6, &edges, Spacing::default()));
    }

    #[test]
    fn bands_stack_below_each_other() {
        // 0 → 1 → 3 and 0 → 2; band 1 holds 2 and 3, so both sit below 0 and 1.
        let edges = [(0, 1), (1, 3), (0, 2)];
        let l = layered_in_bands(4, &edges, &[0, 0, 1, 1], Spacing::default());
        let bottom_of_band_0 = l.nodes[0].y.max(l.nodes[1].y);
        assert!(l.nodes[2].y > bottom_of_band_0 && l.nodes[3].y > bottom_of_band_0);
        for (a, b) in edges {
            assert!(l.nodes[a].y < l.nodes[b].y, "edge {a}->{b} goes down");
        }
    }
}
