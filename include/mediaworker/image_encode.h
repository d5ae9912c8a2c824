/*
 * Image encoding: one RGB picture to a JPEG, PNG or WebP file, written atomically.
 *
 * Uses libavcodec's own encoders (mjpeg, png, libwebp), so no further library is linked. JPEG is written
 * as full-range 4:2:0 (JFIF) from the RGB picture; PNG keeps RGB or RGBA as given; WebP goes through
 * libwebp's BGRA input so alpha survives.
 */
#ifndef MEDIAWORKER_IMAGE_ENCODE_H
#define MEDIAWORKER_IMAGE_ENCODE_H

#include <stdint.h>

#include <libavutil/frame.h>

enum mw_image_format {
    MW_IMAGE_JPEG,
    MW_IMAGE_PNG,
    MW_IMAGE_WEBP,
};

#define MW_IMAGE_DEFAULT_QUALITY 85

/* Parses "jpeg" / "jpg" / "png" / "webp"; 0 or AVERROR(EINVAL). */
int mw_image_format_parse(const char *text, enum mw_image_format *format);

/* "jpeg", "png", "webp" and the file extension "jpg", "png", "webp". */
const char *mw_image_format_name(enum mw_image_format format);
const char *mw_image_format_extension(enum mw_image_format format);

/* True when the format stores alpha (PNG, WebP). */
int mw_image_format_has_alpha(enum mw_image_format format);

/* True when the encoder wants even dimensions (4:2:0 chroma). */
int mw_image_format_wants_even(enum mw_image_format format);

/*
 * Encodes picture (AV_PIX_FMT_RGB24 or RGBA) with quality 1..100 (ignored by PNG), checks that the result
 * decodes back at the same size, and writes it to path through a temporary file, fsync and rename. Returns
 * 0 and the file size in *bytes (may be NULL), or a negative error (MW_ERR_OUTPUT_CHECK when the check
 * failed) with nothing left at path or at the temporary name.
 */
int mw_image_encode_file(const AVFrame *picture, enum mw_image_format format, int quality, const char *path,
                         int64_t *bytes);

#endif
