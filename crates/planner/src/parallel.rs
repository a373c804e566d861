//! Data-parallel planning: all-reduce fusion buckets and the bytes each strategy puts on
//! the wire per worker per step (the cost model `weft plan` prints to compare strategies).

use weft_dsl::{Compression, DataParallel, PsAlgorithm, Sync};

use crate::plan::{Bucket, DataParallelPlan, ParamRef, Traffic};

/// Bytes in a MiB (`bucket_mb` is in MiB).
pub const MIB: f64 = 1024.0 * 1024.0;

impl DataParallelPlan {
    /// Plans data parallelism as `d` says for these parameters (`params` in plan order).
    pub fn new(d: &DataParallel, params: &[ParamRef]) -> DataParallelPlan {
        // Gradients are computed in node (topological) order, so the parameter whose
        // gradient node comes first is ready first: the last layer's, for a sequential model.
        let mut ready: Vec<(usize, usize)> = params
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.shape.numel(1)))
            .collect();
        ready.sort_by_key(|(i, _)| params[*i].grad);
        let param_bytes: u64 = params
            .iter()
            .map(|p| 4u64.saturating_mul(p.shape.numel(1) as u64))
            .fold(0, u64::saturating_add);
        let window = match (d.sync, d.algorithm) {
            (Sync::Allreduce, _) | (Sync::ParameterServer, Some(PsAlgorithm::Sync)) => 1,
            _ => d.communication_window,
        };
        DataParallelPlan {
            workers: d.workers,
            strategy: d.strategy(),
            window,
            compression: d.compression.describe(),
            buckets: buckets(&ready, (d.bucket_mb * MIB) as u64),
            traffic: traffic(d, param_bytes),
        }
    }

    /// The traffic row of the spec's strategy.
    pub fn chosen(&self) -> Option<&Traffic> {
        self.traffic.iter().find(|t| t.chosen)
    }
}

/// Packs parameters into fusion buckets of at most `bucket_bytes` (fp32), greedily in the
/// order given: `ready` is (index into `Plan::params`, elements) in the order gradients
/// are ready. A parameter larger than a bucket gets a bucket of its own.
pub fn buckets(ready: &[(usize, usize)], bucket_bytes: u64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for &(param, elements) in ready {
        let bytes = 4 * elements as u64;
        let fits = out
            .last()
            .is_some_and(|b| !b.params.is_empty() && b.bytes + bytes <= bucket_bytes);
        if !fits {
            out.push(Bucket {
                id: out.len(),
                params: Vec::new(),
                elements: 0,
                bytes: 0,
            });
        }
        if let Some(b) = out.last_mut() {
            b.params.push(param);
            b.elements += elements;
            b.bytes += bytes;
        }
    }
    out
}

/// Bytes on the wire per value relative to fp32: none 1, fp16 ½, int8 ¼, top-k 2×ratio
/// (a value and an index for each value kept).
pub fn wire_factor(c: &Compression) -> f64 {
    match c {
        Compression::None => 1.0,
        Compression::Fp16 => 0.5,
        Compression::Int8 => 0.25,
        Compression::Topk(t) => 2.0 * t.ratio,
    }
}

