/*
 * The v1 job message. Validation is strict about types and ranges of what is present and lenient about
 * what is absent, so the seed's {"user_id", "file_info"} keeps working. Each failure names the field, since
 * the reason travels to the dead-letter queue and to the report where a person will read it.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/mem.h>
#include <libavutil/random_seed.h>
#include <libavutil/sha.h>

#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/json.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/text.h"
#include "operation_internal.h"

/* Messages larger than this are not job descriptions but something else. */
#define MAX_MESSAGE_BYTES (256 * 1024)

static int invalid(char *err, size_t err_size, const char *fmt, ...) MW_PRINTF(3, 4);

static int invalid(char *err, size_t err_size, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    vsnprintf(err, err_size, fmt, args);
    va_end(args);
    return MW_ERR_INVALID_MESSAGE;
}

static int copy_string_field(const cJSON *obj, const char *name, char *dst, size_t size, int required, char *err,
                             size_t err_size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (!item || cJSON_IsNull(item))
        return required ? invalid(err, err_size, "file_info.%s is required", name) : 0;
    if (!cJSON_IsString(item))
        return invalid(err, err_size, "file_info.%s must be a string", name);
    if (strlen(item->valuestring) >= size)
        return invalid(err, err_size, "file_info.%s is too long", name);
    memcpy(dst, item->valuestring, strlen(item->valuestring) + 1);
    return 0;
}

static int parse_user_id(const cJSON *root, int64_t *user_id, char *err, size_t err_size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "user_id");
    double value;

    if (!item)
        return invalid(err, err_size, "%s is required", "user_id");
    if (!cJSON_IsNumber(item))
        return invalid(err, err_size, "%s must be a number", "user_id");
    value = item->valuedouble;
    /* Beyond 2^53 a JSON number no longer names one integer. */
    if (value < 1 || value > 9007199254740991.0 || value != floor(value))
        return invalid(err, err_size, "%s must be a positive integer", "user_id");
    *user_id = (int64_t)value;
    return 0;
}

static int parse_file_info(const cJSON *root, struct mw_job *job, char *err, size_t err_size)
{
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(root, "file_info");
    const char *reason = NULL;
    int ret;

    if (!info)
        return invalid(err, err_size, "%s is required", "file_info");
    if (!cJSON_IsObject(info))
        return invalid(err, err_size, "%s must be an object", "file_info");
    if ((ret = copy_string_field(info, "path", job->path, sizeof(job->path), 0, err, err_size)) < 0 ||
        (ret = copy_string_field(info, "url", job->url, sizeof(job->url), 0, err, err_size)) < 0 ||
        (ret = copy_string_field(info, "name", job->name, sizeof(job->name), 0, err, err_size)) < 0 ||
        (ret = copy_string_field(info, "content_type", job->content_type, sizeof(job->content_type), 0, err,
                                 err_size)) < 0)
        return ret;
    if (!job->path[0] && !job->url[0])
        return invalid(err, err_size, "%s needs a path or a url", "file_info");
    if (job->path[0] && job->url[0])
        return invalid(err, err_size, "%s has both path and url; give one", "file_info");
    if (job->path[0] && mw_path_check_text(job->path, &reason) < 0)
        return invalid(err, err_size, "file_info.path refused: %s", reason);
    if (job->url[0] && strncmp(job->url, "http://", 7) && strncmp(job->url, "https://", 8))
        return invalid(err, err_size, "%s must be an http:// or https:// URL", "file_info.url");
    return 0;
}

static int add_operation(struct mw_job *job, const char *type, const cJSON *params, char *err, size_t err_size)
{
    struct mw_operation *op;

    if (!mw_operation_find(type))
        return invalid(err, err_size, "operations: unknown type \"%.40s\"", type);
    if (job->operation_count >= MW_JOB_MAX_OPERATIONS)
        return invalid(err, err_size, "%s: too many operations", "operations");
    op = &job->operations[job->operation_count];
    op->params = params ? cJSON_Duplicate(params, 1) : cJSON_CreateObject();
    if (!op->params)
        return AVERROR(ENOMEM);
    snprintf(op->type, sizeof(op->type), "%s", type);
    job->operation_count++;
    return 0;
}

static int parse_operations(const cJSON *root, const struct mw_config *cfg, struct mw_job *job, char *err,
                            size_t err_size)
{
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "operations");
    const cJSON *op;
    int ret;

    if (!ops || cJSON_IsNull(ops)) {
        char defaults[MW_CONFIG_NAME_MAX];
        char *save = NULL;

        memcpy(defaults, cfg->default_operations, sizeof(defaults));
        for (char *type = strtok_r(defaults, ", ", &save); type; type = strtok_r(NULL, ", ", &save))
            if ((ret = add_operation(job, type, NULL, err, err_size)) < 0)
                return ret;
        return 0;
    }
    if (!cJSON_IsArray(ops))
        return invalid(err, err_size, "%s must be an array", "operations");
    if (cJSON_GetArraySize(ops) == 0)
        return invalid(err, err_size, "%s must not be empty", "operations");
    cJSON_ArrayForEach(op, ops) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(op, "type");
        if (!cJSON_IsObject(op))
            return invalid(err, err_size, "%s: each entry must be an object", "operations");
        if (!cJSON_IsString(type))
            return invalid(err, err_size, "%s: each entry needs a string \"type\"", "operations");
        if ((ret = add_operation(job, type->valuestring, op, err, err_size)) < 0)
            return ret;
    }
    return 0;
}

