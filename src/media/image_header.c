#include <errno.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/intreadwrite.h>

#include "mediaworker/image_header.h"

static int png_dimensions(const uint8_t *buf, size_t size, int64_t *width, int64_t *height)
{
    /* Signature, then the IHDR chunk, which the format requires to come first. */
    if (size < 24 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8) || memcmp(buf + 12, "IHDR", 4))
        return AVERROR(ENOENT);
    *width = AV_RB32(buf + 16);
    *height = AV_RB32(buf + 20);
    return 0;
}

static int gif_dimensions(const uint8_t *buf, size_t size, int64_t *width, int64_t *height)
{
    if (size < 10 || (memcmp(buf, "GIF87a", 6) && memcmp(buf, "GIF89a", 6)))
        return AVERROR(ENOENT);
    *width = AV_RL16(buf + 6);
    *height = AV_RL16(buf + 8);
    return 0;
}

static int jpeg_dimensions(const uint8_t *buf, size_t size, int64_t *width, int64_t *height)
{
    size_t pos = 2;

    if (size < 4 || buf[0] != 0xFF || buf[1] != 0xD8)
        return AVERROR(ENOENT);
    /* Walk the marker segments up to the first start-of-frame, which carries the size. */
    while (pos + 9 < size) {
        uint8_t marker;
        if (buf[pos] != 0xFF) {
            pos++;
            continue;
        }
        marker = buf[pos + 1];
        if (marker == 0xFF || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            pos += marker == 0xFF ? 1 : 2;
            continue;
        }
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
            *height = AV_RB16(buf + pos + 5);
            *width = AV_RB16(buf + pos + 7);
            return 0;
        }
        pos += 2 + AV_RB16(buf + pos + 2);
    }
    return AVERROR(ENOENT);
}

static int webp_dimensions(const uint8_t *buf, size_t size, int64_t *width, int64_t *height)
{
    if (size < 30 || memcmp(buf, "RIFF", 4) || memcmp(buf + 8, "WEBP", 4))
        return AVERROR(ENOENT);
    if (!memcmp(buf + 12, "VP8X", 4)) {
        *width = 1 + (int64_t)AV_RL24(buf + 24);
        *height = 1 + (int64_t)AV_RL24(buf + 27);
        return 0;
    }
    if (!memcmp(buf + 12, "VP8L", 4) && buf[20] == 0x2F) {
        uint32_t bits = AV_RL32(buf + 21);
        *width = 1 + (bits & 0x3FFF);
        *height = 1 + ((bits >> 14) & 0x3FFF);
        return 0;
    }
    if (!memcmp(buf + 12, "VP8 ", 4) && !memcmp(buf + 23, "\x9d\x01\x2a", 3)) {
        *width = AV_RL16(buf + 26) & 0x3FFF;
        *height = AV_RL16(buf + 28) & 0x3FFF;
        return 0;
    }
    return AVERROR(ENOENT);
}

int mw_image_header_dimensions(const uint8_t *buf, size_t size, int64_t *width, int64_t *height)
{
    if (png_dimensions(buf, size, width, height) == 0 || gif_dimensions(buf, size, width, height) == 0 ||
        jpeg_dimensions(buf, size, width, height) == 0 || webp_dimensions(buf, size, width, height) == 0)
        return 0;
    return AVERROR(ENOENT);
}

/* A four-character code of the ftyp box: its major brand (offset 8) or one of its compatible brands. */
static int has_brand(const uint8_t *buf, size_t box_size, const char *const *brands)
{
    for (size_t at = 8; at + 4 <= box_size; at += at == 8 ? 8 : 4)
        for (const char *const *brand = brands; *brand; brand++)
            if (!memcmp(buf + at, *brand, 4))
                return 1;
    return 0;
}

int mw_image_header_is_unreadable_heif(const uint8_t *buf, size_t size)
{
    static const char *const heif[] = {"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", NULL};
    static const char *const avif[] = {"avif", "avis", NULL};
    size_t box_size;

    if (size < 16 || memcmp(buf + 4, "ftyp", 4))
        return 0;
    box_size = (size_t)AV_RB32(buf);
    if (box_size < 16 || box_size > size)
        return 0;
    return has_brand(buf, box_size, heif) && !has_brand(buf, box_size, avif);
}
