/*
 * The job's output folder: claiming it, committing a result, trusting a committed result only when it
 * is this message's and complete, and tidying after the job (src/job/output_folder.c). The manifest is
 * written by a job process that decodes strangers' files, so the reader is attacked with forged ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "job/operation_internal.h"
#include "mediaworker/config.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/path.h"

static struct mw_config cfg;
static char root[1024];
static char dir[2048];
static struct mw_job *job;

static const char body[] = "{\"job_id\": \"j1\", \"user_id\": 7, \"file_info\": {\"path\": \"clip.mp4\"}, "
                           "\"operations\": [{\"type\": \"thumbnail\"}]}";

static void write_file(const char *name, const char *text)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

static int exists(const char *name)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

/* A folder as a finished job leaves it: marker and manifest with this digest, one 10-byte output, and the
 * manifest's other fields as given. */
static void make_folder(const char *digest, const char *status, const char *output_path, int bytes)
{
    char manifest[2048];

    assert_int_equal(mw_path_mkdirs(dir), 0);
    write_file(MW_JOB_MARKER, digest);
    write_file("thumbnail.jpg", "0123456789");
    snprintf(manifest, sizeof(manifest), "{\"version\":1,\"digest\":\"%s\",\"report\":{\"job_id\":\"j1\","
             "\"status\":\"%s\",\"path\":\"%s\",\"outputs\":[{\"type\":\"thumbnail\",\"path\":\"%s\",\"bytes\":%d}]}}",
             digest, status, output_path, output_path, bytes);
    write_file(MW_JOB_RESULT, manifest);
}

static int setup(void **state)
{
    char err[256];
    const char *work = getenv("MW_TEST_WORKDIR");

    (void)state;
    mw_config_defaults(&cfg);
    snprintf(root, sizeof(root), "%s/output-folder-%d", work ? work : "/tmp", (int)getpid());
    snprintf(cfg.output_root, sizeof(cfg.output_root), "%s", root);
    assert_int_equal(mw_job_parse(body, strlen(body), NULL, NULL, &cfg, &job, NULL, err, sizeof(err)), 0);
    assert_int_equal(mw_job_output_path(&cfg, job, dir, sizeof(dir)), 0);
    return 0;
}

static int teardown(void **state)
{
    char command[4200];

    (void)state;
    mw_job_free(&job);
    snprintf(command, sizeof(command), "rm -rf '%s'", root);
    return system(command) == 0 ? 0 : -1;
}

static int clean(void **state)
{
    char command[4200];

    (void)state;
    snprintf(command, sizeof(command), "rm -rf '%s'", root);
    return system(command) == 0 ? 0 : -1;
}

static void complete_result_is_trusted(void **state)
{
    cJSON *report = NULL;
    char manifest[1024];

    (void)state;
    make_folder(job->digest, "processed", "7/j1/thumbnail.jpg", 10);
    assert_int_equal(mw_job_committed_result(&cfg, job, &report), 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(report, "status")), "processed");
    cJSON_Delete(report);
    /* A report carries the file's metadata, line breaks included. */
    snprintf(manifest, sizeof(manifest), "{\"version\":1,\"digest\":\"%s\",\"report\":{\"job_id\":\"j1\","
             "\"status\":\"processed\",\"probe\":{\"title\":\"two\\nlines\"},\"outputs\":[{\"path\":"
             "\"7/j1/thumbnail.jpg\",\"bytes\":10}]}}", job->digest);
    write_file(MW_JOB_RESULT, manifest);
    assert_int_equal(mw_job_committed_result(&cfg, job, &report), 1);
    cJSON_Delete(report);
}

static void expect_untrusted(void)
{
    cJSON *report = (cJSON *)1;

    assert_int_equal(mw_job_committed_result(&cfg, job, &report), 0);
    assert_null(report);
}

static void forged_results_are_not_trusted(void **state)
{
    char path[4096];

    (void)state;
    make_folder("0000", "processed", "7/j1/thumbnail.jpg", 10);  /* another message's digest */
    expect_untrusted();
    make_folder(job->digest, "failed", "7/j1/thumbnail.jpg", 10);
    expect_untrusted();
    make_folder(job->digest, "processed", "7/j1/thumbnail.jpg", 11); /* the output changed size */
    expect_untrusted();
    make_folder(job->digest, "processed", "8/j1/thumbnail.jpg", 10); /* another user's folder */
    expect_untrusted();
    make_folder(job->digest, "processed", "7/j1/../j1/thumbnail.jpg", 10);
    expect_untrusted();
    make_folder(job->digest, "processed", "7/j1/", 10);
    expect_untrusted();
    /* An output that is a link, even to a file of the right size, is not one the job wrote. */
    make_folder(job->digest, "processed", "7/j1/link.jpg", 10);
    snprintf(path, sizeof(path), "%s/link.jpg", dir);
    assert_int_equal(symlink("thumbnail.jpg", path), 0);
    expect_untrusted();
    make_folder(job->digest, "processed", "7/j1/thumbnail.jpg", 10);
    write_file(MW_JOB_RESULT, "{\"version\":1,\"digest\":\"x\"");
    expect_untrusted();
    write_file(MW_JOB_RESULT, "");
    expect_untrusted();
}

