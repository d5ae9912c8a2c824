#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "mediaworker/picture.h"
#include "mediaworker/tonemap.h"
#include "mediaworker/waveform.h"

static struct mw_fit_result fit(int dw, int dh, int width, int height, enum mw_fit mode, int upscale, int even)
{
    struct mw_size_request req = {width, height, mode, upscale, even};
    struct mw_fit_result out;

    assert_int_equal(mw_picture_fit(dw, dh, &req, &out), 0);
    return out;
}

static void contain_keeps_aspect(void **state)
{
    struct mw_fit_result r;

    (void)state;
    r = fit(1920, 1080, 320, 0, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.width, 320);
    assert_int_equal(r.height, 180);
    r = fit(1920, 1080, 0, 90, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.width, 160);
    assert_int_equal(r.height, 90);
    r = fit(1920, 1080, 300, 300, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.width, 300);
    assert_int_equal(r.height, 168);
    assert_int_equal(r.crop_x, 0);
    r = fit(1080, 1920, 0, 0, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.width, 1080);
    assert_int_equal(r.height, 1920);
}

static void never_upscales_unless_asked(void **state)
{
    struct mw_fit_result r;

    (void)state;
    r = fit(640, 360, 1280, 0, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.width, 640);
    assert_int_equal(r.height, 360);
    r = fit(640, 360, 1280, 0, MW_FIT_CONTAIN, 1, 1);
    assert_int_equal(r.width, 1280);
    assert_int_equal(r.height, 720);
}

static void cover_crops_the_centre(void **state)
{
    struct mw_fit_result r;

    (void)state;
    r = fit(1920, 1080, 200, 200, MW_FIT_COVER, 0, 1);
    assert_int_equal(r.width, 200);
    assert_int_equal(r.height, 200);
    assert_int_equal(r.scaled_height, 200);
    assert_true(r.scaled_width >= 354 && r.scaled_width <= 356);
    assert_int_equal(r.crop_x, (r.scaled_width - 200) / 2);
    assert_int_equal(r.crop_y, 0);
    /* Smaller than the box without upscale: the box's shape, as large as the picture allows. */
    r = fit(100, 50, 200, 200, MW_FIT_COVER, 0, 0);
    assert_int_equal(r.width, 50);
    assert_int_equal(r.height, 50);
    assert_int_equal(r.scaled_width, 100);
    assert_int_equal(r.crop_x, 25);
}

static void even_dimensions(void **state)
{
    struct mw_fit_result r;

    (void)state;
    r = fit(1920, 1080, 333, 0, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.width % 2, 0);
    assert_int_equal(r.height % 2, 0);
    r = fit(101, 99, 0, 0, MW_FIT_CONTAIN, 0, 0);
    assert_int_equal(r.width, 101);
    assert_int_equal(r.height, 99);
    r = fit(4000, 10, 100, 0, MW_FIT_CONTAIN, 0, 1);
    assert_int_equal(r.height, 2);
    assert_int_equal(mw_picture_fit(0, 10, &(struct mw_size_request){0}, &r), AVERROR(EINVAL));
}

static void display_size_applies_sar_then_rotation(void **state)
{
    struct mw_orientation quarter = {90, 0};
    int w, h;

    (void)state;
    mw_picture_display_size(720, 576, (AVRational){16, 15}, NULL, &w, &h);
    assert_int_equal(w, 768);
    assert_int_equal(h, 576);
    mw_picture_display_size(720, 576, (AVRational){64, 45}, NULL, &w, &h);
    assert_int_equal(w, 1024);
    mw_picture_display_size(720, 576, (AVRational){0, 1}, NULL, &w, &h);
    assert_int_equal(w, 720);
    mw_picture_display_size(1920, 1080, (AVRational){1, 1}, &quarter, &w, &h);
    assert_int_equal(w, 1080);
    assert_int_equal(h, 1920);
}

static void exif_orientations(void **state)
{
    struct mw_orientation o;

    (void)state;
    o = mw_picture_exif_orientation(6);
    assert_int_equal(o.rotation, 90);
    assert_int_equal(o.hflip, 0);
    o = mw_picture_exif_orientation(8);
    assert_int_equal(o.rotation, 270);
    o = mw_picture_exif_orientation(5);
    assert_int_equal(o.rotation, 270);
    assert_int_equal(o.hflip, 1);
    o = mw_picture_exif_orientation(2);
    assert_int_equal(o.rotation, 0);
    assert_int_equal(o.hflip, 1);
    o = mw_picture_exif_orientation(42);
    assert_int_equal(o.rotation, 0);
    assert_int_equal(o.hflip, 0);
}

