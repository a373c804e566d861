//! Malformed specs and the exact error lines they give: `FILE:LINE:COL: SPEC.PATH: message`.
//!
//! Each spec is written one line per array item, so line `n` of the spec is item `n - 1`.
//! Parse and validation errors come from `weft_dsl::load`; planner errors (shapes, classes,
//! metrics, losses, feature columns) from `Experiment::from_yaml(..)?.plan()` on builtin:iris.

use std::panic::{catch_unwind, AssertUnwindSafe};

use weft_dsl::{load, Activation, Optimizer};

/// The spec text: one array item per line.
fn spec(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// The error lines of a YAML spec (file name `spec.yaml`) with `--set` overrides.
fn errors_with(text: &str, sets: &[&str]) -> Vec<String> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match load("spec.yaml", text, &sets) {
        Ok(_) => panic!("expected an error, the spec loaded:\n{text}"),
        Err(e) => e.lines(),
    }
}

fn errors(lines: &[&str]) -> Vec<String> {
    errors_with(&spec(lines), &[])
}

/// The error lines of a JSON spec (file name `spec.json`).
fn json_errors(text: &str) -> Vec<String> {
    match load("spec.json", text, &[]) {
        Ok(_) => panic!("expected an error, the spec loaded:\n{text}"),
        Err(e) => e.lines(),
    }
}

/// Parses, validates and plans `text` (loading builtin:iris for its shape).
#[allow(clippy::result_large_err)] // the size of `weft::Error` is the facade's business
fn plan(text: &str) -> weft::Result<weft::PlanView> {
    weft::Experiment::from_yaml(text)?.plan()
}

/// The error lines of a spec that parses and validates but does not plan.
fn plan_errors(lines: &[&str]) -> Vec<String> {
    let text = spec(lines);
    match plan(&text) {
        Ok(_) => panic!("expected a planner error, the spec planned:\n{text}"),
        Err(weft::Error::Spec(e)) => e.lines(),
        Err(other) => panic!("expected a spec error, got {other:?}"),
    }
}

const ACTIVATIONS: &str =
    "linear, sigmoid, tanh, softplus, relu, leaky_relu, elu, swish, gelu, selu, softmax";
const OPTIMIZERS: &str = "sgd, adagrad, rmsprop, adam, adamw, lbfgs";

// ---------------------------------------------------------------- unknown keys and names

#[test]
fn unknown_top_level_key_suggests_the_nearest() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: softmax}",
        "trian:",
        "  epochs: 2",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:6:1: unknown key `trian`; did you mean `train`? valid: name, seed, data, model, train, evaluate, parallelism, executor"]
    );
}

#[test]
fn unknown_nested_key_is_located_at_the_key() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {unitz: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:13: model[0].dense: unknown key `unitz`; did you mean `units`? valid: units, activation, use_bias, init, l1, l2"]
    );
}

#[test]
fn unknown_activation_lists_valid_names() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: rleu}",
    ]);
    assert_eq!(
        e,
        [format!("spec.yaml:5:35: model[0].dense.activation: unknown activation `rleu`; did you mean `relu`? valid: {ACTIVATIONS}")]
    );
}

#[test]
fn unknown_activation_in_map_form() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: {rleu: {}}}",
    ]);
    assert_eq!(
        e,
        [format!("spec.yaml:5:36: model[0].dense.activation: unknown activation `rleu`; did you mean `relu`? valid: {ACTIVATIONS}")]
    );
}

#[test]
fn unknown_optimizer_bare() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer: adamm",
    ]);
    assert_eq!(
        e,
        [format!("spec.yaml:7:14: train.optimizer: unknown optimizer `adamm`; did you mean `adam`? valid: {OPTIMIZERS}")]
    );
}

#[test]
fn unknown_optimizer_in_map_form() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer: {sgdd: {lr: 0.1}}",
    ]);
    assert_eq!(
        e,
        [format!("spec.yaml:7:15: train.optimizer: unknown optimizer `sgdd`; did you mean `sgd`? valid: {OPTIMIZERS}")]
    );
}

#[test]
fn unknown_loss() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  loss: crossentropy",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:9: train.loss: unknown loss `crossentropy`; did you mean `cross_entropy`? valid: cross_entropy, binary_cross_entropy, mse"]
    );
}

#[test]
fn unknown_layer_kind() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 8}",
        "  - denze: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:6:5: model[1]: unknown layer `denze`; did you mean `dense`? valid: dense, dropout, batch_norm, layer_norm, activation, conv2d, max_pool2d, avg_pool2d, global_avg_pool2d, flatten"]
    );
}

