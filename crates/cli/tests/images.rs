//! Image models as a user trains them: the shipped CNN on scikit-learn's 8×8 digits reaches
//! its accuracy on the CPU, the GPU (lavapipe where there is no GPU) gives the CPU's
//! figures, two data-parallel workers (all-reduce and a parameter server) train it, and
//! `weft predict` scores the pixel columns.

#![allow(clippy::unwrap_used)]

mod support;
use support::{predicted_accuracy, run_json, stderr, test_accuracy as accuracy, weft, REPO};

const SPEC: &str = "specs/digits-cnn.yaml";

#[test]
fn the_digits_cnn_reaches_its_accuracy_and_predict_scores_pixels() {
    let runs = tempfile::tempdir().unwrap();
    let v = run_json(SPEC, runs.path(), &[]);
    assert!(
        accuracy(&v) >= 0.97,
        "digits test accuracy {}",
        accuracy(&v)
    );
    // Every row scored, and the accuracy over all of them (train rows included) is high.
    predicts(&v, &format!("{REPO}/specs/data/digits.csv"), 0.98);
}

#[test]
fn gpu_and_cpu_train_the_cnn_alike() {
    let runs = tempfile::tempdir().unwrap();
    let short = ["--set", "train.epochs=3"];
    let cpu = run_json(
        SPEC,
        runs.path(),
        &[&short[..], &["--set", "executor.device=cpu"]].concat(),
    );
    let gpu = run_json(
        SPEC,
        runs.path(),
        &[&short[..], &["--set", "executor.device=gpu"]].concat(),
    );
    assert!(
        gpu["train"]["device"].as_str().unwrap().starts_with("gpu"),
        "{}",
        gpu["train"]
    );
    let (a, b) = (accuracy(&cpu), accuracy(&gpu));
    assert!((a - b).abs() <= 0.01, "cpu {a}, gpu {b}");
    assert!(a > 0.85, "3 epochs: {a}");
}

#[test]
fn two_data_parallel_workers_train_the_cnn() {
    let runs = tempfile::tempdir().unwrap();
    // All-reduce is the single process's arithmetic; an asynchronous parameter server
    // trains on stale weights, so its accuracy varies a little from run to run.
    for (sync, min) in [
        ("{workers: 2, sync: allreduce}", 0.97),
        (
            "{workers: 2, sync: parameter_server, algorithm: downpour}",
            0.95,
        ),
    ] {
        let v = run_json(
            SPEC,
            runs.path(),
            &["--set", &format!("parallelism.data={sync}")],
        );
        assert_eq!(v["comm"]["workers"], 2, "{}", v["comm"]);
        assert!(accuracy(&v) >= min, "{sync}: {}", accuracy(&v));
    }
}