static AVFrame *rgb_frame(int w, int h)
{
    AVFrame *f = av_frame_alloc();

    assert_non_null(f);
    f->format = AV_PIX_FMT_RGB24;
    f->width = w;
    f->height = h;
    assert_int_equal(av_frame_get_buffer(f, 0), 0);
    for (int y = 0; y < h; y++)
        memset(f->data[0] + y * f->linesize[0], 0, (size_t)w * 3);
    return f;
}

static void render_rotates_and_mirrors(void **state)
{
    struct mw_size_request size = {0};
    struct mw_orientation cw90 = {90, 0}, mirror = {0, 1};
    AVFrame *src = rgb_frame(4, 2);
    AVFrame *out = NULL;

    (void)state;
    /* One red pixel in the top-left corner. */
    src->data[0][0] = 255;
    assert_int_equal(mw_picture_render(src, (AVRational){1, 1}, &cw90, &size, 0, &out), 0);
    assert_int_equal(out->width, 2);
    assert_int_equal(out->height, 4);
    assert_true(out->data[0][3 * 1] > 200);            /* now top right */
    assert_true(out->data[0][0] < 50);
    av_frame_free(&out);
    assert_int_equal(mw_picture_render(src, (AVRational){1, 1}, &mirror, &size, 0, &out), 0);
    assert_true(out->data[0][3 * 3] > 200);            /* mirrored: top right */
    av_frame_free(&out);
    av_frame_free(&src);
}

static void tonemap_curve_keeps_sdr_and_rolls_off(void **state)
{
    double previous = 0;

    (void)state;
    assert_true(mw_tonemap_curve(0.5, 10) == 0.5);
    assert_true(mw_tonemap_curve(0, 10) == 0);
    assert_true(mw_tonemap_curve(10, 10) > 0.999 && mw_tonemap_curve(10, 10) <= 1.0);
    assert_true(mw_tonemap_curve(1.0, 10) > 0.8 && mw_tonemap_curve(1.0, 10) < 1.0);
    for (double l = 0; l <= 12; l += 0.05) {
        double v = mw_tonemap_curve(l, 10);
        assert_true(v >= previous && v <= 1.0);
        previous = v;
    }
    assert_true(mw_tonemap_is_hdr(AVCOL_TRC_SMPTE2084));
    assert_true(mw_tonemap_is_hdr(AVCOL_TRC_ARIB_STD_B67));
    assert_false(mw_tonemap_is_hdr(AVCOL_TRC_BT709));
}

static void waveform_bars_follow_the_envelope(void **state)
{
    static const float peak[4] = {0, 1, 0.5f, 0}, rms[4] = {0, 0.5f, 0.25f, 0};
    AVFrame *rgb = rgb_frame(4, 41);
    const uint8_t *top_of_loud = rgb->data[0] + 3 * rgb->linesize[0] + 3 * 1;
    const uint8_t *top_of_half = rgb->data[0] + 3 * rgb->linesize[0] + 3 * 2;
    const uint8_t *middle_of_half = rgb->data[0] + 20 * rgb->linesize[0] + 3 * 2;
    const uint8_t *corner = rgb->data[0];

    (void)state;
    mw_waveform_draw(peak, rms, 4, rgb);
    /* The loudest column reaches near the top; the half-loud one does not; silence stays background. */
    assert_memory_not_equal(top_of_loud, corner, 3);
    assert_memory_equal(top_of_half, corner, 3);
    assert_memory_not_equal(middle_of_half, corner, 3);
    av_frame_free(&rgb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(contain_keeps_aspect),
        cmocka_unit_test(never_upscales_unless_asked),
        cmocka_unit_test(cover_crops_the_centre),
        cmocka_unit_test(even_dimensions),
        cmocka_unit_test(display_size_applies_sar_then_rotation),
        cmocka_unit_test(exif_orientations),
        cmocka_unit_test(render_rotates_and_mirrors),
        cmocka_unit_test(tonemap_curve_keeps_sdr_and_rolls_off),
        cmocka_unit_test(waveform_bars_follow_the_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
