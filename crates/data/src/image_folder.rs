//! Image folders (`source: {image_folder: photos/}`): one sub-folder per class, its name the
//! label, PNG or JPEG files in it (decoded by the `image` crate). Each picture becomes the
//! pixel columns `p0…` — channel after channel, each row-major, 0–255 as the file stores
//! them (`preprocess: [{scale: …}]` scales them) — so `data.image` reads them as every
//! other pixel source. With `data.image`, pictures are converted to its channels (grey,
//! RGB or RGBA) and resized to its size (a triangle filter, as PIL's bilinear); without
//! it, they must all have the first one's size. A folder of pictures without class
//! sub-folders has no labels: `weft predict` scores it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::pixels::{pixel_columns, pixel_fields};
use image::{imageops::FilterType, DynamicImage};
use weft_dsl::ImageSpec;

use crate::error::{io_message, DataError};
use crate::schema::TableSchema;
use crate::table::Table;

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// The pictures of a folder, in order: (file, class index), and the class names (the
/// sub-folders' names, sorted; empty when the pictures lie in the folder itself).
struct Listing {
    files: Vec<(PathBuf, Option<usize>)>,
    classes: Vec<String>,
}

fn error(file: &Path, message: impl Into<String>) -> DataError {
    DataError::Image {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// The entries of `dir`, sorted by name, without hidden ones (`.DS_Store`, `.git`).
fn entries(dir: &Path, shown: &str) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: shown.to_string(),
        message: format!("{} (resolved to {})", io_message(&e), dir.display()),
    })?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| error(dir, io_message(&e)))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn is_picture(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn list(root: &Path, shown: &str) -> Result<Listing, DataError> {
    let top = entries(root, shown)?;
    let dirs: Vec<&PathBuf> = top.iter().filter(|p| p.is_dir()).collect();
    let loose: Vec<&PathBuf> = top.iter().filter(|p| is_picture(p)).collect();
    let mut listing = Listing {
        files: Vec::new(),
        classes: Vec::new(),
    };
    if dirs.is_empty() {
        listing.files = loose.into_iter().map(|p| (p.clone(), None)).collect();
    } else {
        if let Some(stray) = loose.first() {
            return Err(error(
                stray,
                format!("a picture beside the class folders of {shown}; put it in one of them (a folder of pictures without class folders is scored, unlabelled, by `weft predict`)"),
            ));
        }
        for dir in dirs {
            let class = listing.classes.len();
            let files: Vec<PathBuf> = entries(dir, shown)?
                .into_iter()
                .filter(|p| is_picture(p))
                .collect();
            if files.is_empty() {
                tracing::warn!("{}: no PNG or JPEG files; not a class", dir.display());
                continue;
            }
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            listing.classes.push(name);
            listing
                .files
                .extend(files.into_iter().map(|f| (f, Some(class))));
        }
    }
    if listing.files.is_empty() {
        return Err(DataError::NoRows {
            file: format!("{shown} (no .png, .jpg or .jpeg files in it or its sub-folders)"),
        });
    }
    Ok(listing)
}

fn decode(file: &Path) -> Result<DynamicImage, DataError> {
    image::ImageReader::open(file)
        .map_err(|e| error(file, io_message(&e)))?
        .with_guessed_format()
        .map_err(|e| error(file, io_message(&e)))?
        .decode()
        .map_err(|e| error(file, format!("cannot decode it: {e}")))
}

/// The (channels, height, width) pictures become: `data.image`'s, or the first picture's.
fn target(first: &Path, image: Option<ImageSpec>) -> Result<(usize, usize, usize), DataError> {
    if let Some(i) = image {
        // (A model trained on pixel columns may have any channel count; pictures do not.)
        if !matches!(i.channels, 1 | 3 | 4) {
            return Err(error(
                first,
                format!(
                    "pictures are read as grey (1), RGB (3) or RGBA (4) channels; the model's image has {}",
                    i.channels
                ),
            ));
        }
        return Ok((i.channels, i.height, i.width));
    }
    let d = decode(first)?;
    let c = usize::from(d.color().channel_count()).clamp(1, 4);
    // Grey with alpha is read as grey; other channel counts stay.
    let c = if c == 2 { 1 } else { c };
    Ok((c, d.height() as usize, d.width() as usize))
}

/// One picture's pixel values in CHW order, converted and resized to `(c, h, w)`.
fn pixels(
    file: &Path,
    (c, h, w): (usize, usize, usize),
    resize: bool,
) -> Result<Vec<f32>, DataError> {
    let d = decode(file)?;
    let (fw, fh) = (d.width() as usize, d.height() as usize);
    if (fh, fw) != (h, w) && !resize {
        return Err(error(
            file,
            format!("{fw}×{fh} pixels, the first picture {w}×{h}; say the size to resize every picture to in `data.image: {{channels: {c}, height: …, width: …}}`"),
        ));
    }
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| error(file, "too wide"))?,
        u32::try_from(h).map_err(|_| error(file, "too high"))?,
    );
    let d = if (fh, fw) == (h, w) {
        d
    } else {
        d.resize_exact(w32, h32, FilterType::Triangle)
    };
    let raw: Vec<u8> = match c {
        1 => d.to_luma8().into_raw(),
        3 => d.to_rgb8().into_raw(),
        _ => d.to_rgba8().into_raw(),
    };
    let mut out = vec![0.0f32; c * h * w];
    for (p, px) in raw.chunks_exact(c).enumerate() {
        for (ch, v) in px.iter().enumerate() {
            out[ch * h * w + p] = f32::from(*v);
        }
    }
    Ok(out)
}