#[test]
fn unknown_metric_in_evaluate() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "evaluate: [accuracy, acuracy]",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:6:22: evaluate[1]: unknown metric `acuracy`; did you mean `accuracy`? valid: accuracy, precision, recall, f1, auc, confusion_matrix, mse, mae, r2"]
    );
}

#[test]
fn unknown_builtin_data_set() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:irsi",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:3:11: data.source.builtin: unknown builtin data set `irsi`; did you mean `iris`? valid: iris"]
    );
}

#[test]
fn unknown_builtin_data_set_with_no_near_name() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: {builtin: mnist}",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:3:21: data.source.builtin: unknown builtin data set `mnist`; valid: iris"]
    );
}

#[test]
fn unknown_data_source_kind() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: {cvs: a.csv}",
        "  label: y",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:3:12: data.source: unknown data source `cvs`; did you mean `csv`? valid: csv, parquet, arrow, builtin, synthetic, idx, image_folder"]
    );
}

#[test]
fn unknown_parameter_of_an_activation() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 8, activation: {leaky_relu: {alpah: 0.2}}}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:49: model[0].dense.activation.leaky_relu: unknown key `alpah`; did you mean `alpha`? valid: alpha"]
    );
}

#[test]
fn parameters_for_an_activation_without_any() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 8, activation: {relu: {alpha: 0.2}}}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:42: model[0].dense.activation.relu: `relu` takes no parameters"]
    );
}

// ---------------------------------------------------------------- wrong types and ranges

#[test]
fn string_for_units() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: three}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:20: model[0].dense.units: expected an integer, found `three`"]
    );
}

#[test]
fn quoted_number_for_units_says_it_is_a_string() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: \"3\"}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:20: model[0].dense.units: expected an integer, found the string \"3\""]
    );
}

#[test]
fn list_for_batch_size() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  batch_size: [16]",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:15: train.batch_size: expected an integer, found a list"]
    );
}

#[test]
fn map_for_name() {
    let e = errors(&[
        "name: {a: 1}",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(e, ["spec.yaml:1:7: name: expected a string, found a map"]);
}

#[test]
fn negative_units() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: -3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:20: model[0].dense.units: expected a non-negative integer, found `-3`"]
    );
}

#[test]
fn zero_units() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 0}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:20: model[0].dense.units: units must be at least 1, found 0"]
    );
}

#[test]
fn scalar_for_model() {
    let e = errors(&["name: t", "data:", "  source: builtin:iris", "model: dense"]);
    assert_eq!(
        e,
        ["spec.yaml:4:8: model: expected a list of layers or a graph (inputs, nodes, output), found `dense`"]
    );
}

#[test]
fn empty_model() {
    let e = errors(&["name: t", "data:", "  source: builtin:iris", "model: []"]);
    assert_eq!(e, ["spec.yaml:4:8: model: the model has no layers"]);
}

#[test]
fn split_not_summing_to_one() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "  split: {train: 0.7, test: 0.2}",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:4:10: data.split: split fractions must sum to 1, found 0.9 (train 0.7 + test 0.2)"]
    );
}

#[test]
fn split_fractions_out_of_range_are_all_reported() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "  split: {train: 1.2, test: -0.2}",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        [
            "spec.yaml:4:18: data.split.train: train fraction must be in (0, 1], found 1.2",
            "spec.yaml:4:29: data.split.test: test fraction must be in [0, 1), found -0.2",
        ]
    );
}

#[test]
fn dropout_rate_above_one() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 8}",
        "  - dropout: {rate: 1.5}",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:6:21: model[1].dropout.rate: rate must be in [0, 1), found 1.5"]
    );
}

#[test]
fn zero_learning_rate() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer: {sgd: {lr: 0}}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:25: train.optimizer.sgd.lr: lr must be a positive number, found 0"]
    );
}

#[test]
fn negative_learning_rate_in_block_style() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer:",
        "    adam:",
        "      lr: -0.1",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:9:11: train.optimizer.adam.lr: lr must be a positive number, found -0.1"]
    );
}

#[test]
fn nesterov_without_momentum() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer: {sgd: {lr: 0.1, nesterov: true}}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:40: train.optimizer.sgd.nesterov: nesterov needs momentum > 0"]
    );
}

#[test]
fn several_problems_print_under_one_header() {
    let text = spec(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 0}",
        "train:",
        "  epochs: 0",
    ]);
    let err = load("spec.yaml", &text, &[]).expect_err("two problems");
    assert_eq!(
        err.to_string(),
        "2 problems in the spec:\n\
         spec.yaml:5:20: model[0].dense.units: units must be at least 1, found 0\n\
         spec.yaml:7:11: train.epochs: epochs must be at least 1, found 0"
    );
}

