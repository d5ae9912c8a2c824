/*
 * Picture dimensions read from the first bytes of a still-image file, before any decoder runs.
 *
 * Video streams get their dimensions from libav's parsers during probing, so the pixel limit can be
 * checked there. Still images have no parser: the decoder learns the size while decoding, and a decoder
 * stopped by max_pixels leaves the size unknown. A tiny PNG can declare 100000x100000; reading the header
 * ourselves lets such a file be refused as what it is, a pixel bomb, before anything is allocated.
 */
#ifndef MEDIAWORKER_IMAGE_HEADER_H
#define MEDIAWORKER_IMAGE_HEADER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Reads the declared width and height of a PNG, JPEG, GIF or WebP image from buf. Returns 0 with the
 * dimensions set, or AVERROR(ENOENT) when buf is not one of those formats or the header is not within it.
 */
int mw_image_header_dimensions(const uint8_t *buf, size_t size, int64_t *width, int64_t *height);

/*
 * True when buf starts a HEIF still image that libavformat cannot read: an ISO BMFF `ftyp` naming a HEIF
 * brand (heic, heix, heim, heis, hevc, hevx, mif1, msf1) and no AVIF one (avif, avis: those it reads).
 * libavformat's MP4 reader takes such a file for a broken MP4 without `moov`; it is a format we refuse,
 * not a corrupt upload.
 */
int mw_image_header_is_unreadable_heif(const uint8_t *buf, size_t size);

#endif
