//! weft-data: loading (CSV, Parquet, builtin:iris, synthetic), splitting and preprocessing.
//!
//! `load_table` reads a spec's source into a [`Table`]; [`prepare`] selects features and the
//! label, splits the rows and fits the preprocess stages on the train split, giving
//! [`Dataset`]s and a serializable [`Pipeline`] that `weft predict` replays on new files.

mod dataset;
mod error;
mod export;
mod fit;
mod frame;
mod idx;
pub mod image_folder;
mod ipc;
mod label;
mod pipeline;
mod pixels;
mod prepare;
#[cfg(feature = "remote")]
pub mod remote;
mod schema;
mod source;
mod split;
pub mod stage;
pub mod stream;
mod synthetic;
mod table;

pub use dataset::Dataset;
pub use error::{At, DataError};
pub use export::write_csv;
pub use pipeline::Pipeline;
pub use pixels::copies_while_loading;
pub use prepare::{feature_columns, prepare, Prepared};
pub use schema::{read_data_schema, read_schema, TableSchema};
pub use source::{is_remote, load_data, load_table, read_table, read_whole_input, stream_table};
pub use split::{split_rows, Split};
pub use stage::Stage;
pub use stream::{prepare_stream, prepare_stream_chunked, Part, StreamSet};
pub use synthetic::{generate, generate_part, synthetic, write_parquet_part};
pub use table::Table;
pub use weft_common::TaskKind;