fn schema(per: usize, labels: bool) -> Arc<Schema> {
    let mut f = pixel_fields(per);
    if labels {
        f.push(Field::new("label", DataType::Utf8, false));
    }
    Arc::new(Schema::new(f))
}

/// Reads every picture of the folder `at` (relative to `base`) into a table.
pub fn read_image_folder(
    at: &str,
    base: &Path,
    image: Option<ImageSpec>,
) -> Result<Table, DataError> {
    let root = base.join(at);
    let listing = list(&root, at)?;
    let shape = target(&listing.files[0].0, image)?;
    let per = shape.0 * shape.1 * shape.2;
    let rows = listing.files.len();
    // Decoding is most of the time: the pictures are spread over the cores, each thread
    // writing its own rows.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16);
    let chunk = rows.div_ceil(threads);
    let mut values = vec![0.0f32; rows * per];
    std::thread::scope(|s| {
        let handles: Vec<_> = values
            .chunks_mut(chunk * per)
            .zip(listing.files.chunks(chunk))
            .map(|(out, files)| {
                s.spawn(move || -> Result<(), DataError> {
                    for (row, (file, _)) in out.chunks_exact_mut(per).zip(files) {
                        row.copy_from_slice(&pixels(file, shape, image.is_some())?);
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(DataError::Internal("a decoding thread failed".into())))
        })
    })?;
    let mut columns = pixel_columns(&values, per);
    let labelled = !listing.classes.is_empty();
    if labelled {
        let labels: StringArray = listing
            .files
            .iter()
            .map(|(_, c)| c.map(|c| listing.classes[c].as_str()))
            .collect();
        columns.push(Arc::new(labels));
    }
    let batch = RecordBatch::try_new(schema(per, labelled), columns)
        .map_err(|e| DataError::Internal(format!("image folder {at}: {e}")))?;
    Ok(Table::new(at, batch))
}

/// The columns and row count of an image folder, from its listing and (without
/// `data.image`) its first picture.
pub fn image_folder_schema(
    at: &str,
    base: &Path,
    image: Option<ImageSpec>,
) -> Result<TableSchema, DataError> {
    let listing = list(&base.join(at), at)?;
    let (c, h, w) = target(&listing.files[0].0, image)?;
    Ok(TableSchema {
        name: at.to_string(),
        schema: schema(c * h * w, !listing.classes.is_empty()),
        rows: Some(listing.files.len() as u64),
        classes: None,
    })
}

/// Whether `dir` is an image folder (pictures in it or in its sub-folders, no Parquet
/// files): how `weft predict --input DIR` tells one from a Parquet folder.
pub fn is_image_folder(dir: &Path) -> bool {
    let Ok(top) = entries(dir, "") else {
        return false;
    };
    let parquet = |p: &PathBuf| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    };
    if top.iter().any(parquet) {
        return false;
    }
    top.iter().any(|p| is_picture(p))
        || top
            .iter()
            .filter(|p| p.is_dir())
            .any(|d| entries(d, "").is_ok_and(|e| e.iter().any(|p| is_picture(p))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose image has a channel count pictures cannot have (trained on pixel
    /// columns) is refused by name, not indexed past its pixels.
    #[test]
    fn pictures_are_never_read_as_two_channels() {
        let dir = tempfile::tempdir().expect("temp dir");
        let class = dir.path().join("photos/a");
        std::fs::create_dir_all(&class).expect("folder");
        image::GrayImage::from_pixel(4, 4, image::Luma([9]))
            .save(class.join("1.png"))
            .expect("png");
        let two = ImageSpec {
            channels: 2,
            height: 4,
            width: 4,
        };
        let Err(err) = read_image_folder("photos", dir.path(), Some(two)) else {
            panic!("two channels were read");
        };
        let err = err.to_string();
        assert!(err.contains("the model's image has 2"), "{err}");
        let grey = ImageSpec { channels: 1, ..two };
        let t = read_image_folder("photos", dir.path(), Some(grey)).expect("read");
        assert_eq!(t.num_rows(), 1);
    }
}
