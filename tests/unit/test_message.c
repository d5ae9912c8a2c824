#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mediaworker/config.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"

static struct mw_config cfg;

static int setup(void **state)
{
    (void)state;
    mw_config_defaults(&cfg);
    return 0;
}

static int parse(const char *body, struct mw_job **job, int64_t *user_id, char *err, size_t err_size)
{
    return mw_job_parse(body, strlen(body), NULL, NULL, &cfg, job, user_id, err, err_size);
}

static void seed_message_gets_default_operations(void **state)
{
    const char *body = "{\"user_id\": 42, \"file_info\": {\"path\": \"uploads/42/clip.mov\", \"name\": \"clip.mov\"}}";
    struct mw_job *job = NULL;
    struct mw_job *again = NULL;
    char err[256] = "";
    int64_t user_id = 0;

    (void)state;
    assert_int_equal(parse(body, &job, &user_id, err, sizeof(err)), 0);
    assert_int_equal(job->user_id, 42);
    assert_int_equal(user_id, 42);
    assert_string_equal(job->path, "uploads/42/clip.mov");
    assert_string_equal(job->name, "clip.mov");
    assert_int_equal(job->operation_count, 2);
    assert_string_equal(job->operations[0].type, "probe");
    assert_string_equal(job->operations[1].type, "thumbnail");
    /* Derived ids are stable across redeliveries of the same body. */
    assert_int_equal(strlen(job->job_id), 32);
    assert_int_equal(parse(body, &again, NULL, err, sizeof(err)), 0);
    assert_string_equal(job->job_id, again->job_id);
    assert_true(strlen(job->request_id) > 0);
    mw_job_free(&job);
    mw_job_free(&again);
    assert_null(job);
}

static void ids_come_from_the_message_or_properties(void **state)
{
    const char *body = "{\"user_id\": 7, \"file_info\": {\"path\": \"a.mp4\"}, \"operations\": [{\"type\": \"probe\"}]}";
    const char *with_id = "{\"job_id\": \"abc-123\", \"user_id\": 7, \"file_info\": {\"path\": \"a.mp4\"}}";
    struct mw_job *job = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(mw_job_parse(body, strlen(body), "msg-9", "req-1", &cfg, &job, NULL, err, sizeof(err)), 0);
    assert_string_equal(job->job_id, "msg-9");
    assert_string_equal(job->request_id, "req-1");
    assert_int_equal(job->operation_count, 1);
    mw_job_free(&job);
    assert_int_equal(mw_job_parse(with_id, strlen(with_id), "msg-9", NULL, &cfg, &job, NULL, err, sizeof(err)), 0);
    assert_string_equal(job->job_id, "abc-123");
    mw_job_free(&job);
    /* A message id that is not a safe directory name is not used as the job id. */
    assert_int_equal(mw_job_parse(body, strlen(body), "../x", NULL, &cfg, &job, NULL, err, sizeof(err)), 0);
    assert_int_equal(strlen(job->job_id), 32);
    mw_job_free(&job);
}

static void operation_params_are_kept(void **state)
{
    const char *body = "{\"user_id\": 1, \"file_info\": {\"path\": \"a.mp4\"}, \"operations\": ["
                       "{\"type\": \"thumbnail\", \"at\": \"50%\", \"width\": 640},"
                       "{\"type\": \"transcode\", \"renditions\": [720, 480], \"hls\": true}]}";
    struct mw_job *job = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(parse(body, &job, NULL, err, sizeof(err)), 0);
    assert_int_equal(job->operation_count, 2);
    assert_int_equal(cJSON_GetObjectItem(job->operations[0].params, "width")->valueint, 640);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(job->operations[1].params, "hls")));
    mw_job_free(&job);
}

struct invalid_case {
    const char *body;
    const char *expected_in_reason;
    int64_t expected_user_id;
};

