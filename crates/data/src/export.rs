//! Writes chosen rows of a table back out as CSV (the run directory's `test.csv`).

use arrow_array::UInt32Array;

use crate::error::DataError;
use crate::table::Table;

/// Rows `rows` of `table`, with a header, as CSV bytes appended to `out`.
pub fn write_csv(table: &Table, rows: &[usize], out: &mut Vec<u8>) -> Result<(), DataError> {
    let fail = |e: arrow_schema::ArrowError| DataError::Csv {
        file: table.name.clone(),
        message: e.to_string(),
    };
    let idx = UInt32Array::from(rows.iter().map(|r| *r as u32).collect::<Vec<u32>>());
    let taken = arrow_select::take::take_record_batch(&table.batch, &idx).map_err(fail)?;
    let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(out);
    w.write(&taken).map_err(fail)?;
    Ok(())
}
