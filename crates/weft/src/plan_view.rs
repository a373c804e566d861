//! A compiled plan as users look at it: text, DOT, JSON, SVG, and inline in notebooks.

use std::ops::Deref;

use weft_planner::{display, Plan};
use weft_viz::svg;

use crate::notebook;

/// A plan with its printed forms. Derefs to [`Plan`] for shapes, costs and nodes.
#[derive(Debug, Clone)]
pub struct PlanView {
    pub plan: Plan,
}

impl Deref for PlanView {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

impl PlanView {
    /// One line per node, indented by stage and phase (what `weft plan` prints).
    pub fn text(&self) -> String {
        display::text(&self.plan)
    }

    pub fn dot(&self) -> String {
        display::dot(&self.plan)
    }

    pub fn json(&self) -> String {
        display::json(&self.plan)
    }

    /// The workflow and the compute graph as an SVG picture.
    pub fn svg(&self) -> String {
        svg::plan_svg(&self.plan)
    }

    /// Jupyter (evcxr): the plan drawn inline.
    pub fn evcxr_display(&self) {
        notebook::emit("image/svg+xml", &self.svg());
    }
}

impl std::fmt::Display for PlanView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}