/// Writes IDX files (MNIST's format) of the digits: the images gzipped, the labels not.
fn digits_idx(dir: &std::path::Path, labels: usize) {
    let text = std::fs::read_to_string(format!("{REPO}/specs/data/digits.csv")).unwrap();
    let rows: Vec<Vec<u8>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let n = rows.len() as u32;
    let mut images = vec![0, 0, 0x08, 3];
    for d in [n, 8, 8] {
        images.extend(d.to_be_bytes());
    }
    let mut lab = vec![0, 0, 0x08, 1];
    lab.extend((labels as u32).to_be_bytes());
    for r in &rows {
        images.extend(&r[..64]);
    }
    lab.extend(rows.iter().take(labels).map(|r| r[64]));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &images).unwrap();
    std::fs::write(dir.join("images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("labels-idx1-ubyte"), lab).unwrap();
}

#[test]
fn an_idx_source_trains_the_cnn() {
    let dir = tempfile::tempdir().unwrap();
    digits_idx(dir.path(), 1797);
    let spec = std::fs::read_to_string(format!("{REPO}/{SPEC}"))
        .unwrap()
        .replace(
            "source: {csv: data/digits.csv}\n  label: digit",
            "source: {idx: {images: images-idx3-ubyte.gz, labels: labels-idx1-ubyte}}",
        );
    assert!(spec.contains("idx:"));
    let path = dir.path().join("digits.yaml");
    std::fs::write(&path, spec).unwrap();
    let o = weft(&["check", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = run_json(
        path.to_str().unwrap(),
        dir.path(),
        &["--set", "train.epochs=5"],
    );
    assert!(accuracy(&v) >= 0.9, "idx digits: {}", accuracy(&v));
    // `weft predict` reads the IDX images, and their labels from the file beside them.
    let images = dir.path().join("images-idx3-ubyte.gz");
    predicts(&v, images.to_str().unwrap(), 0.9);
    // Labels that do not match the images: a located error with both counts.
    digits_idx(dir.path(), 100);
    let err = refused(&path, dir.path());
    assert!(
        err.contains("data.source.idx: labels-idx1-ubyte: 100 labels (dimensions [100]) for the 1797 images of images-idx3-ubyte.gz; they must be one per image"),
        "{err}"
    );
}

/// `weft predict` of the run `v` on `input` (the 1797 digits): a header and a row per
/// digit, and the accuracy it prints at least `min`.
fn predicts(v: &serde_json::Value, input: &str, min: f64) {
    let run_dir = v["run_dir"].as_str().unwrap();
    let o = weft(&["predict", "--model", run_dir, "--input", input]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(predicted_accuracy(&err) >= min, "{input}: {err}");
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(lines, 1 + 1797, "{input}: a header and a row per digit");
}

/// `weft run` of `spec` refused as a spec or data error (exit 2); its message.
fn refused(spec: &std::path::Path, runs: &std::path::Path) -> String {
    let o = weft(&[
        "run",
        spec.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    err
}

/// The digits as a folder of 16×16 grey PNGs (each pixel doubled), one sub-folder per digit.
fn digits_folder(dir: &std::path::Path) {
    let text = std::fs::read_to_string(format!("{REPO}/specs/data/digits.csv")).unwrap();
    for (i, line) in text.lines().skip(1).enumerate() {
        let v: Vec<u8> = line.split(',').map(|v| v.parse().unwrap()).collect();
        let class = dir.join(format!("digit-{}", v[64]));
        std::fs::create_dir_all(&class).unwrap();
        let img = image::GrayImage::from_fn(16, 16, |x, y| {
            image::Luma([v[(y / 2 * 8 + x / 2) as usize] * 15])
        });
        img.save(class.join(format!("{i:04}.png"))).unwrap();
    }
}

#[test]
fn an_image_folder_trains_the_cnn_and_predict_scores_it() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    digits_folder(&photos);
    // batch_norm after each convolution (statistics per channel), images resized to 8×8.
    let spec = std::fs::read_to_string(format!("{REPO}/{SPEC}"))
        .unwrap()
        .replace(
            "source: {csv: data/digits.csv}\n  label: digit",
            "source: {image_folder: photos}",
        )
        .replace(
            "  - max_pool2d: {size: 2}\n",
            "  - batch_norm: {}\n  - max_pool2d: {size: 2}\n",
        )
        .replace("preprocess: []", "");
    assert!(spec.contains("image_folder") && spec.contains("batch_norm"));
    let path = dir.path().join("digits.yaml");
    std::fs::write(&path, &spec).unwrap();
    let v = run_json(
        path.to_str().unwrap(),
        dir.path(),
        &["--set", "train.epochs=6"],
    );
    assert!(
        accuracy(&v) >= 0.95,
        "image-folder digits: {}",
        accuracy(&v)
    );
    let plan = weft(&["plan", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("BatchNorm2d"), "{text}");
    // The folder scored by the trained model: every picture, the folder names as labels.
    predicts(&v, photos.to_str().unwrap(), 0.97);
    // A file that is not a picture: the error names it and the spec path.
    std::fs::write(photos.join("digit-3/broken.png"), b"not a png").unwrap();
    let err = refused(&path, dir.path());
    assert!(
        err.contains("data.source.image_folder:")
            && err.contains("digit-3/broken.png: cannot decode it"),
        "{err}"
    );
}
