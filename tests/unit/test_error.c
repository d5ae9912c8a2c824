#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "mediaworker/error.h"

static void our_codes_have_messages_and_names(void **state)
{
    char buf[MW_ERROR_MAX_STRING];

    (void)state;
    assert_string_equal(mw_strerror(MW_ERR_PATH_REFUSED, buf, sizeof(buf)), "input path refused by the path policy");
    assert_string_equal(mw_error_code_name(MW_ERR_PATH_REFUSED), "PATH_REFUSED");
    assert_string_equal(mw_error_code_name(MW_ERR_DEADLINE), "DEADLINE");
}

static void libav_and_errno_codes_fall_through(void **state)
{
    char buf[MW_ERROR_MAX_STRING];

    (void)state;
    assert_string_equal(mw_error_code_name(AVERROR(ENOMEM)), "ENOMEM");
    assert_string_equal(mw_error_code_name(AVERROR_INVALIDDATA), "INVALID_DATA");
    assert_non_null(strstr(mw_strerror(AVERROR(ENOENT), buf, sizeof(buf)), "No such file"));
    assert_string_equal(mw_strerror(AVERROR_INVALIDDATA, buf, sizeof(buf)),
                        "Invalid data found when processing input");
}

static void codes_are_distinct_and_negative(void **state)
{
    static const int codes[] = {
#define MW_TEST_CODE(name, a, b, msg) MW_ERR_##name,
        MW_ERRNO_MAP(MW_TEST_CODE)
#undef MW_TEST_CODE
    };
    size_t count = sizeof(codes) / sizeof(codes[0]);

    (void)state;
    for (size_t i = 0; i < count; i++) {
        assert_true(codes[i] < 0);
        for (size_t j = i + 1; j < count; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(our_codes_have_messages_and_names),
        cmocka_unit_test(libav_and_errno_codes_fall_through),
        cmocka_unit_test(codes_are_distinct_and_negative),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