// ---------------------------------------------------------------- missing keys, data

#[test]
fn missing_name() {
    let e = errors(&[
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(e, ["spec.yaml:1:1: missing required key `name`"]);
}

#[test]
fn missing_data() {
    let e = errors(&["name: t", "model:", "  - dense: {units: 3}"]);
    assert_eq!(e, ["spec.yaml:1:1: missing required key `data`"]);
}

#[test]
fn missing_model() {
    let e = errors(&["name: t", "data:", "  source: builtin:iris"]);
    assert_eq!(e, ["spec.yaml:1:1: missing required key `model`"]);
}

#[test]
fn missing_dense_units_points_at_the_dense_map() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense:",
        "      activation: relu",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:6:7: model[0].dense: missing required key `units`"]
    );
}

#[test]
fn csv_source_without_label() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: csv:data.csv",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:3:3: data: missing required key `label`: a csv or parquet source needs its label column named"]
    );
}

#[test]
fn label_listed_as_a_feature() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "  features:",
        "    include: [petal_length, species]",
        "model:",
        "  - dense: {units: 3}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:29: data.features.include[1]: `species` is the label column; it cannot also be a feature"]
    );
}

// ---------------------------------------------------------------- graph form

/// A graph spec over iris: lines 1-7 fixed, nodes from line 8, then `output`.
fn graph(nodes: &[&str], output: &str) -> Vec<String> {
    let mut lines = vec![
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  inputs:",
        "    x: features",
        "  nodes:",
    ];
    lines.extend_from_slice(nodes);
    let out = format!("  output: {output}");
    lines.push(&out);
    errors(&lines)
}

#[test]
fn graph_cycle() {
    let e = graph(
        &[
            "    a: {dense: {units: 8}, input: b}",
            "    b: {dense: {units: 3}, input: a}",
        ],
        "b",
    );
    assert_eq!(
        e,
        ["spec.yaml:8:8: model.nodes.a: the graph has a cycle: a → b → a"]
    );
}

#[test]
fn graph_dangling_input() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}, input: xx}",
            "    out: {dense: {units: 3}, input: h}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:8:35: model.nodes.h.input: unknown node `xx`; did you mean `x`? valid: x, h, out"]
    );
}

#[test]
fn graph_output_names_an_unknown_node() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}, input: x}",
            "    out: {dense: {units: 3}, input: h}",
        ],
        "outt",
    );
    assert_eq!(
        e,
        ["spec.yaml:10:11: model.output: unknown node `outt`; did you mean `out`? valid: x, h, out"]
    );
}

#[test]
fn graph_merge_with_one_input() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}, input: x}",
            "    s: {add: [h]}",
            "    out: {dense: {units: 3}, input: s}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:9:14: model.nodes.s.add: `add` needs at least 2 inputs, found 1"]
    );
}

#[test]
fn graph_node_named_like_an_input() {
    // One error only: `input: x` reads the input, so this is no cycle.
    let e = graph(
        &[
            "    x: {dense: {units: 8}, input: x}",
            "    out: {dense: {units: 3}, input: x}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:8:8: model.nodes.x: `x` is already the name of an input"]
    );
}

#[test]
fn graph_node_with_two_layer_keys() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}, dropout: {rate: 0.1}, input: x}",
            "    out: {dense: {units: 3}, input: h}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:8:28: model.nodes.h: a node has one layer or merge, found `dense` and `dropout`; put `dropout` in a node of its own"]
    );
}

#[test]
fn graph_node_with_a_layer_but_no_input() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}}",
            "    out: {dense: {units: 3}, input: h}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:8:8: model.nodes.h: missing required key `input` (the node or input this `dense` layer reads)"]
    );
}

#[test]
fn graph_node_with_an_unknown_key() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}, inptu: x}",
            "    out: {dense: {units: 3}, input: h}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:8:28: model.nodes.h: unknown key `inptu`; did you mean `input`? valid: dense, dropout, batch_norm, layer_norm, activation, conv2d, max_pool2d, avg_pool2d, global_avg_pool2d, flatten, add, concat, input"]
    );
}

#[test]
fn graph_merge_with_an_input_key() {
    let e = graph(
        &[
            "    h: {dense: {units: 8}, input: x}",
            "    s: {add: [h, h], input: x}",
            "    out: {dense: {units: 3}, input: s}",
        ],
        "out",
    );
    assert_eq!(
        e,
        ["spec.yaml:9:8: model.nodes.s: a merge takes its inputs from its list; remove `input`"]
    );
}

#[test]
fn graph_unknown_key() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  inputs: {x: features}",
        "  nodes: {h: {dense: {units: 3}, input: x}}",
        "  output: h",
        "  outptu: h",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:8:3: model: unknown key `outptu`; did you mean `output`? valid: inputs, nodes, output"]
    );
}

