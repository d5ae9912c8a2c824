#include <stdio.h>
#include <stdlib.h>

#include <libavutil/time.h>

#include "cli_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/input.h"
#include "mediaworker/log.h"
#include "mediaworker/probe.h"

static int compact;

static const struct cli_option probe_options[] = {
    {"--compact", NULL, NULL, NULL, &compact, "one JSON object per line (the default for several files)"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

/* Prints {"file": ..., "error": {...}} for an input that could not be probed, so a batch keeps going. */
static void print_failure(const char *path, int err, int pretty)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    char *text = NULL;

    if (error && cJSON_AddStringToObject(root, "file", path) &&
        cJSON_AddStringToObject(error, "code", mw_error_code_name(err)) &&
        cJSON_AddStringToObject(error, "message", mw_err2str(err)))
        text = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    if (text)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(root);
}

static int probe_one(const struct mw_config *cfg, const char *path, int pretty)
{
    struct mw_input *in = NULL;
    struct mw_probe *probe = NULL;
    int64_t deadline = av_gettime_relative() + (int64_t)cfg->limits.job_deadline_s * 1000000;
    cJSON *json = NULL;
    char *text = NULL;
    int ret;

    ret = mw_input_open_file(&in, path, &cfg->limits, deadline);
    if (ret < 0)
        goto end;
    ret = mw_probe_input(in, &probe);
    if (ret < 0)
        goto end;
    json = mw_probe_to_json(probe);
    if (!json || !cJSON_AddStringToObject(json, "file", path) ||
        !(text = pretty ? cJSON_Print(json) : cJSON_PrintUnformatted(json))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    printf("%s\n", text);
end:
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "probe", "%s: %s", path, mw_err2str(ret));
        print_failure(path, ret, pretty);
    }
    cJSON_free(text);
    cJSON_Delete(json);
    mw_probe_free(&probe);
    mw_input_close(&in);
    return ret;
}

static int run_probe(const struct mw_config *cfg, int argc, char **argv)
{
    int failures = 0;
    int pretty = argc == 1 && !compact;

    for (int i = 0; i < argc; i++)
        if (probe_one(cfg, argv[i], pretty) < 0)
            failures++;
    fflush(stdout);
    return failures ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_probe = {
    .name = "probe",
    .usage = "[--compact] FILE...",
    .summary = "print what each file contains as JSON (one object per line for several files)",
    .options = probe_options,
    .min_positional = 1,
    .max_positional = -1,
    .one_job = 1,
    .run = run_probe,
};
