#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "mediaworker/error.h"
#include "mediaworker/json.h"
#include "mediaworker/text.h"

static void ids_are_printable_ascii(void **state)
{
    const char *reason = NULL;
    char long_id[200];

    (void)state;
    assert_int_equal(mw_text_check("req-1:abc/DEF_=", 15, 127, MW_TEXT_ID, &reason), 0);
    assert_int_equal(mw_text_check("s\r\nX-Smuggled: yes", 18, 127, MW_TEXT_ID, &reason), MW_ERR_INVALID_MESSAGE);
    assert_string_equal(reason, "contains a control character");
    assert_int_equal(mw_text_check("a\0b", 3, 127, MW_TEXT_ID, &reason), MW_ERR_INVALID_MESSAGE);
    assert_string_equal(reason, "contains a NUL byte");
    assert_int_equal(mw_text_check("a b", 3, 127, MW_TEXT_ID, &reason), MW_ERR_INVALID_MESSAGE);
    assert_int_equal(mw_text_check("caf\xc3\xa9", 5, 127, MW_TEXT_ID, &reason), MW_ERR_INVALID_MESSAGE);
    memset(long_id, 'a', sizeof(long_id));
    assert_int_equal(mw_text_check(long_id, sizeof(long_id), 127, MW_TEXT_ID, &reason), MW_ERR_INVALID_MESSAGE);
    assert_string_equal(reason, "is too long");
}

static void free_text_is_utf8_without_controls(void **state)
{
    static const char *const refused[] = {
        "\xff", "\xc0\xaf" /* overlong '/' */, "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80" /* > U+10FFFF */,
        "\xe2\x82" /* cut short */, "a\x7f", "\xc2\x85" /* NEL, a C1 control */, "tab\t",
    };
    const char *reason = NULL;

    (void)state;
    assert_int_equal(mw_text_check("caf\xc3\xa9 \xf0\x9f\x8e\xac.mp4", 14, 255, MW_TEXT_FREE, &reason), 0);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(mw_text_check(refused[i], strlen(refused[i]), 255, MW_TEXT_FREE, &reason),
                         MW_ERR_INVALID_MESSAGE);
}

static void escape_keeps_lines_whole(void **state)
{
    char out[64];

    (void)state;
    mw_text_escape("a\r\nb\xff\xc3\xa9", out, sizeof(out), MW_ESCAPE_CONTROLS);
    assert_string_equal(out, "a\\x0d\\x0ab\\xff\xc3\xa9");
    mw_text_escape("a\nb\xff", out, sizeof(out), MW_ESCAPE_INVALID_ONLY);
    assert_string_equal(out, "a\nb\\xff");
    /* Cut at a character, never inside an escape or a sequence. */
    assert_int_equal(mw_text_escape("\n\n\n", out, 9, MW_ESCAPE_CONTROLS), 8);
    assert_string_equal(out, "\\x0a\\x0a");
}

static void expect_refused(const char *text, const char *reason)
{
    char err[256] = "";
    cJSON *root = (cJSON *)1;

    assert_int_equal(mw_json_parse_strict(text, strlen(text), 0, &root, err, sizeof(err)), MW_ERR_INVALID_MESSAGE);
    assert_null(root);
    if (!strstr(err, reason))
        fail_msg("\"%s\" refused as \"%s\", expected \"%s\"", text, err, reason);
}