#[test]
fn graph_input_that_is_neither_features_nor_a_list() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  inputs: {x: feature}",
        "  nodes: {h: {dense: {units: 3}, input: x}}",
        "  output: h",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:15: model.inputs.x: expected `features` or a list of feature columns, found `feature`"]
    );
}

// ---------------------------------------------------------------- syntax and documents

#[test]
fn yaml_unclosed_brace_points_at_the_brace() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:12: YAML syntax error: this `{` is never closed with `}`"]
    );
}

#[test]
fn yaml_bad_indentation() {
    let e = errors(&["name: t", "data:", " source: builtin:iris", "  label: x"]);
    assert_eq!(
        e,
        ["spec.yaml:4:8: YAML syntax error: mapping values are not allowed in this context"]
    );
}

#[test]
fn yaml_tab_indentation() {
    let e = errors(&["name: t", "data:", "\tsource: builtin:iris"]);
    assert_eq!(
        e,
        ["spec.yaml:3:2: YAML syntax error: tabs disallowed within this context (block indentation)"]
    );
}

#[test]
fn json_syntax_error() {
    let e = json_errors("{\n  \"name\": \"t\",\n  \"data\": {\"source\": \"builtin:iris\"},\n}\n");
    assert_eq!(e, ["spec.json:4:1: JSON syntax error: trailing comma"]);
}

#[test]
fn json_wrong_value_is_located() {
    let e = json_errors(
        "{\n  \"name\": \"t\",\n  \"data\": {\"source\": \"builtin:iris\"},\n  \"model\": [{\"dense\": {\"units\": \"many\"}}]\n}\n",
    );
    assert_eq!(
        e,
        ["spec.json:4:33: model[0].dense.units: expected an integer, found the string \"many\""]
    );
}

#[test]
fn json_spec_loads() {
    let text = "{\"name\": \"t\", \"data\": {\"source\": \"builtin:iris\"},\n \"model\": [{\"dense\": {\"units\": 3, \"activation\": \"softmax\"}}]}";
    let (spec, _) = load("spec.json", text, &[]).expect("valid JSON spec");
    assert_eq!(spec.data.label_column(), Some("species"));
}

#[test]
fn duplicate_key() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "name: u",
    ]);
    assert_eq!(e, ["spec.yaml:6:1: duplicate key `name`"]);
}

#[test]
fn two_optimizer_kinds_in_one_map() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer: {adam: {}, sgd: {}}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:14: train.optimizer: expected exactly one key naming the kind, found 2: `adam`, `sgd`"]
    );
}

#[test]
fn two_layer_kinds_in_one_list_item() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - {dense: {units: 3}, dropout: {rate: 0.1}}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:5:5: model[0]: expected exactly one key naming the kind, found 2: `dense`, `dropout`"]
    );
}

#[test]
fn empty_spec_file() {
    assert_eq!(
        errors_with("", &[]),
        ["spec.yaml:1:1: the spec is empty; it needs at least `name`, `data` and `model`"]
    );
    assert_eq!(
        errors_with("# only a comment\n", &[]),
        ["spec.yaml:1:1: the spec is empty; it needs at least `name`, `data` and `model`"]
    );
}

#[test]
fn second_yaml_document() {
    let e = errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "---",
        "name: u",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:6:1: a spec file holds one document; found a second `---`"]
    );
}

// ---------------------------------------------------------------- --set overrides

const IRIS_MIN: &[&str] = &[
    "name: t",
    "data:",
    "  source: builtin:iris",
    "model:",
    "  - dense: {units: 3, activation: softmax}",
    "train:",
    "  optimizer: {adagrad: {lr: 0.1}}",
];

#[test]
fn set_bad_path_syntax() {
    let e = errors_with(&spec(IRIS_MIN), &["train..epochs=3"]);
    assert_eq!(
        e,
        ["--set train..epochs=3: `train..epochs` is not a spec path like `model[2].dense.units`"]
    );
}

#[test]
fn set_without_equals() {
    let e = errors_with(&spec(IRIS_MIN), &["train.epochs"]);
    assert_eq!(
        e,
        ["--set train.epochs: expected `path=value`, e.g. `train.optimizer.adam.lr=0.01`"]
    );
}

#[test]
fn set_value_of_the_wrong_type_shows_the_expression() {
    let e = errors_with(&spec(IRIS_MIN), &["train.epochs=many"]);
    assert_eq!(
        e,
        ["--set train.epochs=many: train.epochs: expected an integer, found `many`"]
    );
}

