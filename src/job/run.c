/*
 * Running a job in this process: resolve the input, open and probe it once, run each operation, and build
 * the report's new_file object. The worker calls this inside a job process; `mediaworker run` and
 * `--isolation none` call it directly.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libavutil/rational.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/json.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "operation_internal.h"

static const struct mw_operation_handler *const handlers[] = {
    &mw_op_probe,
    &mw_op_thumbnail,
    &mw_op_storyboard,
    &mw_op_transcode,
};

const struct mw_operation_handler *mw_operation_find(const char *type)
{
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (!strcmp(handlers[i]->type, type))
            return handlers[i];
    return NULL;
}

cJSON *mw_job_add_output(struct mw_job_context *ctx, const char *type, const char *file_name)
{
    char full[2048];
    char relative[1024];
    struct stat st;
    cJSON *out = cJSON_CreateObject();

    if (!out)
        return NULL;
    snprintf(full, sizeof(full), "%s/%s", ctx->output_dir, file_name);
    snprintf(relative, sizeof(relative), "%lld/%s/%s", (long long)ctx->job->user_id, ctx->job->job_id, file_name);
    if (!cJSON_AddStringToObject(out, "type", type) || !cJSON_AddStringToObject(out, "path", relative) ||
        !cJSON_AddNumberToObject(out, "bytes", stat(full, &st) == 0 ? (double)st.st_size : 0) ||
        !cJSON_AddItemToArray(ctx->outputs, out)) {
        cJSON_Delete(out);
        return NULL;
    }
    if (!ctx->primary_path[0] && strcmp(type, "probe"))
        snprintf(ctx->primary_path, sizeof(ctx->primary_path), "%s", relative);
    return out;
}

static int add_error(cJSON *report, int err, const char *detail)
{
    cJSON *error = cJSON_AddObjectToObject(report, "error");
    char message[512];

    if (!error)
        return AVERROR(ENOMEM);
    if (detail && *detail)
        snprintf(message, sizeof(message), "%s: %s", mw_err2str(err), detail);
    else
        snprintf(message, sizeof(message), "%s", mw_err2str(err));
    if (!cJSON_AddStringToObject(error, "code", mw_error_code_name(err)) ||
        !cJSON_AddStringToObject(error, "message", message) ||
        !cJSON_AddBoolToObject(error, "permanent", mw_error_class(err) != MW_ERROR_CLASS_TRANSIENT))
        return AVERROR(ENOMEM);
    return 0;
}

/* Best effort: when memory runs out here the report is incomplete, and the caller sees the job's error. */
static void finish_report(cJSON *report, int ret, const char *primary_path, const char *detail, int64_t started)
{
    static const char *const written_here[] = {"timings", "status", "path", "error"};

    /* A job whose result could not be committed is finished again as failed. */
    for (size_t i = 0; i < sizeof(written_here) / sizeof(written_here[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(report, written_here[i]);
    cJSON *timings = cJSON_AddObjectToObject(report, "timings");

    if (timings)
        cJSON_AddNumberToObject(timings, "total_s", (double)(av_gettime_relative() - started) / 1e6);
    cJSON_AddStringToObject(report, "status", ret < 0 ? "failed" : "processed");
    if (primary_path[0])
        cJSON_AddStringToObject(report, "path", primary_path);
    else
        cJSON_AddNullToObject(report, "path");
    if (ret < 0) {
        add_error(report, ret, detail);
        mw_log(MW_LOG_ERROR, "job", "job failed: %s%s%s", mw_err2str(ret), detail[0] ? ": " : "", detail);
    }
    /* Strings from the file's metadata may be any bytes; what is reported is valid UTF-8 JSON. */
    mw_json_make_valid_utf8(report);
}

/* A failed job's outputs were removed: its report names none. */
static void forget_outputs(cJSON *report)
{
    cJSON *outputs = cJSON_GetObjectItemCaseSensitive(report, "outputs");

    while (cJSON_GetArraySize(outputs) > 0)
        cJSON_DeleteItemFromArray(outputs, 0);
    cJSON_DeleteItemFromObjectCaseSensitive(report, "path");
    cJSON_AddNullToObject(report, "path");
}

/* Where the input came from: the upload's path, or its URL. */
static const char *input_source(const struct mw_job *job)
{
    return job->path[0] ? job->path : job->url;
}

/* The head every report starts with, {job_id, name, outputs: []}; NULL on ENOMEM. */
static cJSON *new_report(const struct mw_job *job)
{
    cJSON *report = cJSON_CreateObject();

    if (!report || !cJSON_AddStringToObject(report, "job_id", job->job_id) ||
        !cJSON_AddStringToObject(report, "name", job->name[0] ? job->name : input_source(job)) ||
        !cJSON_AddArrayToObject(report, "outputs")) {
        cJSON_Delete(report);
        return NULL;
    }
    return report;
}

cJSON *mw_job_failure_report(const struct mw_job *job, int err, const char *detail)
{
    cJSON *report = new_report(job);

    if (!report)
        return NULL;
    finish_report(report, err, "", detail ? detail : "", av_gettime_relative());
    return report;
}

/* Every operation's parameters are checked before any work starts (mw_job_parse knew the types). */
static int validate_operations(const struct mw_job *job, char *err, size_t err_size)
{
    for (int i = 0; i < job->operation_count; i++) {
        const struct mw_operation_handler *handler = mw_operation_find(job->operations[i].type);
        int ret;

        if (handler->validate && (ret = handler->validate(job->operations[i].params, err, err_size)) < 0)
            return ret;
    }
    return 0;
}

/* A path input resolves under the input root; a URL input was downloaded by the caller into scratch space. */
int mw_job_locate_input(const struct mw_config *cfg, const struct mw_job *job, char *input_path, size_t size,
                        char *detail, size_t detail_size)
{
    const char *reason = NULL;
    int ret;

    if (job->url[0]) {
        if (!job->local_input[0]) {
            snprintf(detail, detail_size, "URL inputs must be downloaded before the job runs");
            return MW_ERR_UNSUPPORTED_OP;
        }
        snprintf(input_path, size, "%s", job->local_input);
        return 0;
    }
    ret = mw_path_resolve(cfg->input_root, job->path, input_path, size, &reason);
    if (ret < 0)
        snprintf(detail, detail_size, "%.200s%s%s", job->path, reason ? ": " : "", reason ? reason : "");
    return ret;
}

int mw_job_output_path(const struct mw_config *cfg, const struct mw_job *job, char *dir, size_t size)
{
    if (snprintf(dir, size, "%s/%lld/%s", cfg->output_root, (long long)job->user_id, job->job_id) >= (int)size)
        return AVERROR(ENAMETOOLONG);
    return 0;
}

int mw_job_writes_outputs(const struct mw_job *job)
{
    for (int i = 0; i < job->operation_count; i++) {
        const struct mw_operation_handler *handler = mw_operation_find(job->operations[i].type);
        if (handler && handler->writes_files)
            return 1;
    }
    return 0;
}

int mw_job_open_input(struct mw_job_context *ctx, struct mw_input **in)
{
    if (ctx->job->input_fd >= 0)
        return mw_input_open_fd(in, ctx->job->input_fd, &ctx->cfg->limits, ctx->deadline);
    return mw_input_open_file(in, ctx->input_path, &ctx->cfg->limits, ctx->deadline);
}

int mw_job_charge_pixels(struct mw_job_context *ctx, const char *field, int64_t width, int64_t height,
                         int64_t count)
{
    const struct mw_limits *limits = &ctx->cfg->limits;
    int64_t each = width * height;

    if (each > limits->max_pixels) {
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "%s: %" PRId64 "x%" PRId64 " is over MW_MAX_PIXELS=%"
                 PRId64, field, width, height, limits->max_pixels);
        return MW_ERR_TOO_MANY_PIXELS;
    }
    ctx->output_pixels += each * count;
    if (ctx->output_pixels > limits->max_output_pixels) {
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "%s: the job's images would hold %" PRId64
                 " pixels, over MW_MAX_OUTPUT_PIXELS=%" PRId64, field, ctx->output_pixels, limits->max_output_pixels);
        return MW_ERR_TOO_MANY_PIXELS;
    }
    return 0;
}

int mw_job_charge_bytes(struct mw_job_context *ctx, const char *field, int64_t bytes)
{
    const struct mw_limits *limits = &ctx->cfg->limits;

    ctx->output_bytes += bytes;
    if (ctx->output_bytes > limits->max_output_bytes) {
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "%s: the job's outputs would hold up to %" PRId64
                 " MiB at their bitrate caps, over MW_MAX_OUTPUT_BYTES=%" PRId64, field, ctx->output_bytes >> 20,
                 limits->max_output_bytes);
        return MW_ERR_TOO_MANY_BYTES;
    }
    return 0;
}

