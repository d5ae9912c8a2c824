#include <stdio.h>

#include <libavutil/mem.h>

#include "cli_internal.h"
#include "mediaworker/download.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/log.h"
#include "mediaworker/reporter.h"

static int report;

static const struct cli_option run_options[] = {
    {"--report", NULL, NULL, NULL, &report, "also PATCH the result to the Data Service (POSTGRES_DATA_SERVICE_URL)"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

/* Sends the report as `serve` would (same headers, retries and classification); 0 or an HTTP_* error. */
static int send_report(const struct mw_config *cfg, const struct mw_job *job, const cJSON *result)
{
    struct mw_reporter *reporter = NULL;
    char detail[512] = "";
    int64_t retry_after_ms;
    int ret = mw_reporter_new(&reporter, cfg);

    if (ret == 0) {
        switch (mw_reporter_send(reporter, job->user_id, job->job_id, job->request_id, result, &retry_after_ms,
                                 detail, sizeof(detail))) {
        case MW_REPORT_ACCEPTED:
            ret = 0;
            break;
        case MW_REPORT_USER_GONE:
            ret = MW_ERR_HTTP_GONE;
            break;
        case MW_REPORT_REFUSED:
            ret = MW_ERR_HTTP_PERMANENT;
            break;
        default:
            ret = MW_ERR_HTTP_TRANSIENT;
            break;
        }
    }
    if (ret < 0)
        mw_log(MW_LOG_ERROR, "reporter", "report not accepted: %s", detail[0] ? detail : mw_err2str(ret));
    else
        mw_log(MW_LOG_INFO, "reporter", "report accepted by the Data Service");
    mw_reporter_free(&reporter);
    return ret;
}

/* A URL input is downloaded here first, as the worker's supervisor does; on failure the job is reported. */
static int fetch_input(const struct mw_config *cfg, struct mw_job *job, char *scratch, size_t size, cJSON **result)
{
    char err[512] = "";
    int ret = mw_download_job_input(cfg, job, NULL, scratch, size, err, sizeof(err));

    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "download", "%s", err[0] ? err : mw_err2str(ret));
        *result = mw_job_failure_report(job, ret, err);
    }
    return ret;
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
    ret = job->url[0] ? fetch_input(cfg, job, scratch, sizeof(scratch), &result) : 0;
    if (ret >= 0)
        ret = mw_job_run(cfg, job, NULL, NULL, &result);
    mw_download_job_cleanup(scratch, job);
    if (report && result) {
        int reported = send_report(cfg, job, result);
        if (reported < 0 && ret >= 0)
            ret = reported;
    }
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
    .usage = "[--report] JOB.json",
    .summary = "run one job message in this process, without a broker, and print the report",
    .options = run_options,
    .min_positional = 1,
    .max_positional = 1,
    .one_job = 1,
    .run = run_job_file,
};
