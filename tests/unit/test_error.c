#include <errno.h>
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
#define MW_TEST_CODE(name, a, b, cls, msg) MW_ERR_##name,
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

/* What a retry can do: the one column the delivery verdict reads. */
static void error_classes(void **state)
{
    static const struct {
        int err;
        enum mw_error_class cls;
    } table[] = {
        {MW_ERR_INVALID_MESSAGE, MW_ERROR_CLASS_MESSAGE},  {MW_ERR_PATH_REFUSED, MW_ERROR_CLASS_MESSAGE},
        {MW_ERR_UNSUPPORTED_OP, MW_ERROR_CLASS_MESSAGE},   {AVERROR_INVALIDDATA, MW_ERROR_CLASS_INPUT},
        {MW_ERR_TOO_MANY_PIXELS, MW_ERROR_CLASS_INPUT},    {MW_ERR_DEADLINE, MW_ERROR_CLASS_INPUT},
        {MW_ERR_JOB_MEMORY, MW_ERROR_CLASS_INPUT},         {AVERROR(ENOENT), MW_ERROR_CLASS_INPUT},
        /* A crash the input caused recurs on every retry; a kill from outside is retried before this. */
        {MW_ERR_JOB_CRASHED, MW_ERROR_CLASS_INPUT},        {MW_ERR_JOB_KILLED, MW_ERROR_CLASS_INPUT},
        {MW_ERR_JOB_LOST, MW_ERROR_CLASS_TRANSIENT},       {MW_ERR_DOWNLOAD_FAILED, MW_ERROR_CLASS_TRANSIENT},
        {MW_ERR_HTTP_TRANSIENT, MW_ERROR_CLASS_TRANSIENT}, {AVERROR(ENOSPC), MW_ERROR_CLASS_TRANSIENT},
        {AVERROR(EDQUOT), MW_ERROR_CLASS_TRANSIENT},       {AVERROR(ENOMEM), MW_ERROR_CLASS_TRANSIENT},
        {AVERROR(EIO), MW_ERROR_CLASS_TRANSIENT},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (mw_error_class(table[i].err) != table[i].cls)
            fail_msg("%s: class %d, expected %d", mw_error_code_name(table[i].err), mw_error_class(table[i].err),
                     table[i].cls);
}

static void errno_codes_have_names(void **state)
{
    (void)state;
    assert_string_equal(mw_error_code_name(AVERROR(ENAMETOOLONG)), "ENAMETOOLONG");
    assert_string_equal(mw_error_code_name(AVERROR(ELOOP)), "ELOOP");
    assert_string_equal(mw_error_code_name(AVERROR(ENOTDIR)), "ENOTDIR");
    assert_string_equal(mw_error_code_name(AVERROR(EPERM)), "EPERM");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(our_codes_have_messages_and_names),
        cmocka_unit_test(libav_and_errno_codes_fall_through),
        cmocka_unit_test(codes_are_distinct_and_negative),
        cmocka_unit_test(error_classes),
        cmocka_unit_test(errno_codes_have_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