#[test]
fn set_index_out_of_range() {
    let e = errors_with(&spec(IRIS_MIN), &["model[5].dense.units=3"]);
    assert_eq!(
        e,
        ["--set model[5].dense.units=3: model: index 5 is out of range; `model` has 1 item"]
    );
}

#[test]
fn set_key_on_a_list() {
    let e = errors_with(&spec(IRIS_MIN), &["model.dense.units=3"]);
    assert_eq!(
        e,
        ["--set model.dense.units=3: model: `model` is a list; use an index like `model[0]`"]
    );
}

#[test]
fn set_unknown_key() {
    let e = errors_with(&spec(IRIS_MIN), &["train.epoch=3"]);
    assert_eq!(
        e,
        ["--set train.epoch=3: train: unknown key `epoch`; did you mean `epochs`? valid: loss, optimizer, batch_size, epochs, clip_grad_norm, schedule, warmup_steps, stop, class_weight"]
    );
}

#[test]
fn set_error_in_the_second_override() {
    let e = errors_with(
        &spec(IRIS_MIN),
        &["train.epochs=3", "train.optimizer.adagrad.lr=0"],
    );
    assert_eq!(
        e,
        ["--set train.optimizer.adagrad.lr=0: train.optimizer.adagrad.lr: lr must be a positive number, found 0"]
    );
}

// ---------------------------------------------------------------- forms that must succeed

#[test]
fn set_switches_optimizer_kind() {
    let sets = vec!["train.optimizer.adam.lr=0.05".to_string()];
    let (spec, _) = load("spec.yaml", &spec(IRIS_MIN), &sets).expect("switching adagrad to adam");
    match spec.train.optimizer {
        Optimizer::Adam(a) => {
            assert_eq!(a.lr, 0.05);
            assert_eq!(a.beta1, 0.9);
        }
        other => panic!("expected adam, got {other:?}"),
    }
}

#[test]
fn bare_optimizer_name_takes_defaults() {
    let text = spec(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
        "train:",
        "  optimizer: adam",
    ]);
    let (spec, _) = load("spec.yaml", &text, &[]).expect("bare adam");
    assert_eq!(spec.train.optimizer, Optimizer::default());
    assert_eq!(spec.train.optimizer.lr(), 0.001);
}

#[test]
fn leaky_relu_bare_and_with_alpha() {
    let text = spec(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 8, activation: leaky_relu}",
        "  - dense: {units: 3, activation: {leaky_relu: {alpha: 0.2}}}",
    ]);
    let (spec, _) = load("spec.yaml", &text, &[]).expect("leaky_relu forms");
    let weft_dsl::ModelSpec::Sequential(layers) = &spec.model else {
        panic!("expected a sequential model")
    };
    let acts: Vec<Activation> = layers
        .iter()
        .map(|l| match l {
            weft_dsl::Layer::Dense(d) => d.activation,
            other => panic!("expected dense, got {other:?}"),
        })
        .collect();
    assert_eq!(
        acts,
        [
            Activation::LeakyRelu { alpha: 0.01 },
            Activation::LeakyRelu { alpha: 0.2 }
        ]
    );
}

// ---------------------------------------------------------------- parallelism and executor

/// A one-layer iris spec followed by `tail` (the parallelism and executor sections).
fn with_tail(tail: &[&str]) -> Vec<String> {
    let mut lines = vec![
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3}",
    ];
    lines.extend_from_slice(tail);
    errors(&lines)
}

