//! Pixel columns, the one layout every image source produces: sample values in row-major
//! order (channel after channel, each row-major) become the float columns `p0…`, which
//! `data.image` reads back as images.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array};
use arrow_schema::{DataType, Field};

/// The fields of `per` pixel columns.
pub(crate) fn pixel_fields(per: usize) -> Vec<Field> {
    (0..per)
        .map(|j| Field::new(format!("p{j}"), DataType::Float32, false))
        .collect()
}

/// The `per` pixel columns of `values`, samples of `per` values one after another.
pub(crate) fn pixel_columns(values: &[f32], per: usize) -> Vec<ArrayRef> {
    let rows = values.len().checked_div(per).unwrap_or(0);
    (0..per)
        .map(|j| {
            Arc::new(Float32Array::from_iter_values(
                (0..rows).map(|r| values[r * per + j]),
            )) as ArrayRef
        })
        .collect()
}

/// How many copies of its values a source holds at its peak while it loads: 2 for the
/// image sources, whose samples are decoded row-major and then transposed into the pixel
/// columns (the memory preflight counts it), 1 for the others.
pub fn copies_while_loading(source: &weft_dsl::Source) -> u64 {
    match source {
        weft_dsl::Source::Idx(_) | weft_dsl::Source::ImageFolder(_) => 2,
        _ => 1,
    }
}
