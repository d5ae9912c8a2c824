/* mediaworker storyboard FILE -o DIR: sprite sheets, a WebVTT file and a JSON index in DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/time.h>

#include "cli_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/storyboard.h"

static const char *opt_output, *opt_interval, *opt_count, *opt_tile_width, *opt_columns, *opt_rows, *opt_format,
    *opt_quality;

static const struct cli_option storyboard_options[] = {
    {"--output", "-o", "DIR", &opt_output, NULL, "output directory (required)"},
    {"--interval", NULL, "S", &opt_interval, NULL, "seconds between tiles (default 10)"},
    {"--count", NULL, "N", &opt_count, NULL, "N tiles spread over the duration instead of --interval"},
    {"--tile-width", NULL, "W", &opt_tile_width, NULL, "tile width in pixels (default 160)"},
    {"--columns", NULL, "C", &opt_columns, NULL, "tiles per row (default 10)"},
    {"--rows", NULL, "R", &opt_rows, NULL, "rows per sheet (default 10)"},
    {"--format", "-f", "FMT", &opt_format, NULL, "jpeg (default), png or webp"},
    {"--quality", "-q", "N", &opt_quality, NULL, "1..100 (default 85)"},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};

/* Fills req from the options; -1 when valid, else the exit code. */
static int build_request(struct mw_storyboard_request *req)
{
    char *end = NULL;

    memset(req, 0, sizeof(*req));
    req->interval_s = 10;
    if (!opt_output || !*opt_output) {
        fprintf(stderr, "mediaworker storyboard: -o DIR is required\n");
        return MW_EXIT_USAGE;
    }
    if (opt_interval) {
        req->interval_s = strtod(opt_interval, &end);
        if (end == opt_interval || *end || !(req->interval_s >= 0.1 && req->interval_s <= 86400)) {
            fprintf(stderr, "mediaworker storyboard: invalid --interval\n");
            return MW_EXIT_USAGE;
        }
    }
    if (opt_count) {
        if (cli_parse_int(opt_count, 1, MW_STORYBOARD_MAX_TILES, &req->count) < 0 || opt_interval) {
            fprintf(stderr, "mediaworker storyboard: invalid --count (1..%d, not with --interval)\n",
                    MW_STORYBOARD_MAX_TILES);
            return MW_EXIT_USAGE;
        }
        req->interval_s = 0;
    }
    if ((opt_tile_width && cli_parse_int(opt_tile_width, 16, 1920, &req->tile_width) < 0) ||
        (opt_columns && cli_parse_int(opt_columns, 1, 100, &req->columns) < 0) ||
        (opt_rows && cli_parse_int(opt_rows, 1, 100, &req->rows) < 0) ||
        (opt_quality && cli_parse_int(opt_quality, 1, 100, &req->quality) < 0) ||
        (opt_format && mw_image_format_parse(opt_format, &req->format) < 0)) {
        fprintf(stderr, "mediaworker storyboard: invalid option value (see --help)\n");
        return MW_EXIT_USAGE;
    }
    req->dir = opt_output;
    return -1;
}

static cJSON *result_json(const char *input, const struct mw_storyboard_request *req,
                          const struct mw_storyboard_result *r)
{
    const struct mw_storyboard_layout *l = &r->layout;
    cJSON *root = cJSON_CreateObject();
    cJSON *sheets;
    char path[4096];

    if (!root || !cJSON_AddStringToObject(root, "file", input) ||
        !cJSON_AddNumberToObject(root, "tile_count", l->tile_count) ||
        !cJSON_AddNumberToObject(root, "tile_width", l->tile_width) ||
        !cJSON_AddNumberToObject(root, "tile_height", l->tile_height) ||
        !cJSON_AddNumberToObject(root, "columns", l->columns) ||
        !cJSON_AddNumberToObject(root, "interval", l->interval_s))
        goto fail;
    snprintf(path, sizeof(path), "%s/%s", req->dir, r->vtt_name);
    if (!cJSON_AddStringToObject(root, "vtt", path))
        goto fail;
    snprintf(path, sizeof(path), "%s/%s", req->dir, r->index_name);
    if (!cJSON_AddStringToObject(root, "index", path) || !(sheets = cJSON_AddArrayToObject(root, "sheets")))
        goto fail;
    for (int s = 0; s < l->sheet_count; s++) {
        char name[300];
        cJSON *js = cJSON_CreateObject();
        mw_storyboard_sheet_name("storyboard", s, req->format, name, sizeof(name));
        snprintf(path, sizeof(path), "%s/%s", req->dir, name);
        if (!js || !cJSON_AddItemToArray(sheets, js) || !cJSON_AddStringToObject(js, "path", path) ||
            !cJSON_AddNumberToObject(js, "width", r->sheet_width[s]) ||
            !cJSON_AddNumberToObject(js, "height", r->sheet_height[s]) ||
            !cJSON_AddNumberToObject(js, "bytes", (double)r->sheet_bytes[s]))
            goto fail;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

static int run_storyboard(const struct mw_config *cfg, int argc, char **argv)
{
    struct mw_storyboard_request req;
    struct mw_storyboard_result result = {0};
    struct mw_input *in = NULL;
    struct mw_probe *probe = NULL;
    int64_t deadline = av_gettime_relative() + (int64_t)cfg->limits.job_deadline_s * 1000000;
    cJSON *json = NULL;
    char *text = NULL;
    int ret = build_request(&req);

    (void)argc;
    if (ret >= 0)
        return ret;
    req.threads = mw_config_codec_threads(cfg);
    ret = mw_path_mkdirs(opt_output);
    if (ret >= 0)
        ret = mw_input_open_file(&in, argv[0], &cfg->limits, deadline);
    if (ret >= 0)
        ret = mw_probe_input(in, &probe);
    if (ret >= 0)
        ret = mw_storyboard_make(in, probe, &req, &result);
    if (ret >= 0 && (!(json = result_json(argv[0], &req, &result)) || !(text = cJSON_Print(json))))
        ret = AVERROR(ENOMEM);
    if (ret >= 0) {
        printf("%s\n", text);
    } else {
        mw_log(MW_LOG_ERROR, "storyboard", "%s: %s", argv[0], mw_err2str(ret));
        cli_print_failure(argv[0], ret, NULL);
    }
    cJSON_free(text);
    cJSON_Delete(json);
    mw_storyboard_result_free(&result);
    mw_probe_free(&probe);
    mw_input_close(&in);
    return ret < 0 ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_storyboard = {
    .name = "storyboard",
    .usage = "FILE -o DIR [--interval S | --count N] [--tile-width W] [--columns C] [--rows R] [--format FMT]",
    .summary = "write storyboard sprite sheets, a WebVTT thumbnail track and a JSON index into DIR",
    .options = storyboard_options,
    .min_positional = 1,
    .max_positional = 1,
    .one_job = 1,
    .run = run_storyboard,
};