int mw_job_display_size(const struct mw_job_context *ctx, int *width, int *height)
{
    const struct mw_probe_stream *st;
    double w, h;

    *width = *height = 0;
    if (!ctx->probe || ctx->probe->best_video < 0)
        return 0;
    st = &ctx->probe->streams[ctx->probe->best_video];
    w = st->width;
    h = st->height;
    if (st->display_aspect_ratio.num > 0 && st->display_aspect_ratio.den > 0 && h > 0)
        w = h * av_q2d(st->display_aspect_ratio);
    if (st->rotation == 90 || st->rotation == 270) {
        double swap = w;
        w = h;
        h = swap;
    }
    *width = (int)(w + 0.5);
    *height = (int)(h + 0.5);
    return 0;
}

/* Every operation's pixels and bytes, before the first one decodes anything. */
static int charge_operations(struct mw_job_context *ctx)
{
    for (int i = 0; i < ctx->job->operation_count; i++) {
        const struct mw_operation_handler *handler = mw_operation_find(ctx->job->operations[i].type);
        int ret = handler->charge ? handler->charge(ctx, ctx->job->operations[i].params) : 0;
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* True when some operation of the job can work on this input, so the ones that cannot are skipped. */
static int another_applies(const struct mw_job_context *ctx)
{
    for (int i = 0; i < ctx->job->operation_count; i++)
        if (!mw_operation_find(ctx->job->operations[i].type)->needs_video)
            return 1;
    return 0;
}

/* Records an operation that does not apply to this input: {"type", "reason"} in the report's "skipped". */
static int skip_operation(struct mw_job_context *ctx, const char *type, const char *reason)
{
    cJSON *skipped = cJSON_GetObjectItemCaseSensitive(ctx->report, "skipped");
    cJSON *entry = cJSON_CreateObject();

    if (!skipped)
        skipped = cJSON_AddArrayToObject(ctx->report, "skipped");
    if (!skipped || !entry || !cJSON_AddStringToObject(entry, "type", type) ||
        !cJSON_AddStringToObject(entry, "reason", reason) || !cJSON_AddItemToArray(skipped, entry)) {
        cJSON_Delete(entry);
        return AVERROR(ENOMEM);
    }
    mw_log(MW_LOG_INFO, "job", "operation %s skipped: %s", type, reason);
    return 0;
}

static int run_operations(struct mw_job_context *ctx)
{
    for (int i = 0; i < ctx->job->operation_count; i++) {
        const struct mw_operation *op = &ctx->job->operations[i];
        const struct mw_operation_handler *handler = mw_operation_find(op->type);
        int64_t started = av_gettime_relative();
        int ret;

        ctx->operation_index = i;
        if (handler->needs_video && ctx->probe->best_video < 0 && another_applies(ctx)) {
            ret = skip_operation(ctx, op->type, "the input has no video stream");
            if (ret < 0)
                return ret;
            continue;
        }
        mw_log(MW_LOG_DEBUG, "job", "operation %s started", op->type);
        ret = handler->run(ctx, op->params);
        if (ret >= 0 && av_gettime_relative() > ctx->deadline)
            ret = MW_ERR_DEADLINE;
        if (ret < 0)
            return ret;
        mw_log(MW_LOG_DEBUG, "job", "operation %s done in %.3f s", op->type,
               (double)(av_gettime_relative() - started) / 1e6);
    }
    return 0;
}

int mw_job_run(const struct mw_config *cfg, const struct mw_job *job, mw_progress_fn progress, void *opaque,
               cJSON **result)
{
    struct mw_job_context ctx = {.cfg = cfg, .job = job, .progress = progress, .progress_opaque = opaque,
                                 .marker_fd = -1};
    struct mw_probe *probe = NULL;
    char input_path[4096];
    char output_dir[2048];
    int64_t started = av_gettime_relative();
    cJSON *report = new_report(job);
    cJSON *probe_json = NULL;
    int hwaccel_chosen = 0;
    int ret;

    *result = report;
    if (!report)
        return AVERROR(ENOMEM);
    ctx.report = report;
    ctx.deadline = started + (int64_t)cfg->limits.job_deadline_s * 1000000;
    ctx.outputs = cJSON_GetObjectItemCaseSensitive(report, "outputs");
    ret = validate_operations(job, ctx.error_detail, sizeof(ctx.error_detail));
    if (ret < 0)
        goto end;
    ret = mw_job_locate_input(cfg, job, input_path, sizeof(input_path), ctx.error_detail, sizeof(ctx.error_detail));
    if (ret < 0)
        goto end;
    ctx.input_path = input_path;
    ret = mw_job_open_input(&ctx, &ctx.input);
    if (ret < 0) {
        snprintf(ctx.error_detail, sizeof(ctx.error_detail), "%.200s", input_source(job));
        goto end;
    }
    ret = mw_probe_input(ctx.input, &probe);
    if (ret < 0)
        goto end;
    ctx.probe = probe;
    probe_json = mw_probe_to_json(probe);
    if (!probe_json || !cJSON_AddItemToObject(report, "probe", probe_json)) {
        cJSON_Delete(probe_json);
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = mw_hwaccel_shared(cfg, &ctx.hw_device, &ctx.hwaccel);
    if (ret < 0)
        goto end;
    hwaccel_chosen = 1;
    ret = mw_job_output_path(cfg, job, output_dir, sizeof(output_dir));
    if (ret < 0)
        goto end;
    ctx.output_dir = output_dir;
    ret = charge_operations(&ctx);
    if (ret >= 0)
        ret = run_operations(&ctx);
end:
    if (hwaccel_chosen)
        mw_hwaccel_report(report, &ctx.hwaccel, ctx.decoded_on_device);
    av_buffer_unref(&ctx.hw_device);
    mw_input_close(&ctx.input);
    mw_probe_free(&probe);
    finish_report(report, ret, ctx.primary_path, ctx.error_detail, started);
    if (ret >= 0 && ctx.marker_fd >= 0 && (ret = mw_job_commit_result(&ctx)) < 0)
        finish_report(report, ret, "", ctx.error_detail, started);
    if (ret < 0 && mw_job_discard_unfinished(&ctx))
        forget_outputs(report);
    mw_job_release_output_dir(&ctx);
    return ret;
}
