/*
 * Job operation "thumbnail": {"type": "thumbnail", "at": "50%" | seconds, "width": N, "height": N,
 * "fit": "contain" | "cover", "upscale": bool, "select": "keyframe" | "exact" | "best",
 * "format": "jpeg" | "png" | "webp", "quality": 1..100, "sizes": [{"width": N, "height": N}, ...]}.
 * Every field is optional (50%, best, jpeg, display size). With "sizes", the same decoded frame is
 * written once per size. Outputs are thumbnail.<ext> (the first size, the job's primary output) and
 * thumbnail-<n>.<ext> for the others.
 */
#include <stdio.h>
#include <string.h>

#include "mediaworker/error.h"
#include "mediaworker/picture.h"
#include "mediaworker/thumbnail.h"
#include "op_params_internal.h"
#include "operation_internal.h"

struct thumbnail_params {
    struct mw_thumbnail_request req;
    struct mw_thumbnail_output outputs[MW_THUMBNAIL_MAX_SIZES];
    char names[MW_THUMBNAIL_MAX_SIZES][64];
};

static int parse_size(const cJSON *obj, const char *op, struct mw_size_request *size, char *err, size_t err_size)
{
    const char *fit = NULL;
    int ret;

    if ((ret = mw_param_int(obj, op, "width", 1, MW_THUMBNAIL_MAX_SIDE, &size->width, err, err_size)) < 0 ||
        (ret = mw_param_int(obj, op, "height", 1, MW_THUMBNAIL_MAX_SIDE, &size->height, err, err_size)) < 0 ||
        (ret = mw_param_bool(obj, op, "upscale", &size->upscale, err, err_size)) < 0 ||
        (ret = mw_param_string(obj, op, "fit", &fit, err, err_size)) < 0)
        return ret;
    if (fit && strcmp(fit, "contain") && strcmp(fit, "cover"))
        return mw_param_invalid(op, "fit", "must be \"contain\" or \"cover\"", err, err_size);
    if (fit)
        size->fit = strcmp(fit, "cover") ? MW_FIT_CONTAIN : MW_FIT_COVER;
    return 0;
}

static int parse_position(const cJSON *params, struct mw_position *at, char *err, size_t err_size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(params, "at");

    if (!item || cJSON_IsNull(item))
        return mw_position_parse("50%", at);
    if (cJSON_IsNumber(item) && item->valuedouble >= 0 && item->valuedouble < 1e7) {
        at->value = item->valuedouble;
        at->percent = 0;
        return 0;
    }
    if (cJSON_IsString(item) && mw_position_parse(item->valuestring, at) >= 0)
        return 0;
    return mw_param_invalid("thumbnail", "at", "must be seconds (a number or \"hh:mm:ss\") or a percentage like \"50%\"",
                            err, err_size);
}

static int parse_sizes(const cJSON *params, struct thumbnail_params *p, const struct mw_size_request *base,
                       char *err, size_t err_size)
{
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(params, "sizes");
    const cJSON *item;
    char reason[96];
    int ret;

    p->req.output_count = 0;
    if (!sizes || cJSON_IsNull(sizes)) {
        p->outputs[p->req.output_count++].size = *base;
        return 0;
    }
    if (!cJSON_IsArray(sizes) || cJSON_GetArraySize(sizes) < 1 || cJSON_GetArraySize(sizes) > MW_THUMBNAIL_MAX_SIZES) {
        snprintf(reason, sizeof(reason), "must be an array of 1 to %d {\"width\", \"height\"} objects",
                 MW_THUMBNAIL_MAX_SIZES);
        return mw_param_invalid("thumbnail", "sizes", reason, err, err_size);
    }
    cJSON_ArrayForEach(item, sizes) {
        struct mw_size_request *size = &p->outputs[p->req.output_count++].size;
        if (!cJSON_IsObject(item))
            return mw_param_invalid("thumbnail", "sizes", "entries must be objects", err, err_size);
        *size = *base;
        if ((ret = parse_size(item, "thumbnail.sizes[]", size, err, err_size)) < 0)
            return ret;
    }
    return 0;
}

