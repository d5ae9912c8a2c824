#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mediaworker/transcode.h"

static void ladder_never_upscales_and_dedups(void **state)
{
    struct mw_rendition out[MW_TRANSCODE_MAX_RENDITIONS];
    const int heights[] = {1080, 720, 480, 360};
    int n;

    (void)state;
    n = mw_ladder_compute(640, 360, (AVRational){0, 1}, 0, heights, 4, out, MW_TRANSCODE_MAX_RENDITIONS);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].width, 640);
    assert_int_equal(out[0].height, 360);

    n = mw_ladder_compute(1920, 1080, (AVRational){1, 1}, 0, heights, 4, out, MW_TRANSCODE_MAX_RENDITIONS);
    assert_int_equal(n, 4);
    assert_int_equal(out[0].height, 1080);
    assert_int_equal(out[1].width, 1280);
    assert_int_equal(out[1].height, 720);
    assert_int_equal(out[2].width, 852);
    assert_int_equal(out[3].width, 640);
}

static void ladder_sizes_are_even_and_sorted(void **state)
{
    struct mw_rendition out[MW_TRANSCODE_MAX_RENDITIONS];
    const int heights[] = {241, 99, 720};
    int n;

    (void)state;
    n = mw_ladder_compute(1001, 563, (AVRational){0, 1}, 0, heights, 3, out, MW_TRANSCODE_MAX_RENDITIONS);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) {
        assert_int_equal(out[i].width % 2, 0);
        assert_int_equal(out[i].height % 2, 0);
        assert_true(out[i].width <= 1001 && out[i].height <= 563);
        if (i)
            assert_true(out[i].height < out[i - 1].height);
    }
    assert_int_equal(out[0].height, 562);
}

static void ladder_applies_sar_and_rotation(void **state)
{
    struct mw_rendition out[2];
    const int heights[] = {480};

    (void)state;
    /* Anamorphic DVD: 720x480 coded, 32:27 pixels -> 853x480 displayed. */
    assert_int_equal(mw_ladder_compute(720, 480, (AVRational){32, 27}, 0, heights, 1, out, 2), 1);
    assert_int_equal(out[0].width, 852);
    assert_int_equal(out[0].height, 480);
    /* A portrait phone clip: 1920x1080 coded, shown rotated by 90 degrees. */
    assert_int_equal(mw_ladder_compute(1920, 1080, (AVRational){1, 1}, 90, heights, 1, out, 2), 1);
    assert_int_equal(out[0].width, 270);
    assert_int_equal(out[0].height, 480);
    assert_int_equal(mw_ladder_compute(1920, 1080, (AVRational){1, 1}, 180, heights, 1, out, 2), 1);
    assert_int_equal(out[0].width, 852);
}

static void ladder_refuses_empty_input(void **state)
{
    struct mw_rendition out[2];
    const int heights[] = {480};
    const int bad[] = {0};

    (void)state;
    assert_true(mw_ladder_compute(0, 480, (AVRational){1, 1}, 0, heights, 1, out, 2) < 0);
    assert_true(mw_ladder_compute(640, 480, (AVRational){1, 1}, 0, heights, 0, out, 2) < 0);
    assert_true(mw_ladder_compute(640, 480, (AVRational){1, 1}, 0, bad, 1, out, 2) < 0);
}

static void frame_rate_is_capped_by_whole_divisors(void **state)
{
    (void)state;
    assert_int_equal(av_cmp_q(mw_ladder_frame_rate((AVRational){120, 1}, 60), (AVRational){60, 1}), 0);
    assert_int_equal(av_cmp_q(mw_ladder_frame_rate((AVRational){100, 1}, 60), (AVRational){50, 1}), 0);
    assert_int_equal(av_cmp_q(mw_ladder_frame_rate((AVRational){30000, 1001}, 60), (AVRational){30000, 1001}), 0);
    assert_int_equal(av_cmp_q(mw_ladder_frame_rate((AVRational){240, 1}, 60), (AVRational){60, 1}), 0);
    assert_int_equal(mw_ladder_frame_rate((AVRational){0, 1}, 60).num, 0);
}

