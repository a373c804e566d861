//! Memory plan: which buffer holds each node's output, with buffers reused once every reader
//! of their last tenant has run (liveness over a schedule's order).
//!
//! Parameters and their gradients are pinned (they live for the whole run and are read back
//! between steps); every other tensor gets a slot. A slot holds either batch-rowed tensors
//! (sized per row, so one plan serves every batch size) or fixed-size ones, and is as large
//! as its largest tenant. Schedules never run at the same time, so they share the slots: a
//! slot's size is its largest tenant over every schedule.
//!
//! Written by hand (not a library) because it is the planner's own pass and must stay pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::op::{Op, Rows};
use crate::plan::{MemoryPlan, Plan, PlanNode, ScheduleKind, Slot, Storage};

impl MemoryPlan {
    /// Plans every schedule. `external` marks nodes whose output the executor holds itself
    /// (they get no slot); the loss and the output stay live to the end of a schedule so they
    /// can be read back.
    pub fn new(plan: &Plan, external: impl Fn(&PlanNode) -> bool) -> MemoryPlan {
        let mut mp = MemoryPlan {
            slots: Vec::new(),
            storage: Vec::new(),
        };
        let pinned: HashMap<usize, Storage> = plan
            .params
            .iter()
            .enumerate()
            .flat_map(|(i, p)| [(p.node, Storage::Param(i)), (p.grad, Storage::Grad(i))])
            .collect();
        for kind in ScheduleKind::ALL {
            let s = mp.schedule(plan, kind.ids(plan), &pinned, &external);
            mp.storage.push(s);
        }
        mp
    }

    pub fn of(&self, kind: ScheduleKind) -> &BTreeMap<usize, Storage> {
        let i = ScheduleKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        &self.storage[i]
    }

    /// Floats in slots at batch `batch` (what the plan allocates besides parameters).
    pub fn slot_floats(&self, batch: usize) -> usize {
        self.slots
            .iter()
            .map(|s| s.len(batch))
            .fold(0, usize::saturating_add)
    }

