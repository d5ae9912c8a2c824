/*
 * Job operation "storyboard": {"type": "storyboard", "interval": seconds | "count": N, "tile_width": W,
 * "columns": C, "rows": R, "format": "jpeg" | "png" | "webp", "quality": 1..100}. Defaults: every 10 s,
 * 160 px tiles, 10 columns, 10 rows per sheet, JPEG. Outputs: storyboard-<n>.<ext> sheets
 * ("storyboard_sheet"), storyboard.vtt ("storyboard", with the tile geometry) and storyboard.json
 * ("storyboard_index").
 */
#include <stdio.h>
#include <string.h>

#include "mediaworker/error.h"
#include "mediaworker/storyboard.h"
#include "op_params_internal.h"
#include "operation_internal.h"

static int parse_params(const cJSON *params, struct mw_storyboard_request *req, char *err, size_t err_size)
{
    const char *format = NULL;
    int has_interval = cJSON_IsObject(params) && cJSON_GetObjectItemCaseSensitive(params, "interval") &&
                       !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(params, "interval"));
    int ret;

    memset(req, 0, sizeof(*req));
    req->interval_s = 10;
    if (params && !cJSON_IsObject(params))
        return mw_param_invalid("storyboard", "params", "must be an object", err, err_size);
    if ((ret = mw_param_number(params, "storyboard", "interval", 0.1, 86400, &req->interval_s, err, err_size)) < 0 ||
        (ret = mw_param_int(params, "storyboard", "count", 1, MW_STORYBOARD_MAX_TILES, &req->count, err, err_size)) < 0 ||
        (ret = mw_param_int(params, "storyboard", "tile_width", 16, 1920, &req->tile_width, err, err_size)) < 0 ||
        (ret = mw_param_int(params, "storyboard", "columns", 1, 100, &req->columns, err, err_size)) < 0 ||
        (ret = mw_param_int(params, "storyboard", "rows", 1, 100, &req->rows, err, err_size)) < 0 ||
        (ret = mw_param_int(params, "storyboard", "quality", 1, 100, &req->quality, err, err_size)) < 0 ||
        (ret = mw_param_string(params, "storyboard", "format", &format, err, err_size)) < 0)
        return ret;
    if (req->count && has_interval)
        return mw_param_invalid("storyboard", "count", "cannot be given together with interval", err, err_size);
    if (req->count)
        req->interval_s = 0;
    if (format && mw_image_format_parse(format, &req->format) < 0)
        return mw_param_invalid("storyboard", "format", "must be \"jpeg\", \"png\" or \"webp\"", err, err_size);
    return 0;
}

static int validate_storyboard(const cJSON *params, char *err, size_t err_size)
{
    struct mw_storyboard_request req;

    return parse_params(params, &req, err, err_size);
}

static int record_outputs(struct mw_job_context *ctx, const struct mw_storyboard_request *req,
                          const struct mw_storyboard_result *r)
{
    const struct mw_storyboard_layout *l = &r->layout;
    cJSON *js;

    for (int s = 0; s < l->sheet_count; s++) {
        char name[300];
        mw_storyboard_sheet_name("storyboard", s, req->format, name, sizeof(name));
        js = mw_job_add_output(ctx, "storyboard_sheet", name);
        if (!js || !cJSON_AddNumberToObject(js, "width", r->sheet_width[s]) ||
            !cJSON_AddNumberToObject(js, "height", r->sheet_height[s]) ||
            !cJSON_AddStringToObject(js, "format", mw_image_format_name(req->format)))
            return AVERROR(ENOMEM);
    }
    js = mw_job_add_output(ctx, "storyboard", r->vtt_name);
    if (!js || !cJSON_AddNumberToObject(js, "tile_count", l->tile_count) ||
        !cJSON_AddNumberToObject(js, "tile_width", l->tile_width) ||
        !cJSON_AddNumberToObject(js, "tile_height", l->tile_height) ||
        !cJSON_AddNumberToObject(js, "columns", l->columns) || !cJSON_AddNumberToObject(js, "rows", l->rows) ||
        !cJSON_AddNumberToObject(js, "interval", l->interval_s) ||
        !cJSON_AddNumberToObject(js, "sheet_count", l->sheet_count))
        return AVERROR(ENOMEM);
    if (!mw_job_add_output(ctx, "storyboard_index", r->index_name))
        return AVERROR(ENOMEM);
    return 0;
}

/* Tiles done, as the job's progress: this operation's share of the whole job. */
static void report_progress(void *opaque, int tiles_done, int tile_count)
{
    struct mw_job_context *ctx = opaque;
    struct mw_progress progress = {.phase = "storyboard", .done = tiles_done, .total = tile_count, .eta_s = -1};
    int operations = ctx->job->operation_count > 0 ? ctx->job->operation_count : 1;

    progress.percent = 100.0 * (ctx->operation_index + (double)tiles_done / tile_count) / operations;
    ctx->progress(ctx->progress_opaque, &progress);
}

/* The tiles the storyboard will hold on this input, against the job's pixel budget. */
static int charge_storyboard(struct mw_job_context *ctx, const cJSON *params)
{
    struct mw_storyboard_request req;
    int width, height, tile_width, tile_height;
    int64_t tiles;
    int ret = parse_params(params, &req, ctx->error_detail, sizeof(ctx->error_detail));

    if (ret < 0)
        return ret;
    mw_job_display_size(ctx, &width, &height);
    if (width <= 0 || height <= 0 || ctx->probe->duration_us == AV_NOPTS_VALUE || ctx->probe->duration_us <= 0)
        return 0;
    tile_width = req.tile_width > 0 ? req.tile_width : MW_STORYBOARD_DEFAULT_TILE_WIDTH;
    tile_height = (int)((int64_t)tile_width * height / width);
    tiles = req.count ? req.count : (int64_t)(ctx->probe->duration_us / (req.interval_s * 1e6)) + 1;
    return mw_job_charge_pixels(ctx, "storyboard", tile_width, tile_height,
                                tiles < MW_STORYBOARD_MAX_TILES ? tiles : MW_STORYBOARD_MAX_TILES);
}

static int run_storyboard(struct mw_job_context *ctx, const cJSON *params)
{
    struct mw_storyboard_request req;
    struct mw_storyboard_result result = {0};
    int ret = parse_params(params, &req, ctx->error_detail, sizeof(ctx->error_detail));

    if (ret < 0 || (ret = mw_job_output_dir(ctx)) < 0)
        return ret;
    req.dir = ctx->output_dir;
    req.threads = mw_config_codec_threads(ctx->cfg);
    req.hw_device = ctx->hw_device;
    if (ctx->progress) {
        req.progress = report_progress;
        req.progress_opaque = ctx;
    }
    ret = mw_storyboard_make(ctx->input, ctx->probe, &req, &result);
    ctx->decoded_on_device |= result.decoded_on_device;
    if (ret == MW_ERR_NO_PICTURE)
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "a storyboard needs a video stream");
    else if (ret == AVERROR(EINVAL))
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "a storyboard needs a known duration");
    if (ret >= 0)
        ret = record_outputs(ctx, &req, &result);
    mw_storyboard_result_free(&result);
    return ret;
}

const struct mw_operation_handler mw_op_storyboard = {
    .type = "storyboard",
    .writes_files = 1,
    .needs_video = 1,
    .validate = validate_storyboard,
    .charge = charge_storyboard,
    .run = run_storyboard,
};
