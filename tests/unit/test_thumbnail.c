#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mediaworker/frame_select.h"
#include "mediaworker/thumbnail.h"

static void positions_parse(void **state)
{
    struct mw_position p;

    (void)state;
    assert_int_equal(mw_position_parse("50%", &p), 0);
    assert_true(p.percent && p.value == 50);
    assert_int_equal(mw_position_parse("12.5", &p), 0);
    assert_true(!p.percent && p.value == 12.5);
    assert_int_equal(mw_position_parse("01:02:03.5", &p), 0);
    assert_true(!p.percent && p.value == 3723.5);
    assert_int_equal(mw_position_parse("2:30", &p), 0);
    assert_true(p.value == 150);
    assert_int_equal(mw_position_parse("0%", &p), 0);
    assert_int_equal(mw_position_parse("100%", &p), 0);
}

static void bad_positions_are_refused(void **state)
{
    static const char *const bad[] = {"", "abc", "-1", "150%", "50%%", "5s", "1:2:3:4", "1.5:30", "nan", "inf",
                                      "10:%", NULL};
    struct mw_position p;

    (void)state;
    for (const char *const *text = bad; *text; text++)
        assert_int_equal(mw_position_parse(*text, &p), AVERROR(EINVAL));
    assert_int_equal(mw_position_parse(NULL, &p), AVERROR(EINVAL));
}

static void positions_resolve(void **state)
{
    struct mw_position half = {50, 1}, late = {100, 0}, early = {2.5, 0}, end = {100, 1};

    (void)state;
    assert_int_equal(mw_position_resolve(&half, 60000000), 30000000);
    assert_int_equal(mw_position_resolve(&early, 60000000), 2500000);
    /* Past the end: the last picture, not nothing. */
    assert_true(mw_position_resolve(&late, 60000000) < 60000000);
    assert_true(mw_position_resolve(&end, 60000000) < 60000000);
    assert_int_equal(mw_position_resolve(&half, AV_NOPTS_VALUE), 0);
    assert_int_equal(mw_position_resolve(&early, AV_NOPTS_VALUE), 2500000);
}

static void select_modes(void **state)
{
    enum mw_select s;

    (void)state;
    assert_int_equal(mw_select_parse("best", &s), 0);
    assert_int_equal(s, MW_SELECT_BEST);
    assert_string_equal(mw_select_name(MW_SELECT_EXACT), "exact");
    assert_int_equal(mw_select_parse("fast", &s), AVERROR(EINVAL));
}

#define SW 64
#define SH 48

static double score_of(const uint8_t *pixels)
{
    struct mw_frame_score score;

    mw_frame_score_gray(pixels, SW, SW, SH, &score);
    return score.score;
}

static void scoring_prefers_detailed_pictures(void **state)
{
    static uint8_t black[SW * SH], grey[SW * SH], white[SW * SH], pattern[SW * SH], blurred[SW * SH],
        dark_pattern[SW * SH];
    double s_pattern, s_blurred;

    (void)state;
    memset(black, 2, sizeof(black));
    memset(grey, 128, sizeof(grey));
    memset(white, 253, sizeof(white));
    for (int y = 0; y < SH; y++)
        for (int x = 0; x < SW; x++) {
            pattern[y * SW + x] = ((x / 4 + y / 4) % 2) ? 220 : 40;
            /* The same checkerboard seen through a blur: soft low-contrast ramps. */
            blurred[y * SW + x] = (uint8_t)(120 + ((x / 16) % 2 ? 10 : -10));
            dark_pattern[y * SW + x] = ((x / 4 + y / 4) % 2) ? 14 : 4;
        }
    s_pattern = score_of(pattern);
    s_blurred = score_of(blurred);
    assert_true(score_of(black) < 0.05);
    assert_true(score_of(grey) < 0.05);
    assert_true(score_of(white) < 0.05);
    assert_true(score_of(dark_pattern) < 0.1);
    assert_true(s_pattern > 0.7);
    assert_true(s_blurred < s_pattern / 2);
}

static void scoring_tiny_pictures(void **state)
{
    struct mw_frame_score score;
    uint8_t one = 128;

    (void)state;
    mw_frame_score_gray(&one, 1, 1, 1, &score);
    assert_true(score.score == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(positions_parse),
        cmocka_unit_test(bad_positions_are_refused),
        cmocka_unit_test(positions_resolve),
        cmocka_unit_test(select_modes),
        cmocka_unit_test(scoring_prefers_detailed_pictures),
        cmocka_unit_test(scoring_tiny_pictures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
