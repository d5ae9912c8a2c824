#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/config.h"
#include "mediaworker/path.h"
#include "mediaworker/probe.h"
#include "mediaworker/storyboard.h"

static void plan_by_interval(void **state)
{
    struct mw_storyboard_layout l;

    (void)state;
    assert_int_equal(mw_storyboard_plan(60000000, 2, 0, 10, 10, 160, 90, &l), 0);
    assert_int_equal(l.tile_count, 30);
    assert_int_equal(l.sheet_count, 1);
    assert_int_equal(l.tiles[0].x, 0);
    assert_int_equal(l.tiles[12].x, 2 * 160);
    assert_int_equal(l.tiles[12].y, 90);
    assert_true(l.tiles[29].start_s == 58 && l.tiles[29].end_s == 60);
    mw_storyboard_layout_free(&l);
    assert_null(l.tiles);
    /* A last partial interval still gets a tile that ends at the duration. */
    assert_int_equal(mw_storyboard_plan(61500000, 10, 0, 10, 10, 160, 90, &l), 0);
    assert_int_equal(l.tile_count, 7);
    assert_true(l.tiles[6].end_s == 61.5);
    mw_storyboard_layout_free(&l);
}

static void plan_by_count_and_sheets(void **state)
{
    struct mw_storyboard_layout l;

    (void)state;
    assert_int_equal(mw_storyboard_plan(10000000, 0, 12, 5, 2, 100, 50, &l), 0);
    assert_int_equal(l.tile_count, 12);
    assert_true(l.interval_s > 0.83 && l.interval_s < 0.84);
    assert_int_equal(l.sheet_count, 2);
    assert_int_equal(l.tiles[10].sheet, 1);
    assert_int_equal(l.tiles[10].x, 0);
    assert_int_equal(l.tiles[10].y, 0);
    mw_storyboard_layout_free(&l);
}

static void plan_limits(void **state)
{
    struct mw_storyboard_layout l;

    (void)state;
    /* A day at one tile per second: capped, the interval grows. */
    assert_int_equal(mw_storyboard_plan(86400LL * 1000000, 1, 0, 10, 10, 160, 90, &l), 0);
    assert_int_equal(l.tile_count, MW_STORYBOARD_MAX_TILES);
    assert_true(l.interval_s > 43);
    assert_true(l.sheet_count <= MW_STORYBOARD_MAX_SHEETS);
    mw_storyboard_layout_free(&l);
    assert_int_equal(mw_storyboard_plan(10000000, 1, 0, 1, 1, 160, 90, &l), 0);
    assert_true(l.sheet_count <= MW_STORYBOARD_MAX_SHEETS);
    mw_storyboard_layout_free(&l);
    assert_int_equal(mw_storyboard_plan(AV_NOPTS_VALUE, 1, 0, 10, 10, 160, 90, &l), AVERROR(EINVAL));
    assert_int_equal(mw_storyboard_plan(10000000, 0, 0, 10, 10, 160, 90, &l), AVERROR(EINVAL));
    assert_int_equal(mw_storyboard_plan(10000000, 1, 0, 0, 10, 160, 90, &l), AVERROR(EINVAL));
}

static void vtt_times(void **state)
{
    char text[32];

    (void)state;
    mw_storyboard_format_time(0, text, sizeof(text));
    assert_string_equal(text, "00:00:00.000");
    mw_storyboard_format_time(3723.4567, text, sizeof(text));
    assert_string_equal(text, "01:02:03.457");
    mw_storyboard_format_time(59.9996, text, sizeof(text));
    assert_string_equal(text, "00:01:00.000");
}

static void vtt_text(void **state)
{
    struct mw_storyboard_layout l;
    char *vtt = NULL;

    (void)state;
    assert_int_equal(mw_storyboard_plan(5000000, 2, 0, 2, 10, 160, 90, &l), 0);
    assert_int_equal(mw_storyboard_vtt(&l, "storyboard", MW_IMAGE_JPEG, &vtt), 0);
    assert_string_equal(vtt, "WEBVTT\n"
                             "\n00:00:00.000 --> 00:00:02.000\nstoryboard-0.jpg#xywh=0,0,160,90\n"
                             "\n00:00:02.000 --> 00:00:04.000\nstoryboard-0.jpg#xywh=160,0,160,90\n"
                             "\n00:00:04.000 --> 00:00:05.000\nstoryboard-0.jpg#xywh=0,90,160,90\n");
    av_free(vtt);
    mw_storyboard_layout_free(&l);
}

struct progress_log {
    int calls, last_done, total;
};

static void count_progress(void *opaque, int done, int total)
{
    struct progress_log *log = opaque;

    assert_true(done > log->last_done && done <= total);
    log->calls++;
    log->last_done = done;
    log->total = total;
}

/* The library end to end on a real clip made by the ffmpeg CLI: files, geometry, progress calls. */
static void storyboard_of_a_clip(void **state)
{
    const char *workdir = getenv("MW_TEST_WORKDIR");
    char dir[1024], clip[1200], command[2048], sheet[1300];
    struct mw_config cfg;
    struct mw_input *in = NULL;
    struct mw_probe *probe = NULL;
    struct mw_storyboard_result result;
    struct progress_log log = {0};
    struct mw_storyboard_request req = {.interval_s = 1, .tile_width = 64, .columns = 4, .dir = dir,
                                        .progress = count_progress, .progress_opaque = &log};
    struct stat st;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/unit-storyboard", workdir ? workdir : "/tmp");
    assert_int_equal(mw_path_mkdirs(dir), 0);
    snprintf(clip, sizeof(clip), "%s/clip.mp4", dir);
    snprintf(command, sizeof(command),
             "ffmpeg -v error -y -f lavfi -i testsrc2=s=160x90:r=10:d=5 -c:v libx264 -g 10 '%s'", clip);
    if (system(command) != 0)
        fail_msg("could not make the test clip: %s", command);
    mw_config_defaults(&cfg);
    assert_int_equal(mw_input_open_file(&in, clip, &cfg.limits, av_gettime_relative() + 60000000), 0);
    assert_int_equal(mw_probe_input(in, &probe), 0);
    assert_int_equal(mw_storyboard_make(in, probe, &req, &result), 0);
    assert_int_equal(result.layout.tile_count, 5);
    assert_int_equal(result.layout.tile_height, 36);
    assert_int_equal(result.sheet_width[0], 4 * 64);
    assert_int_equal(result.sheet_height[0], 2 * 36);
    assert_int_equal(log.calls, 5);
    assert_int_equal(log.total, 5);
    snprintf(sheet, sizeof(sheet), "%s/storyboard-0.jpg", dir);
    assert_int_equal(stat(sheet, &st), 0);
    assert_true(st.st_size > 0 && st.st_size == result.sheet_bytes[0]);
    mw_storyboard_result_free(&result);
    mw_probe_free(&probe);
    mw_input_close(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_by_interval),
        cmocka_unit_test(plan_by_count_and_sheets),
        cmocka_unit_test(plan_limits),
        cmocka_unit_test(vtt_times),
        cmocka_unit_test(vtt_text),
        cmocka_unit_test(storyboard_of_a_clip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
