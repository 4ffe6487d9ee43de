//! Profile photos: every photo, a member's upload or one a peer sends, is
//! decoded and encoded again before it is stored or synced. What is kept is
//! pixels only: bytes that merely start like an image are refused, and
//! metadata (a camera's EXIF block with its location, comments, trailing
//! data) is dropped. Decoding is bounded, so a small file that would
//! decompress to a huge image is refused before it is decoded.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::error::{Error, Result};
use crate::model::Photo;

/// The largest width or height a photo may have, as sent.
pub const MAX_SIDE: u32 = 4096;
/// Photos are stored at most this wide and high (profile pictures are shown
/// small); smaller ones keep their size.
pub const STORED_SIDE: u32 = 512;
/// Memory the decoder may use: a 4096x4096 RGBA image with room to spare.
const MAX_DECODED_BYTES: u64 = 96 * 1024 * 1024;
const JPEG_QUALITY: u8 = 85;

/// Decodes, bounds and re-encodes a photo, off the async runtime.
pub async fn normalize(bytes: Vec<u8>, max_bytes: usize) -> Result<Photo> {
    tokio::task::spawn_blocking(move || normalize_now(&bytes, max_bytes))
        .await
        .map_err(|e| Error::Internal(format!("photo task: {e}")))?
}

/// The same, on the calling thread.
pub fn normalize_now(bytes: &[u8], max_bytes: usize) -> Result<Photo> {
    if bytes.len() > max_bytes {
        return Err(Error::ResourceExhausted(format!(
            "photo is {} bytes; the limit is {max_bytes}",
            bytes.len()
        )));
    }
    let (format, name) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        (ImageFormat::Png, "PNG")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (ImageFormat::Jpeg, "JPEG")
    } else {
        return Err(Error::invalid("photo", "must be a PNG or JPEG image"));
    };
    let broken =
        |e: image::ImageError| Error::invalid("photo", format!("is not a valid {name} image: {e}"));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| too_large(e).unwrap_or_else(broken))?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::invalid(
            "photo",
            format!("is {width}x{height} pixels; at most {MAX_SIDE}x{MAX_SIDE}"),
        ));
    }
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(Error::invalid(
            "photo",
            format!(
                "would take {} MiB to decode; at most {} MiB",
                decoder.total_bytes() >> 20,
                MAX_DECODED_BYTES >> 20
            ),
        ));
    }
    let orientation = decoder.orientation().map_err(broken)?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| too_large(e).unwrap_or_else(broken))?;
    // The EXIF block goes; its orientation is applied to the pixels first,
    // so a phone's photo stays upright.
    image.apply_orientation(orientation);
    if image.width() > STORED_SIDE || image.height() > STORED_SIDE {
        image = image.resize(STORED_SIDE, STORED_SIDE, FilterType::Triangle);
    }
    let mut out = Vec::new();
    let encoded = match format {
        ImageFormat::Png => image.write_with_encoder(PngEncoder::new(&mut out)),
        _ => DynamicImage::ImageRgb8(image.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)),
    };
    encoded.map_err(|e| Error::Internal(format!("photo encoding: {e}")))?;
    Ok(Photo {
        bytes: out,
        content_type: match format {
            ImageFormat::Png => "image/png",
            _ => "image/jpeg",
        }
        .into(),
    })
}

/// A decoder's refusal for want of its limits, as the caller's error.
fn too_large(e: image::ImageError) -> std::result::Result<Error, image::ImageError> {
    match e {
        image::ImageError::Limits(limit) => Ok(Error::invalid(
            "photo",
            format!("is too large to decode ({limit}); at most {MAX_SIDE}x{MAX_SIDE} pixels"),
        )),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            width,
            height,
            image::Rgba([10, 200, 30, 255]),
        ))
        .write_with_encoder(PngEncoder::new(&mut out))
        .unwrap();
        out
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            width,
            height,
            image::Rgb([200, 20, 30]),
        ))
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 90))
        .unwrap();
        out
    }

    /// An APP1 segment holding an EXIF block, put right after the JPEG's
    /// start-of-image marker, as a camera writes it.
    fn with_exif(jpeg: &[u8]) -> Vec<u8> {
        let mut exif =
            b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x88\x25\0\x04\0\0\0\x01\0\0\0\x1a\0\0".to_vec();
        exif.extend_from_slice(b"GPS 35.6586N 139.7454E");
        let len = u16::try_from(exif.len() + 2).unwrap().to_be_bytes();
        [&jpeg[..2], &[0xFF, 0xE1], &len[..], &exif, &jpeg[2..]].concat()
    }

    fn refused(bytes: &[u8]) -> String {
        match normalize_now(bytes, 1 << 20) {
            Err(Error::Invalid { field, reason }) => {
                assert_eq!(field, "photo");
                reason
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn bytes_that_only_start_like_an_image_are_refused() {
        assert!(
            refused(b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>")
                .contains("not a valid PNG")
        );
        assert!(refused(b"\xFF\xD8\xFF<html>").contains("not a valid JPEG"));
        assert!(refused(b"GIF89a....").contains("PNG or JPEG"));
        assert!(refused(b"hello").contains("PNG or JPEG"));
    }

    #[test]
    fn a_real_photo_is_encoded_again_without_what_follows_it() {
        let polyglot = [png(8, 6).as_slice(), b"<html><script>alert(1)</script>"].concat();
        let photo = normalize_now(&polyglot, 1 << 20).unwrap();
        assert_eq!(photo.content_type, "image/png");
        assert!(!photo.bytes.windows(6).any(|w| w == b"<html>"));
        let decoded = image::load_from_memory(&photo.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (8, 6));
    }

    #[test]
    fn a_jpeg_loses_its_exif_block() {
        let original = with_exif(&jpeg(16, 16));
        assert!(original.windows(4).any(|w| w == b"Exif"));
        image::load_from_memory(&original).expect("the test's JPEG decodes");
        let photo = normalize_now(&original, 1 << 20).unwrap();
        assert_eq!(photo.content_type, "image/jpeg");
        assert!(!photo.bytes.windows(4).any(|w| w == b"Exif"));
        assert!(!photo.bytes.windows(3).any(|w| w == b"GPS"));
        let decoded = image::load_from_memory(&photo.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 16));
    }

    #[test]
    fn large_photos_are_scaled_down_and_huge_ones_refused() {
        let photo = normalize_now(&png(1024, 256), 1 << 20).unwrap();
        let decoded = image::load_from_memory(&photo.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (512, 128));
        // A few KiB that would decode to 4097x16 pixels: refused by its header.
        let reason = refused(&png(MAX_SIDE + 1, 16));
        assert!(reason.contains("4096x4096"), "{reason}");
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        // 4096x4096 pixels of 16-bit RGBA: 128 MiB once decoded, from a file
        // of a few dozen bytes (its header; the pixels never arrive).
        let mut bomb = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bomb, MAX_SIDE, MAX_SIDE);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Sixteen);
            let mut writer = encoder.write_header().unwrap();
            // The first bytes of the pixels: an empty zlib stream.
            writer
                .write_chunk(png::chunk::IDAT, &[0x78, 0x9C, 0x03, 0, 0, 0, 0, 1])
                .unwrap();
            drop(writer);
        }
        assert!(bomb.len() < 100, "{} bytes", bomb.len());
        let reason = refused(&bomb);
        assert!(reason.contains("128 MiB to decode"), "{reason}");
    }

    #[test]
    fn the_size_limit_comes_first() {
        assert!(matches!(
            normalize_now(&png(8, 8), 16),
            Err(Error::ResourceExhausted(_))
        ));
    }
}
