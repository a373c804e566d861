//! The `parallelism.data` and `executor.cluster` sections: defaults, resolved form, names,
//! the forms that validate, and what the JSON Schema says about them.

#![allow(clippy::unwrap_used)]

use weft_dsl::{load, Cluster, Compression, DataParallel, PsAlgorithm, Spec, Sync};

fn spec_with(tail: &str) -> Spec {
    let text =
        format!("name: t\ndata: {{source: builtin:iris}}\nmodel: [dense: {{units: 3}}]\n{tail}\n");
    match load("t.yaml", &text, &[]) {
        Ok((spec, _)) => spec,
        Err(e) => panic!("{tail}\n{e}"),
    }
}

fn data_parallel(yaml: &str) -> DataParallel {
    spec_with(&format!("parallelism: {{data: {yaml}}}"))
        .parallelism
        .data
        .unwrap()
}

#[test]
fn defaults_fill_every_data_parallel_setting() {
    let d = data_parallel("{workers: 2}");
    assert_eq!(d.sync, Sync::Allreduce);
    assert_eq!(d.algorithm, None);
    assert_eq!(d.communication_window, 5);
    assert_eq!(d.staleness, None);
    assert_eq!(d.compression, Compression::None);
    assert_eq!(d.rho, 5.0);
    assert_eq!(d.learning_rate, 0.01);
    assert_eq!(d.momentum, 0.9);
    assert_eq!(d.bucket_mb, 25.0);
    assert_eq!(d.timeout_s, 10.0);
}

#[test]
fn the_resolved_spec_shows_the_defaults() {
    let spec =
        spec_with("parallelism: {data: {workers: 2, sync: parameter_server, algorithm: eamsgd}}");
    let v = serde_json::to_value(&spec).unwrap();
    let d = &v["parallelism"]["data"];
    assert_eq!(d["sync"], "parameter_server");
    assert_eq!(d["algorithm"], "eamsgd");
    assert_eq!(d["rho"], 5.0);
    assert_eq!(d["learning_rate"], 0.01);
    assert_eq!(d["momentum"], 0.9);
    assert_eq!(d["bucket_mb"], 25.0);
    assert_eq!(d["timeout_s"], 10.0);
    // And it loads back to the same spec.
    let text = serde_json::to_string(&v).unwrap();
    let (again, _) = load("t.json", &text, &[]).unwrap();
    assert_eq!(again, spec);
}

#[test]
fn settings_can_be_overridden_with_set() {
    let text = "name: t\ndata: {source: builtin:iris}\nmodel: [dense: {units: 3}]\nparallelism: {data: {workers: 2}}\n";
    let sets = [
        "parallelism.data.bucket_mb=0.5".to_string(),
        "parallelism.data.timeout_s=2".to_string(),
    ];
    let (spec, _) = load("t.yaml", text, &sets).unwrap();
    let d = spec.parallelism.data.unwrap();
    assert_eq!((d.bucket_mb, d.timeout_s), (0.5, 2.0));
}

#[test]
fn strategy_names() {
    assert_eq!(data_parallel("{workers: 2}").strategy(), "allreduce");
    assert_eq!(
        data_parallel("{workers: 2, sync: parameter_server, algorithm: downpour}").strategy(),
        "parameter_server/downpour"
    );
    assert_eq!(
        data_parallel("{workers: 2, sync: local_sgd}").strategy(),
        "local_sgd"
    );
    assert_eq!(
        data_parallel("{workers: 2, sync: gossip}").strategy(),
        "gossip"
    );
    let names: Vec<&str> = PsAlgorithm::ALL.iter().map(PsAlgorithm::name).collect();
    assert_eq!(
        names,
        ["sync", "downpour", "easgd", "aeasgd", "eamsgd", "adag", "dynsgd", "hogwild"]
    );
    // Every name is what the spec accepts.
    for n in names {
        let d = data_parallel(&format!(
            "{{workers: 2, sync: parameter_server, algorithm: {n}}}"
        ));
        assert_eq!(d.algorithm.map(|a| a.name()), Some(n));
    }
}

#[test]
fn staleness_is_accepted_with_every_asynchronous_algorithm() {
    for a in PsAlgorithm::ALL.iter().filter(|a| a.is_async()) {
        let d = data_parallel(&format!(
            "{{workers: 2, sync: parameter_server, algorithm: {}, staleness: 3}}",
            a.name()
        ));
        assert_eq!(d.staleness, Some(3));
    }
    let sync: Vec<&str> = PsAlgorithm::ALL
        .iter()
        .filter(|a| !a.is_async())
        .map(PsAlgorithm::name)
        .collect();
    assert_eq!(sync, ["sync", "easgd"]);
}

#[test]
fn compression_describes_itself() {
    let c = |yaml: &str| data_parallel(&format!("{{workers: 2, compression: {yaml}}}")).compression;
    assert_eq!(c("fp16").describe(), "fp16");
    assert_eq!(c("int8").describe(), "int8");
    assert_eq!(
        c("{topk: {ratio: 0.01}}").describe(),
        "topk(ratio=0.01, error_feedback)"
    );
    assert_eq!(
        c("{topk: {ratio: 1, error_feedback: false}}").describe(),
        "topk(ratio=1)"
    );
}

#[test]
fn host_port_forms_that_validate() {
    let spec = spec_with(
        "executor: {cluster: {hosts: [\"10.0.0.2:7070\", \"node-1.example.org:80\", \"[::1]:65535\"]}}",
    );
    assert_eq!(
        spec.executor.cluster,
        Cluster::Hosts(vec![
            "10.0.0.2:7070".into(),
            "node-1.example.org:80".into(),
            "[::1]:65535".into()
        ])
    );
    for cluster in ["local", "spark", "env"] {
        spec_with(&format!("executor: {{cluster: {cluster}}}"));
    }
}

#[test]
fn the_schema_documents_the_new_settings() {
    let schema = weft_dsl::json_schema();
    let text = schema.to_string();
    for needle in [
        "Elasticity",
        "fusion bucket size in MiB",
        "declared dead or",
        "Stale-synchronous bound",
    ] {
        assert!(text.contains(needle), "schema lacks {needle:?}");
    }
    let props = &schema["$defs"]["DataParallel"]["properties"];
    for key in ["rho", "learning_rate", "momentum", "bucket_mb", "timeout_s"] {
        assert!(props.get(key).is_some(), "DataParallel schema lacks {key}");
        assert!(
            props[key]["default"].is_number(),
            "{key} has a default in the schema"
        );
    }
}