#[test]
fn parameter_server_without_an_algorithm() {
    let e = with_tail(&[
        "parallelism:",
        "  data:",
        "    workers: 4",
        "    sync: parameter_server",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:8:5: parallelism.data: missing required key `algorithm`: `sync: parameter_server` needs one of sync, downpour, easgd, aeasgd, eamsgd, adag, dynsgd, hogwild"]
    );
}

#[test]
fn algorithm_without_parameter_server() {
    let e = with_tail(&["parallelism:", "  data: {workers: 2, algorithm: downpour}"]);
    assert_eq!(
        e,
        ["spec.yaml:7:33: parallelism.data.algorithm: `algorithm` applies to `sync: parameter_server` only, and sync is `allreduce`; set `sync: parameter_server` or remove `algorithm`"]
    );
}

#[test]
fn unknown_parameter_server_algorithm() {
    let e = with_tail(&[
        "parallelism:",
        "  data: {workers: 2, sync: parameter_server, algorithm: downpoor}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:57: parallelism.data.algorithm: unknown parameter-server algorithm `downpoor`; did you mean `downpour`? valid: sync, downpour, easgd, aeasgd, eamsgd, adag, dynsgd, hogwild"]
    );
}

#[test]
fn staleness_with_a_synchronous_algorithm() {
    let e = with_tail(&[
        "parallelism:",
        "  data: {workers: 2, sync: parameter_server, algorithm: easgd, staleness: 2}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:75: parallelism.data.staleness: `staleness` bounds the asynchronous parameter-server algorithms only (downpour, aeasgd, eamsgd, adag, dynsgd, hogwild), and `easgd` is synchronous"]
    );
}

#[test]
fn staleness_with_allreduce() {
    let e = with_tail(&[
        "parallelism:",
        "  data: {workers: 2, sync: local_sgd, staleness: 2}",
    ]);
    assert_eq!(
        e,
        ["spec.yaml:7:50: parallelism.data.staleness: `staleness` bounds the asynchronous parameter-server algorithms only (downpour, aeasgd, eamsgd, adag, dynsgd, hogwild), and sync is `local_sgd`"]
    );
}

#[test]
fn data_parallel_settings_out_of_range_are_all_reported() {
    let e = with_tail(&[
        "parallelism:",
        "  data:",
        "    workers: 0",
        "    sync: parameter_server",
        "    algorithm: eamsgd",
        "    rho: 0",
        "    learning_rate: -0.1",
        "    momentum: 1",
        "    bucket_mb: 0",
        "    timeout_s: -1",
        "    compression: {topk: {ratio: 1.5}}",
    ]);
    assert_eq!(
        e,
        [
            "spec.yaml:8:14: parallelism.data.workers: workers must be at least 1, found 0",
            "spec.yaml:16:33: parallelism.data.compression.topk.ratio: ratio must be in (0, 1], found 1.5",
            "spec.yaml:11:10: parallelism.data.rho: rho must be a positive number, found 0",
            "spec.yaml:12:20: parallelism.data.learning_rate: learning_rate must be a positive number, found -0.1",
            "spec.yaml:13:15: parallelism.data.momentum: momentum must be in [0, 1), found 1",
            "spec.yaml:14:16: parallelism.data.bucket_mb: bucket_mb must be a positive number, found 0",
            "spec.yaml:15:16: parallelism.data.timeout_s: timeout_s must be a positive number, found -1",
        ]
    );
}

/// A timeout beyond any use (1e300 s) is refused at `check`, instead of panicking when a
/// worker turns it into a `Duration`.
#[test]
fn a_timeout_too_large_for_a_duration_is_refused() {
    let e = with_tail(&["parallelism:", "  data: {workers: 2, timeout_s: 1.0e300}"]);
    assert_eq!(
        e,
        ["spec.yaml:7:33: parallelism.data.timeout_s: timeout_s must be at most 604800 seconds (a week), found 1e300"]
    );
}

#[test]
fn unknown_data_parallel_key_suggests_the_nearest() {
    let e = with_tail(&["parallelism:", "  data: {workers: 2, timeout: 5}"]);
    assert_eq!(
        e,
        ["spec.yaml:7:22: parallelism.data: unknown key `timeout`; did you mean `timeout_s`? valid: workers, sync, algorithm, communication_window, staleness, compression, rho, learning_rate, momentum, bucket_mb, timeout_s"]
    );
}

#[test]
fn empty_hosts_list() {
    let e = with_tail(&["executor:", "  cluster: {hosts: []}"]);
    assert_eq!(
        e,
        ["spec.yaml:7:20: executor.cluster.hosts: `hosts` needs at least one `host:port` address, e.g. `[10.0.0.2:7070]`"]
    );
}

#[test]
fn hosts_that_are_not_host_port_are_named_by_index() {
    let e = with_tail(&[
        "executor:",
        "  cluster:",
        "    hosts:",
        "      - 10.0.0.1:7070",
        "      - 10.0.0.2",
        "      - \"[::1]:7070\"",
        "      - node-3:0",
    ]);
    assert_eq!(
        e,
        [
            "spec.yaml:10:9: executor.cluster.hosts[1]: `10.0.0.2` is not a `host:port` address (e.g. `10.0.0.2:7070` or `[::1]:7070`)",
            "spec.yaml:12:9: executor.cluster.hosts[3]: `node-3:0` is not a `host:port` address (e.g. `10.0.0.2:7070` or `[::1]:7070`)",
        ]
    );
}

// ---------------------------------------------------------------- planner errors (builtin:iris)

#[test]
fn plan_add_of_different_widths() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  inputs:",
        "    x: features",
        "  nodes:",
        "    a: {dense: {units: 16}, input: x}",
        "    b: {dense: {units: 8}, input: x}",
        "    s: {add: [a, b]}",
        "    out: {dense: {units: 3, activation: softmax}, input: s}",
        "  output: out",
    ]);
    assert_eq!(
        e,
        ["<spec>:10:14: model.nodes.s.add: `add` needs inputs of the same width, but `a` has 16, `b` has 8; use `concat` to put them side by side"]
    );
}