static void invalid_messages_name_the_field(void **state)
{
    static const struct invalid_case cases[] = {
        {"not json", "not valid JSON", -1},
        {"[1,2]", "JSON object", -1},
        {"{\"file_info\": {\"path\": \"a.mp4\"}}", "user_id is required", -1},
        {"{\"user_id\": \"42\", \"file_info\": {\"path\": \"a.mp4\"}}", "user_id must be a number", -1},
        {"{\"user_id\": 4.5, \"file_info\": {\"path\": \"a.mp4\"}}", "positive integer", -1},
        {"{\"user_id\": -3, \"file_info\": {\"path\": \"a.mp4\"}}", "positive integer", -1},
        {"{\"user_id\": 42}", "file_info is required", 42},
        {"{\"user_id\": 42, \"file_info\": \"a.mp4\"}", "file_info must be an object", 42},
        {"{\"user_id\": 42, \"file_info\": {}}", "path or a url", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": 5}}", "file_info.path must be a string", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"../../etc/passwd\"}}", "file_info.path refused", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"concat:a|b\"}}", "file_info.path refused", 42},
        {"{\"user_id\": 42, \"file_info\": {\"url\": \"file:///etc/passwd\"}}", "file_info.url", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"a\", \"url\": \"http://x/a\"}}", "both", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"a\"}, \"operations\": {}}", "operations must be an array", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"a\"}, \"operations\": []}", "must not be empty", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"a\"}, \"operations\": [{\"type\": \"rm\"}]}", "unknown type", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"a\"}, \"operations\": [{}]}", "string \"type\"", 42},
        {"{\"user_id\": 42, \"file_info\": {\"path\": \"a\"}, \"job_id\": \"../x\"}", "job_id", 42},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mw_job *job = (struct mw_job *)1;
        char err[256] = "";
        int64_t user_id = 0;

        assert_int_equal(parse(cases[i].body, &job, &user_id, err, sizeof(err)), MW_ERR_INVALID_MESSAGE);
        assert_null(job);
        if (!strstr(err, cases[i].expected_in_reason))
            fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, err, cases[i].expected_in_reason);
        assert_int_equal(user_id, cases[i].expected_user_id);
    }
}

/* Operation parameters are checked by mw_job_run before the input is even looked for. */
static void transcode_params_name_the_field(void **state)
{
    static const struct {
        const char *params;
        const char *expected_in_reason;
    } cases[] = {
        {"\"preset\": \"dvd\"", "transcode.preset: unknown preset"},
        {"\"preset\": 5", "transcode.preset: must be a string"},
        {"\"hls\": \"yes\"", "transcode.hls: must be true or false"},
        {"\"remux\": 0", "transcode.remux: must be true or false"},
        {"\"renditions\": []", "transcode.renditions: must be an array of 1 to 8"},
        {"\"renditions\": 720", "transcode.renditions: must be an array of 1 to 8"},
        {"\"renditions\": [720.5]", "transcode.renditions: each height"},
        {"\"renditions\": [8]", "transcode.renditions: each height"},
        {"\"renditions\": [1e20]", "transcode.renditions: each height"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mw_job *job = NULL;
        cJSON *result = NULL;
        char body[256];
        char err[256] = "";
        const char *message;

        snprintf(body, sizeof(body),
                 "{\"user_id\": 42, \"file_info\": {\"path\": \"no-such-file.mp4\"}, "
                 "\"operations\": [{\"type\": \"transcode\", %s}]}", cases[i].params);
        assert_int_equal(parse(body, &job, NULL, err, sizeof(err)), 0);
        assert_int_equal(mw_job_run(&cfg, job, NULL, NULL, &result), MW_ERR_INVALID_MESSAGE);
        message = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(result, "error"), "message"));
        if (!message || !strstr(message, cases[i].expected_in_reason))
            fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, message ? message : "(none)",
                     cases[i].expected_in_reason);
        cJSON_Delete(result);
        mw_job_free(&job);
    }
}

static void oversized_message_is_refused(void **state)
{
    static char body[300 * 1024];
    struct mw_job *job = NULL;
    char err[256] = "";

    (void)state;
    memset(body, ' ', sizeof(body) - 1);
    assert_int_equal(mw_job_parse(body, sizeof(body) - 1, NULL, NULL, &cfg, &job, NULL, err, sizeof(err)),
                     MW_ERR_INVALID_MESSAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_message_gets_default_operations),
        cmocka_unit_test(ids_come_from_the_message_or_properties),
        cmocka_unit_test(operation_params_are_kept),
        cmocka_unit_test(invalid_messages_name_the_field),
        cmocka_unit_test(transcode_params_name_the_field),
        cmocka_unit_test(oversized_message_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
