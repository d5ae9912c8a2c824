#include <stdio.h>
#include <unistd.h>

#include <libavutil/mem.h>

#include "cli_internal.h"
#include "mediaworker/download.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"

/*
 * Downloads a URL input into <scratch>/<job id>/ and points the job at the copy. Returns 0, or the download's
 * error with *report set to the failed report.
 */
static int fetch_url_input(const struct mw_config *cfg, struct mw_job *job, char *scratch, size_t size,
                           cJSON **report)
{
    char err[512] = "";
    int64_t bytes = 0;
    int ret;

    snprintf(scratch, size, "%s/%s", cfg->scratch_dir, job->job_id);
    ret = mw_path_mkdirs(scratch);
    if (ret >= 0 && snprintf(job->local_input, sizeof(job->local_input), "%s/input", scratch) >=
                        (int)sizeof(job->local_input))
        ret = AVERROR(ENAMETOOLONG);
    if (ret >= 0)
        ret = mw_download(cfg, job->url, job->local_input, &bytes, err, sizeof(err));
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "download", "%s", err[0] ? err : mw_err2str(ret));
        *report = mw_job_failure_report(job, ret, err);
        return ret;
    }
    mw_log(MW_LOG_INFO, "download", "downloaded %lld bytes", (long long)bytes);
    return 0;
}

static void remove_scratch(const char *scratch, const struct mw_job *job)
{
    if (!scratch[0])
        return;
    if (job->local_input[0])
        unlink(job->local_input);
    rmdir(scratch);
}

/* Runs one job message end to end without a broker, in this process, and prints the report's new_file. */
static int run_job_file(const struct mw_config *cfg, int argc, char **argv)
{
    struct mw_job *job = NULL;
    cJSON *result = NULL;
    char *body = NULL;
    char *text = NULL;
    char err[256] = "";
    char scratch[2048] = "";
    size_t size = 0;
    int ret;

    (void)argc;
    ret = cli_read_file(argv[0], &body, &size);
    if (ret < 0) {
        fprintf(stderr, "mediaworker run: %s: %s\n", argv[0], mw_err2str(ret));
        return MW_EXIT_USAGE;
    }
    ret = mw_job_parse(body, size, NULL, NULL, cfg, &job, NULL, err, sizeof(err));
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "job", "%s: invalid job message: %s", argv[0], err);
        av_free(body);
        return MW_EXIT_JOB_FAILED;
    }
    mw_log_context_set(job->job_id, job->request_id);
    mw_log(MW_LOG_INFO, "job", "job started for user %lld: %s", (long long)job->user_id, job->path);
    ret = job->url[0] ? fetch_url_input(cfg, job, scratch, sizeof(scratch), &result) : 0;
    if (ret >= 0)
        ret = mw_job_run(cfg, job, NULL, NULL, &result);
    remove_scratch(scratch, job);
    if (result) {
        cJSON *wrapper = cJSON_CreateObject();
        if (wrapper && cJSON_AddItemToObject(wrapper, "new_file", result))
            result = NULL;
        text = wrapper ? cJSON_Print(wrapper) : NULL;
        if (text)
            printf("%s\n", text);
        cJSON_Delete(wrapper);
    }
    if (ret >= 0)
        mw_log(MW_LOG_INFO, "job", "job completed");
    mw_log_context_set(NULL, NULL);
    cJSON_free(text);
    cJSON_Delete(result);
    mw_job_free(&job);
    av_free(body);
    return ret < 0 ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_run = {
    .name = "run",
    .usage = "JOB.json",
    .summary = "run one job message in this process, without a broker, and print the report",
    .options = NULL,
    .min_positional = 1,
    .max_positional = 1,
    .run = run_job_file,
};