#[test]
fn plan_output_units_against_classes() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 8, activation: relu}",
        "  - dense: {units: 2, activation: softmax}",
    ]);
    assert_eq!(e, ["<spec>:6:20: model[1].dense.units: the output layer has 2 units but the data has 3 classes"]);
}

#[test]
fn plan_auc_on_three_classes() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: softmax}",
        "evaluate: [accuracy, auc]",
    ]);
    assert_eq!(
        e,
        ["<spec>:6:22: evaluate[1]: auc needs a binary problem; the data has 3 classes"]
    );
}

#[test]
fn plan_regression_metric_on_classes() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: softmax}",
        "evaluate: [mse]",
    ]);
    assert_eq!(
        e,
        ["<spec>:6:12: evaluate[0]: mse is a regression metric; for classification use accuracy, precision, recall, f1, auc or confusion_matrix"]
    );
}

#[test]
fn plan_binary_cross_entropy_on_three_classes() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: softmax}",
        "train:",
        "  loss: binary_cross_entropy",
    ]);
    assert_eq!(e, ["<spec>:7:9: train.loss: binary_cross_entropy needs 2 classes, the data has 3; use cross_entropy"]);
}

#[test]
fn plan_cross_entropy_with_a_sigmoid_output() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 3, activation: sigmoid}",
    ]);
    assert_eq!(
        e,
        ["<spec>:5:35: model[0].dense.activation: cross_entropy needs a softmax (or linear) output, found sigmoid"]
    );
}

#[test]
fn plan_unknown_column_in_a_graph_input() {
    let e = plan_errors(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  inputs:",
        "    x: [petal_length, petal_widht]",
        "  nodes:",
        "    out: {dense: {units: 3}, input: x}",
        "  output: out",
    ]);
    assert_eq!(
        e,
        ["<spec>:6:23: model.inputs.x[1]: unknown feature column `petal_widht`; did you mean `petal_width`? valid: sepal_length, sepal_width, petal_length, petal_width"]
    );
}

#[test]
fn plan_error_display_is_the_located_line() {
    let text = spec(&[
        "name: t",
        "data:",
        "  source: builtin:iris",
        "model:",
        "  - dense: {units: 2, activation: softmax}",
    ]);
    let err = plan(&text).expect_err("2 units for 3 classes");
    assert!(err.is_user_error());
    assert_eq!(
        err.to_string(),
        "<spec>:5:20: model[0].dense.units: the output layer has 2 units but the data has 3 classes"
    );
}

// ---------------------------------------------------------------- no panics on mangled text

const IRIS_LIKE: &str = "\
# Fisher's Iris: a small MLP.
name: iris
seed: 42
data:
  source: builtin:iris
  label: species
  preprocess:
    - standard_scale: {}
  split: {train: 0.7, test: 0.3, shuffle: true}
model:
  - dense: {units: 16, activation: relu}
  - dropout: {rate: 0.1}
  - dense: {units: 3, activation: softmax}
train:
  loss: cross_entropy
  optimizer: {adam: {lr: 0.01}}
  batch_size: 16
  epochs: 60
evaluate: [accuracy, precision, recall, f1, confusion_matrix]
";

/// Loads (and, when it loads, plans) `text` with `sets`; true when that panicked.
fn panics(text: &str, sets: &[String]) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok((_, _)) = load("spec.yaml", text, sets) {
            let _ = plan(text);
        }
    }))
    .is_err()
}