static void tidy_keeps_finished_work(void **state)
{
    (void)state;
    make_folder(job->digest, "processed", "7/j1/thumbnail.jpg", 10);
    write_file("thumbnail.jpg.tmp.123", "partial");
    write_file(".web_720p.mp4.55.tmp", "partial");
    assert_int_equal(mw_job_tidy_output_folder(&cfg, job), 0);
    assert_true(exists("thumbnail.jpg") && exists(MW_JOB_RESULT) && exists(MW_JOB_MARKER));
    assert_false(exists("thumbnail.jpg.tmp.123") || exists(".web_720p.mp4.55.tmp"));
}

static void tidy_removes_unfinished_work(void **state)
{
    char sub[4096];
    struct stat st;

    (void)state;
    make_folder(job->digest, "processed", "7/j1/thumbnail.jpg", 10);
    write_file(MW_JOB_RESULT, "{}");
    snprintf(sub, sizeof(sub), "%s/hls/240p", dir);
    assert_int_equal(mw_path_mkdirs(sub), 0);
    write_file("hls/240p/segment_000.ts", "x");
    assert_int_equal(mw_job_tidy_output_folder(&cfg, job), 1);
    assert_int_not_equal(stat(dir, &st), 0);
}

static void tidy_leaves_what_is_not_its_own(void **state)
{
    char marker[4096];
    int fd;

    (void)state;
    /* Another message's outputs under the same job id (the conflict the job was refused for). */
    make_folder("another-digest", "processed", "7/j1/thumbnail.jpg", 10);
    write_file(MW_JOB_RESULT, "{}");
    assert_int_equal(mw_job_tidy_output_folder(&cfg, job), 0);
    assert_true(exists("thumbnail.jpg"));
    /* Another attempt of the same message still writing: it holds the marker's lock. */
    make_folder(job->digest, "processed", "7/j1/thumbnail.jpg", 10);
    write_file(MW_JOB_RESULT, "{}");
    snprintf(marker, sizeof(marker), "%s/" MW_JOB_MARKER, dir);
    assert_true((fd = open(marker, O_RDONLY)) >= 0);
    assert_int_equal(flock(fd, LOCK_SH), 0);
    assert_int_equal(mw_job_tidy_output_folder(&cfg, job), 0);
    assert_true(exists("thumbnail.jpg"));
    close(fd);
    assert_int_equal(mw_job_tidy_output_folder(&cfg, job), 1);
    assert_false(exists("thumbnail.jpg"));
}

static void claim_commit_and_conflict(void **state)
{
    struct mw_job_context ctx = {.cfg = &cfg, .job = job, .output_dir = dir, .marker_fd = -1};
    struct mw_job_context other = ctx;
    struct mw_job rival = *job;
    char manifest[4096];
    cJSON *report = NULL;
    cJSON *output;

    (void)state;
    assert_int_equal(mw_job_output_dir(&ctx), 0);
    write_file("thumbnail.jpg", "0123456789");
    ctx.report = cJSON_Parse("{\"job_id\":\"j1\",\"status\":\"processed\",\"outputs\":[]}");
    output = cJSON_CreateObject();
    cJSON_AddStringToObject(output, "path", "7/j1/thumbnail.jpg");
    cJSON_AddNumberToObject(output, "bytes", 10);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(ctx.report, "outputs"), output);
    /* While this attempt holds the folder, nobody tidies it away. */
    assert_int_equal(mw_job_tidy_output_folder(&cfg, job), 0);
    assert_int_equal(mw_job_commit_result(&ctx), 0);
    mw_job_release_output_dir(&ctx);
    assert_int_equal(mw_job_committed_result(&cfg, job, &report), 1);
    cJSON_Delete(report);
    /* Another message under the same job id is refused. */
    memset(rival.digest, 'f', MW_JOB_DIGEST_SIZE - 1);
    other.job = &rival;
    assert_int_equal(mw_job_output_dir(&other), MW_ERR_JOB_ID_CONFLICT);
    assert_int_equal(other.marker_fd, -1);
    /* A commit whose outputs are not all in place fails and commits nothing. */
    snprintf(manifest, sizeof(manifest), "%s/" MW_JOB_RESULT, dir);
    assert_int_equal(unlink(manifest), 0);
    assert_int_equal(mw_job_output_dir(&ctx), 0);
    cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(output, "bytes"), 11);
    assert_true(mw_job_commit_result(&ctx) < 0);
    assert_int_equal(mw_job_discard_unfinished(&ctx), 1);
    mw_job_release_output_dir(&ctx);
    assert_false(exists("thumbnail.jpg") || exists(MW_JOB_MARKER));
    cJSON_Delete(ctx.report);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(complete_result_is_trusted, clean),
        cmocka_unit_test_setup(forged_results_are_not_trusted, clean),
        cmocka_unit_test_setup(tidy_keeps_finished_work, clean),
        cmocka_unit_test_setup(tidy_removes_unfinished_work, clean),
        cmocka_unit_test_setup(tidy_leaves_what_is_not_its_own, clean),
        cmocka_unit_test_setup(claim_commit_and_conflict, clean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