    fn schedule(
        &mut self,
        plan: &Plan,
        ids: &[usize],
        pinned: &HashMap<usize, Storage>,
        external: &impl Fn(&PlanNode) -> bool,
    ) -> BTreeMap<usize, Storage> {
        // Position of each node's last reader in this schedule.
        let pos: HashMap<usize, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            for input in &plan.nodes[*id].inputs {
                last.insert(*input, i);
            }
        }
        for keep in [plan.loss, plan.output] {
            if pos.contains_key(&keep) {
                last.insert(keep, usize::MAX);
            }
        }
        let mut storage = BTreeMap::new();
        // Free slots of this schedule, and (slot, last use) of the live ones.
        let mut free: BTreeSet<usize> = (0..self.slots.len()).collect();
        let mut live: Vec<(usize, usize)> = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            live.retain(|&(slot, until)| {
                let done = until < i;
                if done {
                    free.insert(slot);
                }
                !done
            });
            let node = &plan.nodes[id];
            let st = if let Some(p) = pinned.get(&id) {
                *p
            } else if matches!(
                node.op,
                Op::Param { .. } | Op::Update { .. } | Op::LbfgsStep
            ) || external(node)
            {
                Storage::External
            } else {
                let want = match node.shape.rows {
                    Rows::Batch => Slot::PerRow(node.shape.cols),
                    Rows::Fixed(r) => Slot::Fixed(r * node.shape.cols),
                };
                let slot = self.take(&mut free, want);
                // A node nobody reads is still written: it lives until the next node.
                live.push((slot, last.get(&id).copied().unwrap_or(i)));
                Storage::Slot(slot)
            };
            storage.insert(id, st);
        }
        storage
    }

    /// The free slot of the same kind that fits best (the smallest large enough, else the
    /// largest, grown), or a new one.
    fn take(&mut self, free: &mut BTreeSet<usize>, want: Slot) -> usize {
        let size = |s: Slot| match s {
            Slot::PerRow(c) | Slot::Fixed(c) => c,
        };
        let same_kind = |s: Slot| {
            matches!(
                (s, want),
                (Slot::PerRow(_), Slot::PerRow(_)) | (Slot::Fixed(_), Slot::Fixed(_))
            )
        };
        let candidates: Vec<usize> = free
            .iter()
            .copied()
            .filter(|s| same_kind(self.slots[*s]))
            .collect();
        let fits = candidates
            .iter()
            .copied()
            .filter(|s| size(self.slots[*s]) >= size(want))
            .min_by_key(|s| size(self.slots[*s]));
        let pick = fits.or_else(|| {
            candidates
                .iter()
                .copied()
                .max_by_key(|s| size(self.slots[*s]))
        });
        match pick {
            Some(s) => {
                free.remove(&s);
                if size(self.slots[s]) < size(want) {
                    self.slots[s] = want;
                }
                s
            }
            None => {
                self.slots.push(want);
                self.slots.len() - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_common::{DataShape, Task};

    fn plan(model: &str) -> Plan {
        let text = format!(
            "name: t\ndata: {{source: builtin:iris}}\nmodel:\n{model}\ntrain: {{batch_size: 8, optimizer: {{adam: {{lr: 0.01}}}}, clip_grad_norm: 1.0}}\n"
        );
        let (spec, _) = weft_dsl::load("t.yaml", &text, &[]).expect("spec");
        let data = DataShape {
            features: (0..4).map(|i| format!("f{i}")).collect(),
            task: Task::Classification { classes: 3 },
            vocab: Default::default(),
        };
        Plan::new(&spec, &data).expect("plan")
    }

    /// No two tensors that are live at once share a slot, in any schedule.
    fn check_no_overlap(p: &Plan, mp: &MemoryPlan) {
        for kind in ScheduleKind::ALL {
            let ids = kind.ids(p);
            let st = mp.of(kind);
            for (i, a) in ids.iter().enumerate() {
                let Storage::Slot(sa) = st[a] else { continue };
                // Readers of `a` that run after some later node b that reuses its slot.
                let last_read = ids
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| p.nodes[**n].inputs.contains(a))
                    .map(|(j, _)| j)
                    .max()
                    .unwrap_or(i);
                let last_read = if *a == p.loss || *a == p.output {
                    ids.len()
                } else {
                    last_read
                };
                for b in &ids[i + 1..ids.len().min(last_read + 1)] {
                    if st[b] == Storage::Slot(sa) && b != a {
                        let read_after = ids
                            .iter()
                            .position(|n| n == b)
                            .is_some_and(|jb| jb < last_read);
                        assert!(
                            !read_after,
                            "{kind:?}: {} reuses the slot of {} while it is read",
                            p.nodes[*b].name, p.nodes[*a].name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn slots_are_reused_without_overlap() {
        let p = plan(
            "  - dense: {units: 32, activation: relu}\n  - dense: {units: 32, activation: relu}\n  - dense: {units: 32, activation: relu}\n  - dense: {units: 3, activation: softmax}",
        );
        let mp = MemoryPlan::new(&p, |_| false);
        check_no_overlap(&p, &mp);
        // Reuse: training keeps forward values for backward, prediction only needs
        // a few buffers at a time.
        let used = |kind: ScheduleKind| {
            let st = mp.of(kind);
            let tensors = kind
                .ids(&p)
                .iter()
                .filter(|i| matches!(st[*i], Storage::Slot(_)))
                .count();
            let slots: BTreeSet<Storage> = st
                .values()
                .filter(|s| matches!(s, Storage::Slot(_)))
                .copied()
                .collect();
            (slots.len(), tensors)
        };
        let (train_slots, train_tensors) = used(ScheduleKind::Train);
        assert!(
            train_slots < train_tensors,
            "{train_slots} slots for {train_tensors} tensors"
        );
        let (predict_slots, predict_tensors) = used(ScheduleKind::Predict);
        assert!(
            predict_slots <= 4 && predict_tensors >= 8,
            "{predict_slots} slots for {predict_tensors} tensors"
        );
        // Parameters and gradients are pinned in every schedule that touches them.
        for (i, pr) in p.params.iter().enumerate() {
            assert_eq!(mp.of(ScheduleKind::Train)[&pr.node], Storage::Param(i));
            assert_eq!(mp.of(ScheduleKind::Gradients)[&pr.grad], Storage::Grad(i));
        }
    }

    #[test]
    fn loss_and_output_stay_live_and_external_nodes_get_no_slot() {
        let p = plan("  - dense: {units: 16, activation: tanh}\n  - dropout: {rate: 0.5}\n  - dense: {units: 3, activation: softmax}");
        let mp = MemoryPlan::new(&p, |n| matches!(n.op, Op::Input { .. }));
        check_no_overlap(&p, &mp);
        for kind in ScheduleKind::ALL {
            for (id, st) in mp.of(kind) {
                if matches!(p.nodes[*id].op, Op::Input { .. }) {
                    assert_eq!(*st, Storage::External);
                }
            }
        }
        let eval = mp.of(ScheduleKind::Eval);
        assert_ne!(eval[&p.loss], eval[&p.output]);
    }
}