static void strict_json_names_the_field(void **state)
{
    (void)state;
    expect_refused("{\"file_info\": {\"name\": \"a\\r\\nb\"}}", "file_info.name: contains a control character");
    expect_refused("{\"file_info\": {\"name\": \"a\\u0000b\"}}", "file_info.name: contains a NUL byte");
    expect_refused("{\"file_info\": {\"name\": \"a\\u000d\"}}", "file_info.name: contains a control character");
    expect_refused("{\"file_info\": {\"name\": \"a\xff\"}}", "file_info.name: is not valid UTF-8");
    expect_refused("{\"operations\": [{\"type\": \"probe\"}, {\"type\": \"\\ud800\"}]}",
                   "operations[1].type: lone UTF-16 surrogate");
    expect_refused("{\"user_id\": 42}{\"user_id\": 43}", "message body: bytes after the JSON document");
    expect_refused("{\"user_id\": 42} x", "bytes after the JSON document");
    expect_refused("{\"user_id\": 42, \"user_id\": 43}", "user_id: the key appears twice");
    expect_refused("{\"file_info\": {\"path\": \"a\", \"p\\u0061th\": \"b\"}}", "path: the key appears twice");
    expect_refused("{\"user_id\": 4\x01}", "not valid JSON");
    expect_refused("{\"user_id\": 01}", "not valid JSON");
    expect_refused("{\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", "nested deeper");
    expect_refused("", "ends early");
}

static void strict_json_accepts_json(void **state)
{
    const char *text = " {\"user_id\": -1.5e3, \"a\": [true, false, null, \"\\u00e9\\ud83c\\udfac\\\"\\\\\\/\"], "
                       "\"b\": {}} \n";
    char with_nul[] = "{\"a\": 1}\0";
    char err[256] = "";
    cJSON *root = NULL;

    (void)state;
    assert_int_equal(mw_json_parse_strict(text, strlen(text), 0, &root, err, sizeof(err)), 0);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "a"), 3)->valuestring,
                        "\xc3\xa9\xf0\x9f\x8e\xac\"\\/");
    cJSON_Delete(root);
    /* A NUL byte after the document is not whitespace. */
    assert_int_equal(mw_json_parse_strict(with_nul, sizeof(with_nul) - 1, 0, &root, err, sizeof(err)),
                     MW_ERR_INVALID_MESSAGE);
    /* Our own documents may carry a line break in a value, never a NUL. */
    assert_int_equal(mw_json_parse_strict("{\"t\": \"a\\nb\"}", 13, MW_JSON_ALLOW_CONTROL, &root, err, sizeof(err)), 0);
    cJSON_Delete(root);
    assert_int_equal(mw_json_parse_strict("{\"t\": \"a\\u0000\"}", 16, MW_JSON_ALLOW_CONTROL, &root, err,
                                          sizeof(err)), MW_ERR_INVALID_MESSAGE);
}

static void many_keys_cost_no_quadratic_time(void **state)
{
    size_t count = 20000, used = 0;
    char *text = malloc(count * 16 + 16);
    char err[256] = "";
    cJSON *root = NULL;

    (void)state;
    assert_non_null(text);
    text[used++] = '{';
    for (size_t i = 0; i < count; i++)
        used += (size_t)sprintf(text + used, "%s\"k%zu\":1", i ? "," : "", i);
    text[used++] = '}';
    assert_int_equal(mw_json_parse_strict(text, used, 0, &root, err, sizeof(err)), 0);
    cJSON_Delete(root);
    free(text);
}

static void reports_become_valid_utf8(void **state)
{
    cJSON *report = cJSON_CreateObject();
    cJSON *tags = cJSON_AddObjectToObject(report, "tags");
    char *text;

    (void)state;
    cJSON_AddStringToObject(tags, "title", "caf\xe9 \xc3\xa9\nline");
    cJSON_AddStringToObject(tags, "bad\xff", "ok");
    assert_int_equal(mw_json_make_valid_utf8(report), 0);
    text = cJSON_PrintUnformatted(report);
    assert_string_equal(text, "{\"tags\":{\"title\":\"caf\xef\xbf\xbd \xc3\xa9\\nline\",\"bad\xef\xbf\xbd\":\"ok\"}}");
    cJSON_free(text);
    cJSON_Delete(report);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_are_printable_ascii),
        cmocka_unit_test(free_text_is_utf8_without_controls),
        cmocka_unit_test(escape_keeps_lines_whole),
        cmocka_unit_test(strict_json_names_the_field),
        cmocka_unit_test(strict_json_accepts_json),
        cmocka_unit_test(many_keys_cost_no_quadratic_time),
        cmocka_unit_test(reports_become_valid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
