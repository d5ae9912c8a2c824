#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <libavutil/crc.h>
#include <libavutil/intreadwrite.h>

#include "mediaworker/config.h"
#include "mediaworker/error.h"
#include "mediaworker/image_header.h"
#include "mediaworker/input.h"

static struct mw_config cfg;

static int setup(void **state)
{
    (void)state;
    mw_config_defaults(&cfg);
    return 0;
}

static void put_chunk(uint8_t **p, const char *kind, const uint8_t *payload, uint32_t length)
{
    const AVCRC *table = av_crc_get_table(AV_CRC_32_IEEE_LE);
    uint32_t crc;

    AV_WB32(*p, length);
    memcpy(*p + 4, kind, 4);
    if (length)
        memcpy(*p + 8, payload, length);
    crc = av_crc(table, UINT32_MAX, *p + 4, length + 4) ^ UINT32_MAX;
    AV_WB32(*p + 8 + length, crc);
    *p += 12 + length;
}

/* A PNG whose header declares width x height and whose data is a few bytes: the classic pixel bomb. */
static size_t make_png(uint8_t *buf, uint32_t width, uint32_t height)
{
    static const uint8_t empty_zlib[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
    uint8_t ihdr[13] = {0};
    uint8_t *p = buf;

    memcpy(p, "\x89PNG\r\n\x1a\n", 8);
    p += 8;
    AV_WB32(ihdr, width);
    AV_WB32(ihdr + 4, height);
    ihdr[8] = 8;
    ihdr[9] = 2;
    put_chunk(&p, "IHDR", ihdr, sizeof(ihdr));
    put_chunk(&p, "IDAT", empty_zlib, sizeof(empty_zlib));
    put_chunk(&p, "IEND", NULL, 0);
    return (size_t)(p - buf);
}

static void image_headers_are_read(void **state)
{
    uint8_t buf[256];
    static const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 0x40, 0x1F, 0x20, 0x03, 0, 0};
    static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11,
                                   0x08, 0x04, 0x38, 0x07, 0x80, 0x03, 0, 0, 0, 0, 0, 0};
    int64_t width = 0, height = 0;

    (void)state;
    assert_int_equal(mw_image_header_dimensions(buf, make_png(buf, 8000, 9000), &width, &height), 0);
    assert_int_equal(width, 8000);
    assert_int_equal(height, 9000);
    assert_int_equal(mw_image_header_dimensions(gif, sizeof(gif), &width, &height), 0);
    assert_int_equal(width, 8000);
    assert_int_equal(height, 800);
    assert_int_equal(mw_image_header_dimensions(jpeg, sizeof(jpeg), &width, &height), 0);
    assert_int_equal(width, 1920);
    assert_int_equal(height, 1080);
    assert_int_equal(mw_image_header_dimensions((const uint8_t *)"plain text here", 15, &width, &height),
                     AVERROR(ENOENT));
}

static void heif_images_are_told_from_mp4(void **state)
{
    /* size, "ftyp", major brand, minor version, compatible brands */
    static const uint8_t heic[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c', 0, 0, 0, 0,
                                   'm', 'i', 'f', '1', 'h', 'e', 'i', 'c'};
    static const uint8_t mif1[] = {0, 0, 0, 20, 'f', 't', 'y', 'p', 'm', 'i', 'f', '1', 0, 0, 0, 0,
                                   'h', 'e', 'v', 'c'};
    static const uint8_t avif[] = {0, 0, 0, 28, 'f', 't', 'y', 'p', 'a', 'v', 'i', 'f', 0, 0, 0, 0,
                                   'm', 'i', 'f', '1', 'm', 'i', 'a', 'f', 'M', 'A', '1', 'B'};
    static const uint8_t mp4[] = {0, 0, 0, 24, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 2, 0,
                                  'i', 's', 'o', 'm', 'a', 'v', 'c', '1'};
    /* A box claiming more bytes than there are, and a brand only in the minor-version field. */
    static const uint8_t short_box[] = {0, 0, 1, 0, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c', 0, 0, 0, 0};
    static const uint8_t minor[] = {0, 0, 0, 16, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 'h', 'e', 'i', 'c'};

    (void)state;
    assert_true(mw_image_header_is_unreadable_heif(heic, sizeof(heic)));
    assert_true(mw_image_header_is_unreadable_heif(mif1, sizeof(mif1)));
    assert_false(mw_image_header_is_unreadable_heif(avif, sizeof(avif)));
    assert_false(mw_image_header_is_unreadable_heif(mp4, sizeof(mp4)));
    assert_false(mw_image_header_is_unreadable_heif(short_box, sizeof(short_box)));
    assert_false(mw_image_header_is_unreadable_heif(minor, sizeof(minor)));
}

static void pixel_bomb_is_refused_before_decoding(void **state)
{
    uint8_t buf[256];
    size_t size = make_png(buf, 50000, 50000);
    struct mw_input *in = (struct mw_input *)1;

    (void)state;
    assert_int_equal(mw_input_open_memory(&in, buf, size, &cfg.limits, 0), MW_ERR_TOO_MANY_PIXELS);
    assert_null(in);
}

static void playlists_are_refused(void **state)
{
    static const char playlist[] = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n"
                                   "#EXT-X-ENDLIST\n";
    static const char concat[] = "ffconcat version 1.0\nfile /etc/passwd\n";
    struct mw_input *in = NULL;

    (void)state;
    assert_int_equal(mw_input_open_memory(&in, (const uint8_t *)playlist, sizeof(playlist) - 1, &cfg.limits, 0),
                     MW_ERR_FORMAT_REFUSED);
    assert_int_equal(mw_input_open_memory(&in, (const uint8_t *)concat, sizeof(concat) - 1, &cfg.limits, 0),
                     MW_ERR_FORMAT_REFUSED);
    assert_null(in);
}

static void empty_garbage_and_oversized_inputs_fail_cleanly(void **state)
{
    uint8_t garbage[2048];
    struct mw_input *in = NULL;
    struct mw_limits small = cfg.limits;

    (void)state;
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (uint8_t)(i * 7919u >> 3);
    assert_int_equal(mw_input_open_memory(&in, garbage, 0, &cfg.limits, 0), AVERROR_INVALIDDATA);
    assert_true(mw_input_open_memory(&in, garbage, sizeof(garbage), &cfg.limits, 0) < 0);
    small.max_input_bytes = 100;
    assert_int_equal(mw_input_open_memory(&in, garbage, sizeof(garbage), &small, 0), MW_ERR_INPUT_TOO_LARGE);
    assert_null(in);
}

static void passed_deadline_stops_reading(void **state)
{
    uint8_t buf[256];
    size_t size = make_png(buf, 16, 16);
    struct mw_input *in = NULL;

    (void)state;
    /* Any positive value in the past: av_gettime_relative() is far beyond 1 microsecond. */
    assert_int_equal(mw_input_open_memory(&in, buf, size, &cfg.limits, 1), MW_ERR_DEADLINE);
    assert_null(in);
}

static void close_accepts_null(void **state)
{
    struct mw_input *in = NULL;

    (void)state;
    mw_input_close(&in);
    mw_input_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(image_headers_are_read),
        cmocka_unit_test(heif_images_are_told_from_mp4),
        cmocka_unit_test(pixel_bomb_is_refused_before_decoding),
        cmocka_unit_test(playlists_are_refused),
        cmocka_unit_test(empty_garbage_and_oversized_inputs_fail_cleanly),
        cmocka_unit_test(passed_deadline_stops_reading),
        cmocka_unit_test(close_accepts_null),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
