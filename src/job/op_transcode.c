/*
 * The "transcode" operation: {"type": "transcode", "preset": "web", "renditions": [1080, 720, 480],
 * "hls": true, "remux": true}. Every field is optional: the preset defaults to "web", the renditions to the
 * preset's ladder, hls to false, remux (the no-re-encode fast path when the upload allows it) to true.
 */
#include <math.h>
#include <stdio.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/transcode.h"
#include "op_params_internal.h"
#include "operation_internal.h"

/* Reads the parameters into opt (whose defaults the caller set), the same way for validation and for the run. */
static int read_params(const cJSON *params, struct mw_transcode_options *opt, char *err, size_t err_size)
{
    const cJSON *renditions = cJSON_GetObjectItemCaseSensitive(params, "renditions");
    const char *preset = "web";
    const cJSON *item;
    char reason[96];
    int ret;

    if ((ret = mw_param_string(params, "transcode", "preset", &preset, err, err_size)) < 0 ||
        (ret = mw_param_bool(params, "transcode", "hls", &opt->hls, err, err_size)) < 0 ||
        (ret = mw_param_bool(params, "transcode", "remux", &opt->allow_remux, err, err_size)) < 0)
        return ret;
    if (!(opt->preset = mw_preset_find(preset)))
        return mw_param_invalid("transcode", "preset", "unknown preset (known: \"web\")", err, err_size);
    if (!renditions || cJSON_IsNull(renditions))
        return 0;
    if (!cJSON_IsArray(renditions) || cJSON_GetArraySize(renditions) < 1 ||
        cJSON_GetArraySize(renditions) > MW_TRANSCODE_MAX_RENDITIONS) {
        snprintf(reason, sizeof(reason), "must be an array of 1 to %d heights", MW_TRANSCODE_MAX_RENDITIONS);
        return mw_param_invalid("transcode", "renditions", reason, err, err_size);
    }
    cJSON_ArrayForEach(item, renditions) {
        if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
            item->valuedouble < MW_TRANSCODE_MIN_HEIGHT || item->valuedouble > MW_TRANSCODE_MAX_HEIGHT) {
            snprintf(reason, sizeof(reason), "each height must be a whole number from %d to %d",
                     MW_TRANSCODE_MIN_HEIGHT, MW_TRANSCODE_MAX_HEIGHT);
            return mw_param_invalid("transcode", "renditions", reason, err, err_size);
        }
        opt->heights[opt->height_count++] = (int)item->valuedouble;
    }
    return 0;
}

static int validate_transcode(const cJSON *params, char *err, size_t err_size)
{
    struct mw_transcode_options opt = {.allow_remux = 1};

    return read_params(params, &opt, err, err_size);
}

/* Transcode progress as a share of the whole job, which may run other operations before and after. */
static void forward_progress(void *opaque, const struct mw_progress *progress)
{
    const struct mw_job_context *ctx = opaque;
    struct mw_progress job_progress = *progress;
    int count = ctx->job->operation_count > 0 ? ctx->job->operation_count : 1;

    job_progress.percent = (ctx->operation_index * 100.0 + progress->percent) / count;
    ctx->progress(ctx->progress_opaque, &job_progress);
}

static int record_outputs(struct mw_job_context *ctx, const struct mw_transcode_result *result)
{
    for (int i = 0; i < result->count; i++) {
        const struct mw_transcode_output *o = &result->outputs[i];
        cJSON *out = mw_job_add_output(ctx, o->type, o->name);

        if (!out || (o->height && (!cJSON_AddNumberToObject(out, "width", o->width) ||
                                   !cJSON_AddNumberToObject(out, "height", o->height))) ||
            !cJSON_AddNumberToObject(out, "duration", o->duration_s) ||
            !cJSON_AddStringToObject(out, "codec", o->codec) ||
            !cJSON_AddBoolToObject(out, "remuxed", result->remuxed))
            return AVERROR(ENOMEM);
    }
    return 0;
}

static int charge_transcode(struct mw_job_context *ctx, const cJSON *params)
{
    struct mw_transcode_options options = {.allow_remux = 1};
    int ret = read_params(params, &options, ctx->error_detail, sizeof(ctx->error_detail));
    int64_t bytes;

    if (ret < 0)
        return ret;
    bytes = mw_transcode_bytes_at_caps(ctx->probe, &options);
    /* A source the ladder cannot size fails in the transcode itself, with the pipeline's own reason. */
    return bytes < 0 ? 0 : mw_job_charge_bytes(ctx, "transcode", bytes);
}

static int run_transcode(struct mw_job_context *ctx, const cJSON *params)
{
    struct mw_transcode_options options = {
        .allow_remux = 1,
        .threads = mw_config_codec_threads(ctx->cfg),
        .limits = &ctx->cfg->limits,
        .progress = ctx->progress ? forward_progress : NULL,
        .progress_opaque = ctx,
    };
    struct mw_transcode_result *result = NULL;
    struct mw_input *in = NULL;
    int ret = read_params(params, &options, ctx->error_detail, sizeof(ctx->error_detail));

    if (ret < 0)
        return ret;
    /* The job's shared input may have been read by an earlier operation; the pipeline needs the start. */
    ret = mw_job_output_dir(ctx);
    if (ret < 0)
        goto end;
    ret = mw_job_open_input(ctx, &in);
    if (ret < 0)
        goto end;
    result = av_mallocz(sizeof(*result));
    if (!result) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = mw_transcode_run(in, ctx->probe, ctx->output_dir, &options, result);
    if (ret < 0) {
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "%s", result->detail);
        goto end;
    }
    ret = record_outputs(ctx, result);
end:
    av_free(result);
    mw_input_close(&in);
    return ret;
}

const struct mw_operation_handler mw_op_transcode = {
    .type = "transcode",
    .writes_files = 1,
    .validate = validate_transcode,
    .charge = charge_transcode,
    .run = run_transcode,
};
