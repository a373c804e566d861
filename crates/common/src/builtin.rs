//! The columns of the data sources weft defines itself, in one place: the data loader makes
//! them, and the browser (which reads no files) plans against them.

/// `builtin:iris`: four measurements and the species (three classes).
pub const IRIS_FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
pub const IRIS_LABEL: &str = "species";
pub const IRIS_CLASSES: usize = 3;

/// `synthetic`: the name of feature column `j` (`x0`, `x1`, …); the label is `label`.
pub fn synthetic_feature(j: usize) -> String {
    format!("x{j}")
}
pub const SYNTHETIC_LABEL: &str = "label";
