#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <libavutil/log.h>

#include "mediaworker/log.h"

static char captured[16384];

static FILE *capture(enum mw_log_level level, enum mw_log_format format)
{
    FILE *sink;

    memset(captured, 0, sizeof(captured));
    sink = fmemopen(captured, sizeof(captured) - 1, "w");
    assert_non_null(sink);
    mw_log_setup(level, format, sink);
    return sink;
}

static void json_lines_carry_the_context_and_escape(void **state)
{
    FILE *sink = capture(MW_LOG_INFO, MW_LOG_FORMAT_JSON);
    cJSON *line;

    (void)state;
    mw_log_context_set("job-7", "req-\"x\"");
    mw_log(MW_LOG_INFO, "probe", "opened \"%s\"\n\ttab", "a.mp4");
    mw_log(MW_LOG_DEBUG, "probe", "not written at info");
    mw_log_context_set(NULL, NULL);
    fclose(sink);
    assert_null(strchr(strchr(captured, '\n') + 1, '\n'));
    line = cJSON_Parse(captured);
    assert_non_null(line);
    assert_string_equal(cJSON_GetObjectItem(line, "level")->valuestring, "info");
    assert_string_equal(cJSON_GetObjectItem(line, "component")->valuestring, "probe");
    assert_string_equal(cJSON_GetObjectItem(line, "job_id")->valuestring, "job-7");
    assert_string_equal(cJSON_GetObjectItem(line, "request_id")->valuestring, "req-\"x\"");
    assert_string_equal(cJSON_GetObjectItem(line, "msg")->valuestring, "opened \"a.mp4\"\n\ttab");
    cJSON_Delete(line);
}

static void text_lines_and_no_context(void **state)
{
    FILE *sink = capture(MW_LOG_DEBUG, MW_LOG_FORMAT_TEXT);

    (void)state;
    mw_log(MW_LOG_WARN, "broker", "reconnecting in %d s", 2);
    fclose(sink);
    assert_non_null(strstr(captured, "warn  [broker] reconnecting in 2 s\n"));
    assert_null(strstr(captured, "job="));
}

/* A value from outside (a file name, an id) cannot end the line and forge the next one. */
static void text_lines_cannot_be_forged(void **state)
{
    FILE *sink = capture(MW_LOG_INFO, MW_LOG_FORMAT_TEXT);

    (void)state;
    mw_log_context_set("job\r\n1", "req\n2026-01-01T00:00:00.000Z error [slot] forged");
    mw_log(MW_LOG_INFO, "slot", "file %s", "a.mp4\n2026-01-01T00:00:00.000Z info  [slot] job completed\x1b[2J\xff");
    mw_log_context_set(NULL, NULL);
    fclose(sink);
    assert_non_null(strchr(captured, '\n'));
    assert_null(strchr(strchr(captured, '\n') + 1, '\n'));
    assert_null(strchr(captured, '\r'));
    assert_null(strchr(captured, '\x1b'));
    assert_non_null(strstr(captured, "job=job\\x0d\\x0a1"));
    assert_non_null(strstr(captured, "a.mp4\\x0a2026"));
    assert_non_null(strstr(captured, "\\x1b[2J\\xff\n"));
}

/* A JSON line stays valid UTF-8 when a message carries bytes that are not. */
static void json_lines_stay_valid_utf8(void **state)
{
    FILE *sink = capture(MW_LOG_INFO, MW_LOG_FORMAT_JSON);
    cJSON *line;

    (void)state;
    mw_log(MW_LOG_INFO, "probe", "title %s", "caf\xc3\xa9 \xc3(\xed\xa0\x80");
    fclose(sink);
    line = cJSON_Parse(captured);
    assert_non_null(line);
    assert_string_equal(cJSON_GetObjectItem(line, "msg")->valuestring, "title caf\xc3\xa9 \\xc3(\\xed\\xa0\\x80");
    cJSON_Delete(line);
}

static void libav_messages_are_routed_whole(void **state)
{
    FILE *sink = capture(MW_LOG_DEBUG, MW_LOG_FORMAT_JSON);
    cJSON *line;

    (void)state;
    mw_log_route_libav();
    mw_log_context_set("job-9", NULL);
    /* libav writes one line in pieces; it must come out as one record. */
    av_log(NULL, AV_LOG_ERROR, "moov atom ");
    av_log(NULL, AV_LOG_ERROR, "not found\n");
    av_log(NULL, AV_LOG_TRACE, "too chatty to pass\n");
    mw_log_context_set(NULL, NULL);
    fclose(sink);
    line = cJSON_Parse(captured);
    assert_non_null(line);
    assert_string_equal(cJSON_GetObjectItem(line, "component")->valuestring, "libav");
    assert_string_equal(cJSON_GetObjectItem(line, "level")->valuestring, "warn");
    assert_string_equal(cJSON_GetObjectItem(line, "job_id")->valuestring, "job-9");
    assert_string_equal(cJSON_GetObjectItem(line, "msg")->valuestring, "moov atom not found");
    assert_null(strstr(captured, "too chatty"));
    cJSON_Delete(line);
    av_log_set_callback(av_log_default_callback);
}

static void an_overlong_libav_line_does_not_silence_the_next(void **state)
{
    FILE *sink = capture(MW_LOG_DEBUG, MW_LOG_FORMAT_JSON);
    char piece[700];

    (void)state;
    memset(piece, 'x', sizeof(piece) - 1);
    piece[sizeof(piece) - 1] = '\0';
    mw_log_route_libav();
    /* Two pieces of one line that together pass the line buffer, the newline no longer fitting. */
    av_log(NULL, AV_LOG_ERROR, "%s", piece);
    av_log(NULL, AV_LOG_ERROR, "%s\n", piece);
    av_log(NULL, AV_LOG_ERROR, "next line\n");
    fclose(sink);
    assert_non_null(strstr(captured, "\"msg\":\"xxxx"));
    assert_non_null(strstr(captured, "\"msg\":\"next line\""));
    av_log_set_callback(av_log_default_callback);
}

static void names_parse_both_ways(void **state)
{
    enum mw_log_level level;
    enum mw_log_format format;

    (void)state;
    assert_int_equal(mw_log_level_parse("debug", &level), 0);
    assert_int_equal(level, MW_LOG_DEBUG);
    assert_string_equal(mw_log_level_name(level), "debug");
    assert_true(mw_log_level_parse("verbose", &level) < 0);
    assert_int_equal(mw_log_format_parse("json", &format), 0);
    assert_string_equal(mw_log_format_name(format), "json");
    assert_true(mw_log_format_parse("xml", &format) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_lines_carry_the_context_and_escape),
        cmocka_unit_test(text_lines_and_no_context),
        cmocka_unit_test(text_lines_cannot_be_forged),
        cmocka_unit_test(json_lines_stay_valid_utf8),
        cmocka_unit_test(libav_messages_are_routed_whole),
        cmocka_unit_test(an_overlong_libav_line_does_not_silence_the_next),
        cmocka_unit_test(names_parse_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