/// Every strategy's bytes per worker per step for `param_bytes` (K) of fp32 parameters,
/// with the spec's workers, window and compression; one row per strategy, the spec's
/// strategy `chosen`.
pub fn traffic(d: &DataParallel, param_bytes: u64) -> Vec<Traffic> {
    let n = d.workers as f64;
    let k = param_bytes as f64;
    let c = wire_factor(&d.compression);
    let window = d.communication_window.max(1);
    let w = window as f64;
    let every = |what: &str| format!("{what} every w={window} steps");
    let ring = if d.workers > 1 {
        2.0 * (n - 1.0) / n
    } else {
        0.0
    };
    let chosen = d.strategy();
    // Top-k goes round the ring as a sparse all-gather: each worker's k (index, value)
    // pairs travel N−1 hops.
    let (reduce, reduce_formula) = match &d.compression {
        Compression::Topk(t) => ((n - 1.0) * 2.0 * t.ratio * k, "(N-1)·k·(index+value)"),
        _ => (ring * k * c, "2(N-1)K/N"),
    };
    // Parameters (not gradients) go uncompressed under top-k, which would drop most of them.
    let c_params = match &d.compression {
        Compression::Topk(_) => 1.0,
        _ => c,
    };
    let mut rows: Vec<(String, f64, String)> =
        vec![("allreduce".into(), reduce, reduce_formula.into())];
    for a in PsAlgorithm::ALL {
        let (bytes, formula) = match a {
            // What a worker sends: its push. The pulled model (K, uncompressed) comes back.
            PsAlgorithm::Sync => (k * c, "push K per step (pulls K)".to_string()),
            a if a.is_elastic() => (k * c_params / w, every("push K (pulls K)")),
            _ => (k * c / w, every("push K (pulls K)")),
        };
        rows.push((format!("parameter_server/{}", a.name()), bytes, formula));
    }
    rows.push(("local_sgd".into(), reduce / w, every(reduce_formula)));
    let (neighbours, formula) = match d.workers {
        2 => (1.0, every("K to 1 neighbour")),
        _ => (2.0, every("K to each of 2 neighbours")),
    };
    // Gossip's models go uncompressed (plus one all-reduce average when training ends).
    rows.push((
        "gossip".into(),
        neighbours * k / w,
        format!("{formula}, + one average at the end"),
    ));
    rows.into_iter()
        .map(|(strategy, bytes, formula)| Traffic {
            chosen: strategy == chosen,
            bytes_per_worker_per_step: if d.workers > 1 { bytes } else { 0.0 },
            strategy,
            formula,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{DataShape, Plan, Task};
    use weft_dsl::TopK;

    fn data_parallel(yaml: &str) -> DataParallel {
        let text = format!("name: t\ndata: {{source: builtin:iris}}\nmodel: [dense: {{units: 3, activation: softmax}}]\nparallelism: {{data: {yaml}}}\n");
        let (spec, _) = weft_dsl::load("t.yaml", &text, &[]).unwrap();
        spec.parallelism.data.unwrap()
    }

    fn iris_plan(model: &str, parallel: &str) -> Plan {
        let text = format!("name: t\ndata: {{source: builtin:iris}}\nmodel: {model}\nparallelism: {{data: {parallel}}}\n");
        let (spec, _) = weft_dsl::load("t.yaml", &text, &[]).unwrap();
        let data = DataShape {
            features: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            task: Task::Classification { classes: 3 },
            vocab: Default::default(),
        };
        Plan::new(&spec, &data).unwrap()
    }

    fn bytes_of(rows: &[Traffic], strategy: &str) -> f64 {
        rows.iter()
            .find(|t| t.strategy == strategy)
            .unwrap()
            .bytes_per_worker_per_step
    }

    #[test]
    fn buckets_fill_greedily_in_ready_order() {
        // 100 elements = 400 bytes; buckets of 1000 bytes take two such params.
        let ready = [(5, 100), (4, 100), (3, 100), (2, 10), (1, 100), (0, 50)];
        let b = buckets(&ready, 1000);
        let got: Vec<(usize, Vec<usize>, usize, u64)> = b
            .iter()
            .map(|b| (b.id, b.params.clone(), b.elements, b.bytes))
            .collect();
        assert_eq!(
            got,
            [
                (0, vec![5, 4], 200, 800),
                (1, vec![3, 2, 1], 210, 840),
                (2, vec![0], 50, 200),
            ]
        );
    }

    #[test]
    fn a_parameter_larger_than_a_bucket_gets_its_own() {
        let ready = [(3, 10), (2, 1000), (1, 10), (0, 10)];
        let b = buckets(&ready, 400);
        let params: Vec<Vec<usize>> = b.iter().map(|b| b.params.clone()).collect();
        assert_eq!(params, [vec![3], vec![2], vec![1, 0]]);
        assert_eq!(b[1].bytes, 4000);
        assert!(buckets(&[], 400).is_empty());
        // A bucket exactly full is kept; the next parameter starts a new one.
        let exact = buckets(&[(1, 100), (0, 1)], 400);
        assert_eq!(exact.len(), 2);
    }

    #[test]
    fn plan_buckets_start_from_the_last_layer() {
        // Two dense layers: 4×8 + 8 and 8×3 + 3 elements; a tiny bucket size splits them.
        let plan = iris_plan(
            "[dense: {units: 8, activation: relu}, dense: {units: 3, activation: softmax}]",
            "{workers: 2, bucket_mb: 0.0001}",
        );
        let names = |b: &Bucket| -> Vec<String> {
            b.params
                .iter()
                .map(|i| plan.params[*i].name.clone())
                .collect()
        };
        let p = plan.parallel.as_ref().unwrap();
        // 0.0001 MiB = 104 bytes = 26 floats.
        let got: Vec<(Vec<String>, usize)> =
            p.buckets.iter().map(|b| (names(b), b.elements)).collect();
        assert_eq!(
            got,
            [
                (vec!["dense_1.bias".to_string()], 3),
                (vec!["dense_1.weight".to_string()], 24),
                (vec!["dense_0.bias".to_string()], 8),
                (vec!["dense_0.weight".to_string()], 32),
            ]
        );
        let one = iris_plan(
            "[dense: {units: 8, activation: relu}, dense: {units: 3, activation: softmax}]",
            "{workers: 2}",
        );
        let p = one.parallel.as_ref().unwrap();
        assert_eq!(p.buckets.len(), 1);
        assert_eq!(p.buckets[0].params, [3, 2, 1, 0]);
        assert_eq!(p.buckets[0].bytes, 4 * (32 + 8 + 24 + 3));
    }

    #[test]
    fn traffic_formulas_for_one_two_and_four_workers() {
        let k = 1_000_000u64;
        let kf = k as f64;
        for (n, ring, gossip) in [
            (1, 0.0, 0.0),
            (2, kf, kf / 5.0),
            (4, 1.5 * kf, 2.0 * kf / 5.0),
        ] {
            let d = data_parallel(&format!("{{workers: {n}}}"));
            let t = traffic(&d, k);
            assert_eq!(t.len(), 11, "one row per strategy");
            assert_eq!(bytes_of(&t, "allreduce"), ring, "N={n}");
            assert_eq!(bytes_of(&t, "local_sgd"), ring / 5.0, "N={n}");
            assert_eq!(bytes_of(&t, "gossip"), gossip, "N={n}");
            let ps_sync = if n == 1 { 0.0 } else { kf };
            assert_eq!(bytes_of(&t, "parameter_server/sync"), ps_sync);
            for a in [
                "downpour", "easgd", "aeasgd", "eamsgd", "adag", "dynsgd", "hogwild",
            ] {
                assert_eq!(
                    bytes_of(&t, &format!("parameter_server/{a}")),
                    ps_sync / 5.0,
                    "{a}, N={n}"
                );
            }
        }
        let t = traffic(&data_parallel("{workers: 4}"), k);
        let formulas: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.strategy.as_str(), t.formula.as_str()))
            .collect();
        assert_eq!(formulas[0], ("allreduce", "2(N-1)K/N"));
        assert_eq!(
            formulas[1],
            ("parameter_server/sync", "push K per step (pulls K)")
        );
        assert_eq!(
            formulas[2],
            (
                "parameter_server/downpour",
                "push K (pulls K) every w=5 steps"
            )
        );
        assert_eq!(formulas[9], ("local_sgd", "2(N-1)K/N every w=5 steps"));
        assert_eq!(
            formulas[10],
            (
                "gossip",
                "K to each of 2 neighbours every w=5 steps, + one average at the end"
            )
        );
        let two = traffic(&data_parallel("{workers: 2, communication_window: 3}"), k);
        assert_eq!(
            two[10].formula,
            "K to 1 neighbour every w=3 steps, + one average at the end"
        );
    }

    #[test]
    fn compression_scales_what_each_strategy_sends() {
        let k = 1_000_000u64;
        let kf = k as f64;
        let at = |c: &str| {
            let d = data_parallel(&format!(
                "{{workers: 4, sync: local_sgd, communication_window: 2, compression: {c}}}"
            ));
            traffic(&d, k)
        };
        // fp16 / int8 scale everything but gossip, which sends models uncompressed.
        for (c, factor) in [("none", 1.0), ("fp16", 0.5), ("int8", 0.25)] {
            let t = at(c);
            assert_eq!(bytes_of(&t, "allreduce"), 1.5 * kf * factor, "{c}");
            assert_eq!(bytes_of(&t, "local_sgd"), 1.5 * kf * factor / 2.0, "{c}");
            assert_eq!(bytes_of(&t, "parameter_server/sync"), kf * factor, "{c}");
            assert_eq!(
                bytes_of(&t, "parameter_server/easgd"),
                kf * factor / 2.0,
                "{c}"
            );
            assert_eq!(bytes_of(&t, "gossip"), 2.0 * kf / 2.0, "{c}");
        }
        // Top-k: a sparse all-gather of (index, value) pairs over N−1 hops; elastic
        // algorithms send their parameters uncompressed.
        let t = at("{topk: {ratio: 0.01}}");
        assert!((bytes_of(&t, "allreduce") - 3.0 * 0.02 * kf).abs() < 1e-6);
        assert!((bytes_of(&t, "local_sgd") - 3.0 * 0.02 * kf / 2.0).abs() < 1e-6);
        assert!((bytes_of(&t, "parameter_server/downpour") - 0.02 * kf / 2.0).abs() < 1e-6);
        assert_eq!(bytes_of(&t, "parameter_server/aeasgd"), kf / 2.0);
        assert_eq!(t[0].formula, "(N-1)·k·(index+value)");
        assert_eq!(
            wire_factor(&Compression::Topk(TopK {
                ratio: 0.1,
                error_feedback: true
            })),
            0.2
        );
    }

    #[test]
    fn the_specs_strategy_is_chosen_and_sets_the_window() {
        for (yaml, strategy, window) in [
            ("{workers: 2}", "allreduce", 1),
            (
                "{workers: 2, sync: parameter_server, algorithm: sync}",
                "parameter_server/sync",
                1,
            ),
            (
                "{workers: 2, sync: parameter_server, algorithm: downpour, communication_window: 3}",
                "parameter_server/downpour",
                3,
            ),
            ("{workers: 2, sync: local_sgd}", "local_sgd", 5),
            ("{workers: 3, sync: gossip, communication_window: 7}", "gossip", 7),
        ] {
            let plan = iris_plan("[dense: {units: 3, activation: softmax}]", yaml);
            let p = plan.parallel.as_ref().unwrap();
            assert_eq!(p.strategy, strategy);
            assert_eq!(p.window, window, "{strategy}");
            let chosen: Vec<&str> = p
                .traffic
                .iter()
                .filter(|t| t.chosen)
                .map(|t| t.strategy.as_str())
                .collect();
            assert_eq!(chosen, [strategy]);
            assert_eq!(p.chosen().map(|t| t.strategy.as_str()), Some(strategy));
        }
    }

    #[test]
    fn a_plan_with_data_parallelism_round_trips_through_json() {
        let plan = iris_plan(
            "[dense: {units: 8, activation: relu}, dense: {units: 3, activation: softmax}]",
            "{workers: 4, sync: parameter_server, algorithm: eamsgd, compression: fp16}",
        );
        let p = plan.parallel.as_ref().unwrap();
        assert_eq!(p.workers, 4);
        assert_eq!(p.compression, "fp16");
        let json = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);

        // Without the section there is no `parallel` key, and such JSON still reads back.
        let text = "name: t\ndata: {source: builtin:iris}\nmodel: [dense: {units: 3, activation: softmax}]\n";
        let (spec, _) = weft_dsl::load("t.yaml", text, &[]).unwrap();
        let data = DataShape {
            features: vec!["a".into()],
            task: Task::Classification { classes: 3 },
            vocab: Default::default(),
        };
        let single = Plan::new(&spec, &data).unwrap();
        let v = serde_json::to_value(&single).unwrap();
        assert!(v.get("parallel").is_none());
        let back: Plan = serde_json::from_value(v).unwrap();
        assert_eq!(back.parallel, None);
    }
}