static int parse_params(const cJSON *params, struct thumbnail_params *p, char *err, size_t err_size)
{
    struct mw_size_request base = {0};
    enum mw_image_format format = MW_IMAGE_JPEG;
    const char *select = NULL, *format_name = NULL;
    int quality = 0;
    int ret;

    memset(p, 0, sizeof(*p));
    p->req.select = MW_SELECT_BEST;
    if (params && !cJSON_IsObject(params))
        return mw_param_invalid("thumbnail", "params", "must be an object", err, err_size);
    if ((ret = parse_position(params, &p->req.at, err, err_size)) < 0 ||
        (ret = parse_size(params, "thumbnail", &base, err, err_size)) < 0 ||
        (ret = mw_param_string(params, "thumbnail", "select", &select, err, err_size)) < 0 ||
        (ret = mw_param_string(params, "thumbnail", "format", &format_name, err, err_size)) < 0 ||
        (ret = mw_param_int(params, "thumbnail", "quality", 1, 100, &quality, err, err_size)) < 0)
        return ret;
    if (select && mw_select_parse(select, &p->req.select) < 0)
        return mw_param_invalid("thumbnail", "select", "must be \"keyframe\", \"exact\" or \"best\"", err, err_size);
    if (format_name && mw_image_format_parse(format_name, &format) < 0)
        return mw_param_invalid("thumbnail", "format", "must be \"jpeg\", \"png\" or \"webp\"", err, err_size);
    ret = parse_sizes(params, p, &base, err, err_size);
    if (ret < 0)
        return ret;
    p->req.outputs = p->outputs;
    for (int i = 0; i < p->req.output_count; i++) {
        p->outputs[i].format = format;
        p->outputs[i].quality = quality;
        if (i == 0)
            snprintf(p->names[i], sizeof(p->names[i]), "thumbnail.%s", mw_image_format_extension(format));
        else
            snprintf(p->names[i], sizeof(p->names[i]), "thumbnail-%d.%s", i, mw_image_format_extension(format));
    }
    return 0;
}

static int validate_thumbnail(const cJSON *params, char *err, size_t err_size)
{
    struct thumbnail_params p;

    return parse_params(params, &p, err, err_size);
}

/* What each size will be on this input (upscaling only where asked), against the job's pixel budget. */
static int charge_thumbnail(struct mw_job_context *ctx, const cJSON *params)
{
    struct thumbnail_params p;
    int width, height;
    int ret = parse_params(params, &p, ctx->error_detail, sizeof(ctx->error_detail));

    if (ret < 0)
        return ret;
    mw_job_display_size(ctx, &width, &height);
    for (int i = 0; i < p.req.output_count; i++) {
        const struct mw_size_request *size = &p.outputs[i].size;
        struct mw_fit_result fit = {.width = size->width, .height = size->height};
        char field[48];

        if (width > 0 && height > 0 && (ret = mw_picture_fit(width, height, size, &fit)) < 0)
            return ret;
        if (params && cJSON_GetObjectItemCaseSensitive(params, "sizes"))
            snprintf(field, sizeof(field), "thumbnail.sizes[%d]", i);
        else
            snprintf(field, sizeof(field), "thumbnail");
        if ((ret = mw_job_charge_pixels(ctx, field, fit.width, fit.height, 1)) < 0)
            return ret;
    }
    return 0;
}

static int record_outputs(struct mw_job_context *ctx, const struct thumbnail_params *p,
                          const struct mw_thumbnail_result *result)
{
    for (int i = 0; i < p->req.output_count; i++) {
        const struct mw_thumbnail_output *o = &p->outputs[i];
        cJSON *js = mw_job_add_output(ctx, "thumbnail", p->names[i]);
        const cJSON *path;

        if (!js || !cJSON_AddStringToObject(js, "format", mw_image_format_name(o->format)) ||
            !cJSON_AddNumberToObject(js, "width", o->width) || !cJSON_AddNumberToObject(js, "height", o->height) ||
            !cJSON_AddNumberToObject(js, "time", (double)result->time_us / 1e6) ||
            !cJSON_AddNumberToObject(js, "score", (double)(int)(result->score.score * 1000 + 0.5) / 1000) ||
            !cJSON_AddStringToObject(js, "select", mw_select_name(p->req.select)) ||
            !cJSON_AddStringToObject(js, "source", result->source))
            return AVERROR(ENOMEM);
        /* The poster represents the upload, whatever order the operations came in. */
        path = cJSON_GetObjectItemCaseSensitive(js, "path");
        if (i == 0 && cJSON_IsString(path))
            snprintf(ctx->primary_path, sizeof(ctx->primary_path), "%s", path->valuestring);
    }
    return 0;
}

static int run_thumbnail(struct mw_job_context *ctx, const cJSON *params)
{
    struct thumbnail_params p;
    struct mw_thumbnail_result result = {0};
    char paths[MW_THUMBNAIL_MAX_SIZES][2048];
    int ret = parse_params(params, &p, ctx->error_detail, sizeof(ctx->error_detail));

    if (ret < 0 || (ret = mw_job_output_dir(ctx)) < 0)
        return ret;
    p.req.threads = mw_config_codec_threads(ctx->cfg);
    p.req.hw_device = ctx->hw_device;
    for (int i = 0; i < p.req.output_count; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", ctx->output_dir, p.names[i]);
        p.outputs[i].path = paths[i];
    }
    ret = mw_thumbnail_make(ctx->input, ctx->probe, &p.req, &result);
    ctx->decoded_on_device |= result.decoded_on_device;
    if (ret < 0) {
        if (ret == MW_ERR_NO_PICTURE)
            snprintf(ctx->error_detail, sizeof(ctx->error_detail), "no video stream, image or cover art");
        return ret;
    }
    return record_outputs(ctx, &p, &result);
}

const struct mw_operation_handler mw_op_thumbnail = {
    .type = "thumbnail",
    .writes_files = 1,
    .validate = validate_thumbnail,
    .charge = charge_thumbnail,
    .run = run_thumbnail,
};
