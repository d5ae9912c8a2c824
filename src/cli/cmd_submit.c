/*
 * `mediaworker submit FILE...`: publishes one persistent job per file, for operators and the demo. Paths
 * are sent relative to the input root (a path under MW_INPUT_ROOT is made relative; any other is sent as
 * given, and the worker's path policy judges it). Prints one JSON line per job.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libavutil/random_seed.h>

#include "cli_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/publisher.h"

static const char *operations_arg;
static const char *operations_json_arg;
static const char *user_id_arg;

static const struct cli_option submit_options[] = {
    {"--op", NULL, "TYPE[,TYPE...]", &operations_arg, NULL, "operations (default: the worker's default set)"},
    {"--operations", NULL, "JSON", &operations_json_arg, NULL,
     "operations with parameters, as the message's JSON array (instead of --op)"},
    {"--user-id", NULL, "N", &user_id_arg, NULL, "user the uploads belong to (default 1)"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

static const char *relative_to_root(const struct mw_config *cfg, const char *path)
{
    size_t len = strlen(cfg->input_root);

    while (len > 1 && cfg->input_root[len - 1] == '/')
        len--;
    if (path[0] == '/' && !strncmp(path, cfg->input_root, len) && path[len] == '/')
        return path + len + 1;
    return path;
}

/* operations: a parsed --operations array (copied into each job), or NULL to use --op. */
static cJSON *build_job(const char *job_id, int64_t user_id, const char *path, const cJSON *operations)
{
    cJSON *job = cJSON_CreateObject();
    cJSON *info = job ? cJSON_AddObjectToObject(job, "file_info") : NULL;
    const char *slash = strrchr(path, '/');
    cJSON *ops;

    if (!info || !cJSON_AddStringToObject(job, "job_id", job_id) ||
        !cJSON_AddNumberToObject(job, "user_id", (double)user_id) || !cJSON_AddStringToObject(info, "path", path) ||
        !cJSON_AddStringToObject(info, "name", slash ? slash + 1 : path))
        goto fail;
    if (operations) {
        cJSON *copy = cJSON_Duplicate(operations, 1);
        if (!copy || !cJSON_AddItemToObject(job, "operations", copy)) {
            cJSON_Delete(copy);
            goto fail;
        }
    } else if (operations_arg) {
        char list[256];
        char *save = NULL;

        snprintf(list, sizeof(list), "%s", operations_arg);
        if (!(ops = cJSON_AddArrayToObject(job, "operations")))
            goto fail;
        for (char *type = strtok_r(list, ",", &save); type; type = strtok_r(NULL, ",", &save)) {
            cJSON *op = cJSON_CreateObject();
            if (!op || !cJSON_AddStringToObject(op, "type", type) || !cJSON_AddItemToArray(ops, op)) {
                cJSON_Delete(op);
                goto fail;
            }
        }
    }
    return job;
fail:
    cJSON_Delete(job);
    return NULL;
}

/* One JSON line per published job, so scripts can wait for its report. */
static void print_submitted(const char *job_id, const char *request_id, int64_t user_id, const char *path)
{
    cJSON *line = cJSON_CreateObject();
    char *text = NULL;

    if (line && cJSON_AddStringToObject(line, "job_id", job_id) &&
        cJSON_AddStringToObject(line, "request_id", request_id) &&
        cJSON_AddNumberToObject(line, "user_id", (double)user_id) && cJSON_AddStringToObject(line, "path", path))
        text = cJSON_PrintUnformatted(line);
    if (text)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(line);
}

static int run_submit(const struct mw_config *cfg, int argc, char **argv)
{
    struct mw_publisher *publisher = NULL;
    cJSON *operations = NULL;
    int64_t user_id = 1;
    int status = MW_EXIT_OK;
    char *end;

    if (user_id_arg) {
        user_id = strtoll(user_id_arg, &end, 10);
        if (*end || end == user_id_arg || user_id < 1) {
            fprintf(stderr, "mediaworker submit: --user-id must be a positive integer\n");
            return MW_EXIT_USAGE;
        }
    }
    if (operations_json_arg) {
        operations = cJSON_ParseWithOpts(operations_json_arg, NULL, 1);
        if (!cJSON_IsArray(operations)) {
            fprintf(stderr, "mediaworker submit: --operations must be a JSON array of operations\n");
            cJSON_Delete(operations);
            return MW_EXIT_USAGE;
        }
    }
    if (mw_publisher_new(&publisher, cfg) < 0) {
        cJSON_Delete(operations);
        return MW_EXIT_JOB_FAILED;
    }
    for (int i = 0; i < argc && status == MW_EXIT_OK; i++) {
        const char *path = relative_to_root(cfg, argv[i]);
        char job_id[40], request_id[64];
        cJSON *job;
        char *body;

        snprintf(job_id, sizeof(job_id), "job-%08" PRIx32 "%08" PRIx32, av_get_random_seed(), av_get_random_seed());
        snprintf(request_id, sizeof(request_id), "submit-%s", job_id + 4);
        job = build_job(job_id, user_id, path, operations);
        body = job ? cJSON_PrintUnformatted(job) : NULL;
        if (!body || mw_publisher_send(publisher, body, strlen(body), job_id, request_id) < 0)
            status = MW_EXIT_JOB_FAILED;
        else
            print_submitted(job_id, request_id, user_id, path);
        cJSON_free(body);
        cJSON_Delete(job);
    }
    fflush(stdout);
    mw_publisher_free(&publisher);
    cJSON_Delete(operations);
    return status;
}

const struct cli_command cli_cmd_submit = {
    .name = "submit",
    .usage = "[--op TYPE,... | --operations JSON] [--user-id N] FILE...",
    .summary = "publish one job per file (paths relative to the input root) and wait for the broker's confirm",
    .options = submit_options,
    .min_positional = 1,
    .max_positional = -1,
    .run = run_submit,
};