static void presets_are_found_by_name(void **state)
{
    const struct mw_preset *web = mw_preset_find("web");

    (void)state;
    assert_non_null(web);
    assert_string_equal(web->video_codec, "libx264");
    assert_int_equal(web->hls_segment_ms % web->keyframe_ms, 0);
    assert_null(mw_preset_find("nope"));
    assert_null(mw_preset_find(NULL));
    assert_int_equal(mw_preset_cap_for(web, 720)->max_height, 720);
    assert_int_equal(mw_preset_cap_for(web, 700)->max_height, 720);
    assert_int_equal(mw_preset_cap_for(web, 100)->max_height, 240);
    assert_int_equal(mw_preset_cap_for(web, 9999)->max_height, 2160);
}

/* At the caps of the web preset: 1080/720/480/360 are 6, 3, 1.5 and 0.9 Mbit/s, each with 128 kbit/s audio. */
static void output_bytes_at_caps(void **state)
{
    struct mw_probe_stream video = {.type = AVMEDIA_TYPE_VIDEO, .width = 1920, .height = 1080,
                                    .sample_aspect_ratio = {1, 1}};
    struct mw_probe probe = {.duration_us = 60000000, .stream_count = 1, .streams = &video, .best_video = 0,
                             .best_audio = -1};
    struct mw_transcode_options opt = {.preset = mw_preset_find("web"), .hls = 1};

    (void)state;
    /* (11.4 + 4 * 0.128) Mbit/s for 60 s, twice (MP4 and HLS), plus a tenth. */
    assert_true(llabs(mw_transcode_bytes_at_caps(&probe, &opt) - 196548000) < 2);
    opt.hls = 0;
    opt.heights[0] = 720;
    opt.height_count = 1;
    assert_true(llabs(mw_transcode_bytes_at_caps(&probe, &opt) - (3128000 / 8 * 60 * 11 / 10)) < 2);
    opt.heights[0] = 2160;
    video.width = 640;
    video.height = 360;
    assert_true(llabs(mw_transcode_bytes_at_caps(&probe, &opt) - (1028000 / 8 * 60 * 11 / 10)) < 2);
    probe.best_video = -1;
    assert_true(llabs(mw_transcode_bytes_at_caps(&probe, &opt) - (128000 / 8 * 60 * 11 / 10)) < 2);
    probe.duration_us = AV_NOPTS_VALUE;
    assert_int_equal(mw_transcode_bytes_at_caps(&probe, &opt), 0);
}

static void progress_math(void **state)
{
    struct mw_progress p = {.phase = "transcode"};

    (void)state;
    mw_progress_compute(&p, 25, 100, 5.0, 2.0);
    assert_true(p.percent > 24.99 && p.percent < 25.01);
    assert_true(p.speed > 2.49 && p.speed < 2.51);
    assert_true(p.eta_s > 5.99 && p.eta_s < 6.01);
    mw_progress_compute(&p, 0, 100, 0, 0);
    assert_true(p.eta_s < 0);
    assert_true(p.speed == 0);
    mw_progress_compute(&p, 10, 0, 1, 1);
    assert_true(p.percent == 0 && p.eta_s < 0);
    mw_progress_compute(&p, 150, 100, 1, 1);
    assert_true(p.percent == 100 && p.eta_s == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ladder_never_upscales_and_dedups),
        cmocka_unit_test(ladder_sizes_are_even_and_sorted),
        cmocka_unit_test(ladder_applies_sar_and_rotation),
        cmocka_unit_test(ladder_refuses_empty_input),
        cmocka_unit_test(frame_rate_is_capped_by_whole_divisors),
        cmocka_unit_test(presets_are_found_by_name),
        cmocka_unit_test(output_bytes_at_caps),
        cmocka_unit_test(progress_math),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