/* A job id must be usable as a directory name; ids derived from the body are hex and always are. A message id
 * reaches here checked at the broker boundary (printable ASCII); it names the job only when it is also a
 * plain path component. */
static int set_job_id(const cJSON *root, const char *message_id, struct mw_job *job, char *err, size_t err_size)
{
    const cJSON *given = cJSON_GetObjectItemCaseSensitive(root, "job_id");
    if (given) {
        if (!cJSON_IsString(given) || !mw_path_component_ok(given->valuestring) ||
            strlen(given->valuestring) >= sizeof(job->job_id))
            return invalid(err, err_size, "%s must be 1-79 characters of [A-Za-z0-9._-]", "job_id");
        snprintf(job->job_id, sizeof(job->job_id), "%s", given->valuestring);
        return 0;
    }
    if (message_id && mw_path_component_ok(message_id) && strlen(message_id) < sizeof(job->job_id)) {
        snprintf(job->job_id, sizeof(job->job_id), "%s", message_id);
        return 0;
    }
    snprintf(job->job_id, sizeof(job->job_id), "%.32s", job->digest);
    return 0;
}

int mw_job_digest(const char *body, size_t length, char digest[MW_JOB_DIGEST_SIZE])
{
    struct AVSHA *sha = av_sha_alloc();
    uint8_t hash[32];

    if (!sha)
        return AVERROR(ENOMEM);
    av_sha_init(sha, 256);
    av_sha_update(sha, (const uint8_t *)body, length);
    av_sha_final(sha, hash);
    av_free(sha);
    for (int i = 0; i < 32; i++)
        snprintf(digest + 2 * i, 3, "%02x", hash[i]);
    return 0;
}

static void set_request_id(const char *request_id, const char *job_id, struct mw_job *job)
{
    if (request_id && *request_id &&
        mw_text_check(request_id, strlen(request_id), sizeof(job->request_id) - 1, MW_TEXT_ID, NULL) == 0) {
        snprintf(job->request_id, sizeof(job->request_id), "%s", request_id);
        return;
    }
    /* Generated ids still say which job they belong to, which helps when grepping a Data Service log. */
    snprintf(job->request_id, sizeof(job->request_id), "mw-%.40s-%08" PRIx32, job_id, av_get_random_seed());
}

int mw_job_parse(const char *body, size_t length, const char *message_id, const char *request_id,
                 const struct mw_config *cfg, struct mw_job **out, int64_t *user_id_out, char *err, size_t err_size)
{
    struct mw_job *job = NULL;
    cJSON *root = NULL;
    int64_t user_id = -1;
    int ret;

    *out = NULL;
    if (user_id_out)
        *user_id_out = -1;
    if (length > MAX_MESSAGE_BYTES)
        return invalid(err, err_size, "message is larger than %s", "256 KiB");
    ret = mw_json_parse_strict(body, length, MW_JSON_KEEP_ON_CONTENT_ERROR, &root, err, err_size);
    if (ret < 0) {
        /* A refused string in a sound document: the refusal can still be reported to its user. */
        char ignored[8];
        if (root && user_id_out && parse_user_id(root, &user_id, ignored, sizeof(ignored)) == 0)
            *user_id_out = user_id;
        goto end;
    }
    if (!cJSON_IsObject(root)) {
        ret = invalid(err, err_size, "%s", "message body must be a JSON object");
        goto end;
    }
    ret = parse_user_id(root, &user_id, err, err_size);
    if (ret < 0)
        goto end;
    if (user_id_out)
        *user_id_out = user_id;
    job = av_mallocz(sizeof(*job));
    if (!job) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    job->user_id = user_id;
    job->input_fd = -1;
    if ((ret = mw_job_digest(body, length, job->digest)) < 0 ||
        (ret = set_job_id(root, message_id, job, err, err_size)) < 0 ||
        (ret = parse_file_info(root, job, err, err_size)) < 0 ||
        (ret = parse_operations(root, cfg, job, err, err_size)) < 0)
        goto end;
    set_request_id(request_id, job->job_id, job);
    *out = job;
    job = NULL;
end:
    if (ret == AVERROR(ENOMEM))
        snprintf(err, err_size, "out of memory");
    mw_job_free(&job);
    cJSON_Delete(root);
    return ret;
}

int mw_job_check_default_operations(const struct mw_config *cfg, char *err, size_t err_size)
{
    struct mw_job *job = av_mallocz(sizeof(*job));
    cJSON *no_operations = cJSON_CreateObject();
    char reason[256] = "";
    int ret;

    if (!job || !no_operations)
        ret = AVERROR(ENOMEM);
    else if ((ret = parse_operations(no_operations, cfg, job, reason, sizeof(reason))) >= 0 && !job->operation_count)
        ret = invalid(reason, sizeof(reason), "%s", "names no operation");
    if (ret == AVERROR(ENOMEM))
        snprintf(err, err_size, "out of memory");
    else if (ret < 0)
        snprintf(err, err_size, "MW_DEFAULT_OPERATIONS: %s", reason);
    mw_job_free(&job);
    cJSON_Delete(no_operations);
    return ret;
}

void mw_job_free(struct mw_job **pjob)
{
    struct mw_job *job = pjob ? *pjob : NULL;

    if (!job)
        return;
    for (int i = 0; i < job->operation_count; i++)
        cJSON_Delete(job->operations[i].params);
    av_free(job);
    *pjob = NULL;
}
