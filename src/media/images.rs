//! Turning an uploaded file into the pictures we store: the type read from
//! the bytes, decoding under explicit limits, upright orientation, and a
//! re-encode that leaves every piece of metadata (EXIF, GPS, comments) behind.
//!
//! What is stored: a JPEG stays a JPEG (quality 85); PNG, WebP and GIF become
//! PNG, which keeps transparency losslessly (a GIF keeps its first frame
//! only). The thumbnail has the same format, at most 400 px on its longer
//! side.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::AppError;

/// Larger pictures are refused before any pixel is allocated.
pub const MAX_DIMENSION: u32 = 12_000;
/// What one decode may allocate. It also bounds pictures within
/// `MAX_DIMENSION` whose pixels would not fit (12000×12000 RGBA is 576 MB).
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
pub const THUMBNAIL_SIZE: u32 = 400;
const JPEG_QUALITY: u8 = 85;

/// An accepted image type, recognised by its leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    WebP,
    Gif,
}

impl Kind {
    /// The magic numbers only: the file's name and declared type are the
    /// client's word and are never consulted.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Some(Kind::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Kind::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Kind::Gif),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(Kind::WebP),
            _ => None,
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Png => ImageFormat::Png,
            Kind::WebP => ImageFormat::WebP,
            Kind::Gif => ImageFormat::Gif,
        }
    }
}

/// The format a picture is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Jpeg,
    Png,
}

impl Stored {
    pub fn content_type(self) -> &'static str {
        match self {
            Stored::Jpeg => "image/jpeg",
            Stored::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Stored::Jpeg => "jpg",
            Stored::Png => "png",
        }
    }
}

/// A picture ready to store, and its thumbnail.
pub struct Processed {
    pub format: Stored,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
}

/// Sniffs, decodes, turns upright and re-encodes. CPU-bound: call it from a
/// blocking task.
pub fn process(bytes: &[u8]) -> Result<Processed, AppError> {
    let kind = Kind::sniff(bytes).ok_or_else(|| {
        AppError::UnsupportedMedia("only JPEG, PNG, WebP and GIF images are accepted".into())
    })?;
    let image = decode(bytes, kind)?;
    let format = match kind {
        Kind::Jpeg => Stored::Jpeg,
        Kind::Png | Kind::WebP | Kind::Gif => Stored::Png,
    };
    let thumbnail = image.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE);
    Ok(Processed {
        format,
        width: image.width(),
        height: image.height(),
        bytes: encode(&image, format)?,
        thumbnail: encode(&thumbnail, format)?,
    })
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

fn decode(bytes: &[u8], kind: Kind) -> Result<DynamicImage, AppError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    reader.limits(limits());
    // The decoder reads the header and checks the declared size against the
    // limits here, before the pixel buffer exists.
    let mut decoder = reader.into_decoder().map_err(refusal)?;
    let orientation = decoder.orientation().map_err(refusal)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn refusal(err: image::ImageError) -> AppError {
    match err {
        image::ImageError::Limits(_) => AppError::bad_input(
            "file",
            format!(
                "the image is too large: at most {MAX_DIMENSION}×{MAX_DIMENSION} pixels and {} MiB decoded",
                MAX_DECODE_BYTES / (1024 * 1024)
            ),
        ),
        // The bytes are already in memory: an I/O error while decoding them
        // means the file ended early, which is a bad file, not a server fault.
        _ => AppError::UnsupportedMedia(
            "the file is not a readable JPEG, PNG, WebP or GIF image".into(),
        ),
    }
}

fn encode(image: &DynamicImage, format: Stored) -> Result<Vec<u8>, AppError> {
    let mut out = Cursor::new(Vec::new());
    let result = match format {
        // JPEG has no alpha channel; the encoder writes no EXIF segment.
        Stored::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).encode_image(&image.to_rgb8())
        }
        // 8 bits per channel is what the web shows; 16-bit and float
        // pictures are narrowed so every source encodes.
        Stored::Png if image.color().has_alpha() => {
            DynamicImage::ImageRgba8(image.to_rgba8()).write_to(&mut out, ImageFormat::Png)
        }
        Stored::Png => {
            DynamicImage::ImageRgb8(image.to_rgb8()).write_to(&mut out, ImageFormat::Png)
        }
    };
    result.map_err(|e| AppError::Internal(anyhow::anyhow!("encoding an image: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(Kind::sniff(b"\xFF\xD8\xFF\xE0rest"), Some(Kind::Jpeg));
        assert_eq!(Kind::sniff(b"\x89PNG\r\n\x1a\nrest"), Some(Kind::Png));
        assert_eq!(Kind::sniff(b"GIF89a..."), Some(Kind::Gif));
        assert_eq!(Kind::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Kind::WebP));
        assert_eq!(
            Kind::sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            None
        );
        assert_eq!(Kind::sniff(b"<html>"), None);
        assert_eq!(Kind::sniff(b""), None);
    }

    #[test]
    fn a_png_becomes_a_png_with_a_thumbnail() {
        let source = DynamicImage::new_rgba8(900, 300);
        let mut png = Cursor::new(Vec::new());
        source.write_to(&mut png, ImageFormat::Png).unwrap();
        let processed = process(png.get_ref()).unwrap();
        assert_eq!(processed.format, Stored::Png);
        assert_eq!((processed.width, processed.height), (900, 300));
        let thumb = image::load_from_memory(&processed.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (400, 133));
    }
}