#[test]
fn mangled_specs_never_panic() {
    let bytes = IRIS_LIKE.as_bytes();
    let mut variants: Vec<String> = Vec::new();
    // Truncated at every 7th byte.
    for end in (0..bytes.len()).step_by(7) {
        variants.push(String::from_utf8_lossy(&bytes[..end]).into_owned());
    }
    // Pseudo-random swaps, deletions and insertions of YAML's structural characters.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let specials = [
        b'{', b'}', b'[', b']', b':', b'-', b'\t', b'"', b'\'', b'&', b'*', b'#', b'\n', b' ', b',',
    ];
    for round in 0..60 {
        let mut v = bytes.to_vec();
        for _ in 0..1 + round % 3 {
            let i = next(v.len());
            match round % 4 {
                0 => {
                    let j = next(v.len());
                    v.swap(i, j);
                }
                1 => {
                    v.remove(i);
                }
                2 => v.insert(i, specials[next(specials.len())]),
                _ => v[i] = specials[next(specials.len())],
            }
        }
        variants.push(String::from_utf8_lossy(&v).into_owned());
    }
    // Odd inputs and anchors.
    variants.push("&a [*a]".into());
    variants.push("a: &x {b: *x}".into());
    variants.push("[".into());
    variants.push("{".into());
    variants.push(":".into());
    variants.push("- - - -".into());
    variants.push("\u{feff}name: t".into());
    variants.push("model: {inputs: {x: features}, nodes: {}, output: x}\nname: t\ndata: {source: builtin:iris}".into());
    assert!(variants.len() >= 20);

    let mut panicked = Vec::new();
    for v in &variants {
        if panics(v, &[]) {
            panicked.push(v.clone());
        }
    }
    // Mangled `--set` expressions on a valid spec.
    let sets = [
        "",
        "=",
        "=3",
        "model[",
        "model[]=1",
        "model[0",
        "model[x].dense=1",
        "model[99999999999999999999]=1",
        "model[0]=",
        "model[0].dense.units=[",
        "train.optimizer=",
        "train.optimizer.adam=3",
        "name.x=1",
        "model=3",
        "evaluate[0]=auc",
        "a.b.c.d.e=1",
        "train.optimizer.adam.lr=-",
        ".=.",
        "[0]=1",
    ];
    for s in sets {
        if panics(IRIS_LIKE, &[s.to_string()]) {
            panicked.push(format!("--set {s}"));
        }
    }
    assert!(panicked.is_empty(), "panicked on: {panicked:#?}");
}

// ---------------------------------------------------------------- specs that would exhaust memory

/// Nine levels of ten aliases would expand to 10⁹ nodes (8 GB before this was bounded): the
/// spec is refused where the expansion crosses the limit, before it is built.
#[test]
fn an_alias_bomb_is_refused_before_it_expands() {
    let mut lines = vec![
        "name: bomb".to_string(),
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]".into(),
    ];
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let refs = [prev.as_str(); 10].join(", ");
        lines.push(format!("a{i}: &a{i} [{refs}]"));
    }
    let text = lines.join("\n") + "\n";
    assert!(text.len() < 800, "{} bytes", text.len());
    let started = std::time::Instant::now();
    let e = errors_with(&text, &[]);
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        e,
        ["spec.yaml:7:45: the spec expands to more than 1000000 YAML nodes (an alias repeats every node of its anchor); write it with fewer aliases"]
    );
}

/// Aliases within the limit still work (they are a YAML feature users rely on).
#[test]
fn aliases_under_the_limit_expand() {
    let text = "name: a\ndata: {source: builtin:iris}\nlayer: &l {dense: {units: 8, activation: relu}}\nmodel: [*l, *l, {dense: {units: 3, activation: softmax}}]\n";
    let e = errors_with(text, &[]);
    assert_eq!(e, ["spec.yaml:3:1: unknown key `layer`; valid: name, seed, data, model, train, evaluate, parallelism, executor"]);
}

/// The YAML parser bounds nesting itself (no stack overflow on `[[[[…]]]]`).
#[test]
fn nesting_past_the_parser_limit_is_a_located_error() {
    let text = format!("name: deep\nx: {}{}\n", "[".repeat(300), "]".repeat(300));
    let e = errors_with(&text, &[]);
    assert_eq!(
        e,
        ["spec.yaml:2:259: YAML syntax error: recursion limit exceeded"]
    );
}

/// A run name is a folder under the runs directory: `..`, a leading `.` or a 300-character
/// name would leave it or fail to be created.
#[test]
fn run_names_that_would_escape_the_runs_folder_are_refused() {
    let valid = "use up to 100 letters, digits, `-`, `_` and `.`, not starting with `.`";
    for (name, shown) in [("..", ".."), (".hidden", ".hidden")] {
        let e = errors(&[
            &format!("name: \"{name}\""),
            "data: {source: builtin:iris}",
            "model: [dense: {units: 3}]",
        ]);
        assert_eq!(
            e,
            [format!(
                "spec.yaml:1:7: name: `{shown}` is not a valid run name; {valid}"
            )]
        );
    }
    let long = "a".repeat(300);
    let e = errors(&[
        &format!("name: {long}"),
        "data: {source: builtin:iris}",
        "model: [dense: {units: 3}]",
    ]);
    assert_eq!(
        e,
        [format!(
            "spec.yaml:1:7: name: `{}…` is not a valid run name; {valid}",
            "a".repeat(40)
        )]
    );
    // Dots inside a name stay valid.
    assert!(load(
        "spec.yaml",
        "name: v1.2\ndata: {source: builtin:iris}\nmodel: [dense: {units: 3}]\n",
        &[]
    )
    .is_ok());
}
