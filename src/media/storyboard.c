#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libavformat/avformat.h>
#include <libavutil/bprint.h>
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/frame_select.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/picture.h"
#include "mediaworker/storyboard.h"
#include "mediaworker/thumbnail.h"

#define DEFAULT_COLUMNS 10
#define DEFAULT_ROWS 10

int mw_storyboard_plan(int64_t duration_us, double interval_s, int count, int columns, int rows, int tile_width,
                       int tile_height, struct mw_storyboard_layout *out)
{
    double duration_s = (double)duration_us / 1e6;
    int per_sheet;

    memset(out, 0, sizeof(*out));
    if (duration_us == AV_NOPTS_VALUE || duration_us <= 0 || tile_width <= 0 || tile_height <= 0 ||
        columns <= 0 || rows <= 0 || (interval_s <= 0 && count <= 0) || !isfinite(interval_s))
        return AVERROR(EINVAL);
    if (interval_s <= 0) {
        out->tile_count = count;
        out->interval_s = duration_s / count;
    } else {
        double tiles = ceil(duration_s / interval_s - 1e-9);
        out->interval_s = interval_s;
        out->tile_count = tiles < 1 ? 1 : tiles > MW_STORYBOARD_MAX_TILES ? MW_STORYBOARD_MAX_TILES + 1 : (int)tiles;
    }
    if (out->tile_count > MW_STORYBOARD_MAX_TILES) {
        out->tile_count = MW_STORYBOARD_MAX_TILES;
        out->interval_s = duration_s / MW_STORYBOARD_MAX_TILES;
    }
    if ((out->tile_count + columns * rows - 1) / (columns * rows) > MW_STORYBOARD_MAX_SHEETS)
        rows = (out->tile_count + columns * MW_STORYBOARD_MAX_SHEETS - 1) / (columns * MW_STORYBOARD_MAX_SHEETS);
    per_sheet = columns * rows;
    out->columns = columns;
    out->rows = rows;
    out->tile_width = tile_width;
    out->tile_height = tile_height;
    out->sheet_count = (out->tile_count + per_sheet - 1) / per_sheet;
    out->tiles = av_calloc((size_t)out->tile_count, sizeof(*out->tiles));
    if (!out->tiles)
        return AVERROR(ENOMEM);
    for (int i = 0; i < out->tile_count; i++) {
        struct mw_storyboard_tile *t = &out->tiles[i];
        int index = i % per_sheet;

        t->start_s = i * out->interval_s;
        t->end_s = fmin((i + 1) * out->interval_s, duration_s);
        t->sheet = i / per_sheet;
        t->x = index % columns * tile_width;
        t->y = index / columns * tile_height;
    }
    return 0;
}

void mw_storyboard_layout_free(struct mw_storyboard_layout *layout)
{
    av_freep(&layout->tiles);
}

void mw_storyboard_format_time(double seconds, char *out, size_t size)
{
    long long ms = seconds > 0 ? llround(seconds * 1000) : 0;

    snprintf(out, size, "%02lld:%02lld:%02lld.%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
}

void mw_storyboard_sheet_name(const char *prefix, int sheet, enum mw_image_format format, char *out, size_t size)
{
    snprintf(out, size, "%s-%d.%s", prefix, sheet, mw_image_format_extension(format));
}

int mw_storyboard_vtt(const struct mw_storyboard_layout *layout, const char *prefix, enum mw_image_format format,
                      char **out)
{
    AVBPrint text;

    av_bprint_init(&text, 0, AV_BPRINT_SIZE_UNLIMITED);
    av_bprintf(&text, "WEBVTT\n");
    for (int i = 0; i < layout->tile_count; i++) {
        const struct mw_storyboard_tile *t = &layout->tiles[i];
        char start[32], end[32], sheet[300];

        mw_storyboard_format_time(t->start_s, start, sizeof(start));
        mw_storyboard_format_time(t->end_s, end, sizeof(end));
        mw_storyboard_sheet_name(prefix, t->sheet, format, sheet, sizeof(sheet));
        av_bprintf(&text, "\n%s --> %s\n%s#xywh=%d,%d,%d,%d\n", start, end, sheet, t->x, t->y, layout->tile_width,
                   layout->tile_height);
    }
    return av_bprint_finalize(&text, out);
}

static void sheet_size(const struct mw_storyboard_layout *layout, int sheet, int *width, int *height)
{
    int per_sheet = layout->columns * layout->rows;
    int tiles = layout->tile_count - sheet * per_sheet;

    if (tiles > per_sheet)
        tiles = per_sheet;
    *width = (tiles < layout->columns ? tiles : layout->columns) * layout->tile_width;
    *height = (tiles + layout->columns - 1) / layout->columns * layout->tile_height;
}

static void blit(const AVFrame *tile, AVFrame *sheet, int x, int y)
{
    for (int row = 0; row < tile->height && y + row < sheet->height; row++)
        memcpy(sheet->data[0] + (ptrdiff_t)(y + row) * sheet->linesize[0] + 3 * x,
               tile->data[0] + (ptrdiff_t)row * tile->linesize[0], (size_t)tile->width * 3);
}

/* Tile size from the stream's display geometry, so the plan exists before anything is decoded. Returns 1
 * when tiles are at most a third of the picture's width (see mw_frame_source_set_fast_keyframes). */
static int tile_size(const struct mw_input *in, int stream_index, int tile_width, int *height)
{
    AVFormatContext *fmt = mw_input_format(in);
    AVStream *st = fmt->streams[stream_index];
    struct mw_orientation o = {0, 0};
    int dw, dh;

    o.rotation = mw_probe_stream_rotation(st, &o.hflip);
    mw_picture_display_size(st->codecpar->width, st->codecpar->height, av_guess_sample_aspect_ratio(fmt, st, NULL),
                            &o, &dw, &dh);
    *height = dw > 0 && dh > 0 ? 2 * (int)lround((double)tile_width * dh / dw / 2) : tile_width * 9 / 16 / 2 * 2;
    if (*height < 2)
        *height = 2;
    return dw > 0 && tile_width * 3 <= dw;
}

struct tile_state {
    struct mw_frame_source *source;
    AVFrame *frame;
    AVFrame *tile;                /* last rendered tile, reused while tiles share a keyframe */
    int64_t keyframe_ts;          /* index timestamp of the keyframe the last tile shows */
};

static int render_tile(const struct mw_input *in, int stream_index, const struct mw_storyboard_layout *layout,
                       const struct mw_storyboard_tile *t, int64_t duration_us, struct tile_state *state)
{
    AVStream *st = mw_input_format(in)->streams[stream_index];
    struct mw_size_request size = {layout->tile_width, layout->tile_height, MW_FIT_COVER, 1, 0};
    int64_t t_us = (int64_t)llround(t->start_s * 1e6);
    int64_t ts = mw_input_stream_ts(in, stream_index, t_us);
    const AVIndexEntry *entry = avformat_index_get_entry_from_timestamp(st, ts, AVSEEK_FLAG_BACKWARD);
    /* Copied now: reading packets grows the index, which moves its entries. */
    int64_t keyframe_ts = entry ? entry->timestamp : AV_NOPTS_VALUE;
    struct mw_orientation orientation;
    AVRational sar;
    int64_t time_us;
    int ret;

    if (state->tile && keyframe_ts != AV_NOPTS_VALUE && keyframe_ts == state->keyframe_ts)
        return 0;
    ret = mw_frame_source_get(state->source, MW_SELECT_KEYFRAME, t_us, duration_us, state->frame, &time_us, NULL);
    if (ret == MW_ERR_NO_PICTURE && state->tile)
        return 0;   /* past the last decodable keyframe: the previous tile stands for it */
    if (ret < 0)
        return ret;
    mw_thumbnail_frame_geometry(in, stream_index, state->frame, &orientation, &sar);
    av_frame_free(&state->tile);
    ret = mw_picture_render(state->frame, sar, &orientation, &size, 0, &state->tile);
    av_frame_unref(state->frame);
    state->keyframe_ts = keyframe_ts;
    return ret;
}

static int write_sheets(const struct mw_input *in, int stream_index, const struct mw_storyboard_request *req,
                        const char *prefix, int64_t duration_us, struct tile_state *state,
                        struct mw_storyboard_result *result)
{
    const struct mw_storyboard_layout *layout = &result->layout;
    AVFrame *sheet = NULL;
    int ret = 0;
    int next = 0;

    for (int s = 0; s < layout->sheet_count && ret >= 0; s++) {
        char name[300], path[4096];

        av_frame_free(&sheet);
        sheet = av_frame_alloc();
        if (!sheet) {
            ret = AVERROR(ENOMEM);
            break;
        }
        sheet->format = AV_PIX_FMT_RGB24;
        sheet_size(layout, s, &sheet->width, &sheet->height);
        ret = av_frame_get_buffer(sheet, 0);
        if (ret < 0)
            break;
        for (int y = 0; y < sheet->height; y++)
            memset(sheet->data[0] + (ptrdiff_t)y * sheet->linesize[0], 0, (size_t)sheet->width * 3);
        for (; next < layout->tile_count && layout->tiles[next].sheet == s && ret >= 0; next++) {
            ret = render_tile(in, stream_index, layout, &layout->tiles[next], duration_us, state);
            if (ret >= 0)
                blit(state->tile, sheet, layout->tiles[next].x, layout->tiles[next].y);
            if (ret >= 0 && req->progress)
                req->progress(req->progress_opaque, next + 1, layout->tile_count);
        }
        if (ret < 0)
            break;
        mw_storyboard_sheet_name(prefix, s, req->format, name, sizeof(name));
        snprintf(path, sizeof(path), "%s/%s", req->dir, name);
        ret = mw_image_encode_file(sheet, req->format, req->quality, path, &result->sheet_bytes[s]);
        result->sheet_width[s] = sheet->width;
        result->sheet_height[s] = sheet->height;
    }
    av_frame_free(&sheet);
    return ret;
}

static cJSON *index_json(const struct mw_storyboard_result *result, const char *prefix, enum mw_image_format format)
{
    const struct mw_storyboard_layout *l = &result->layout;
    cJSON *root = cJSON_CreateObject();
    cJSON *sheets = root ? cJSON_AddArrayToObject(root, "sheets") : NULL;
    cJSON *tiles = root ? cJSON_AddArrayToObject(root, "tiles") : NULL;

    if (!sheets || !tiles || !cJSON_AddNumberToObject(root, "interval", l->interval_s) ||
        !cJSON_AddNumberToObject(root, "tile_count", l->tile_count) ||
        !cJSON_AddNumberToObject(root, "tile_width", l->tile_width) ||
        !cJSON_AddNumberToObject(root, "tile_height", l->tile_height) ||
        !cJSON_AddNumberToObject(root, "columns", l->columns) || !cJSON_AddNumberToObject(root, "rows", l->rows) ||
        !cJSON_AddStringToObject(root, "vtt", result->vtt_name))
        goto fail;
    for (int s = 0; s < l->sheet_count; s++) {
        char name[300];
        cJSON *js = cJSON_CreateObject();
        mw_storyboard_sheet_name(prefix, s, format, name, sizeof(name));
        if (!js || !cJSON_AddItemToArray(sheets, js) || !cJSON_AddStringToObject(js, "file", name) ||
            !cJSON_AddNumberToObject(js, "width", result->sheet_width[s]) ||
            !cJSON_AddNumberToObject(js, "height", result->sheet_height[s]))
            goto fail;
    }
    for (int i = 0; i < l->tile_count; i++) {
        const struct mw_storyboard_tile *t = &l->tiles[i];
        cJSON *js = cJSON_CreateObject();
        if (!js || !cJSON_AddItemToArray(tiles, js) || !cJSON_AddNumberToObject(js, "start", t->start_s) ||
            !cJSON_AddNumberToObject(js, "end", t->end_s) || !cJSON_AddNumberToObject(js, "sheet", t->sheet) ||
            !cJSON_AddNumberToObject(js, "x", t->x) || !cJSON_AddNumberToObject(js, "y", t->y))
            goto fail;
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

static int write_text(const char *dir, const char *name, const char *text, int64_t *bytes)
{
    char path[4096];
    int ret;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return AVERROR(ENAMETOOLONG);
    ret = mw_path_write_atomic(path, text, strlen(text));
    if (ret >= 0)
        *bytes = (int64_t)strlen(text);
    return ret;
}

static int write_vtt_and_index(const struct mw_storyboard_request *req, const char *prefix,
                               struct mw_storyboard_result *result)
{
    char *vtt = NULL, *index_text = NULL;
    cJSON *index = NULL;
    int ret;

    ret = mw_storyboard_vtt(&result->layout, prefix, req->format, &vtt);
    if (ret < 0)
        goto end;
    ret = write_text(req->dir, result->vtt_name, vtt, &result->vtt_bytes);
    if (ret < 0)
        goto end;
    index = index_json(result, prefix, req->format);
    if (!index || !(index_text = cJSON_Print(index))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = write_text(req->dir, result->index_name, index_text, &result->index_bytes);
end:
    av_free(vtt);
    cJSON_free(index_text);
    cJSON_Delete(index);
    return ret;
}

int mw_storyboard_make(struct mw_input *in, const struct mw_probe *probe, const struct mw_storyboard_request *req,
                       struct mw_storyboard_result *result)
{
    struct tile_state state = {.keyframe_ts = AV_NOPTS_VALUE};
    const char *prefix = req->prefix ? req->prefix : "storyboard";
    const char *source_name;
    int tile_width = req->tile_width > 0 ? req->tile_width : MW_STORYBOARD_DEFAULT_TILE_WIDTH;
    int tile_height, still, animated, small;
    int stream_index = mw_thumbnail_picture_stream(probe, &still, &animated, &source_name);
    int ret;

    memset(result, 0, sizeof(*result));
    if (stream_index < 0 || still) {
        ret = MW_ERR_NO_PICTURE;
        goto end;
    }
    snprintf(result->vtt_name, sizeof(result->vtt_name), "%s.vtt", prefix);
    snprintf(result->index_name, sizeof(result->index_name), "%s.json", prefix);
    small = tile_size(in, stream_index, tile_width, &tile_height);
    ret = mw_storyboard_plan(probe->duration_us, req->interval_s, req->count, req->columns > 0 ? req->columns : DEFAULT_COLUMNS,
                             req->rows > 0 ? req->rows : DEFAULT_ROWS, tile_width, tile_height, &result->layout);
    if (ret < 0)
        goto end;
    ret = mw_frame_source_new(&state.source, in, stream_index, 1, req->hw_device, 0, animated);
    if (ret < 0)
        goto end;
    mw_frame_source_set_fast_keyframes(state.source, small);
    state.frame = av_frame_alloc();
    if (!state.frame) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = write_sheets(in, stream_index, req, prefix, probe->duration_us, &state, result);
    if (ret < 0)
        goto end;
    ret = write_vtt_and_index(req, prefix, result);
end:
    if (ret < 0)
        mw_log(MW_LOG_DEBUG, "storyboard", "storyboard failed: %s", mw_err2str(ret));
    if (state.source)
        result->decoded_on_device = mw_frame_source_used_device(state.source);
    av_frame_free(&state.tile);
    av_frame_free(&state.frame);
    mw_frame_source_free(&state.source);
    return ret;
}

void mw_storyboard_result_free(struct mw_storyboard_result *result)
{
    mw_storyboard_layout_free(&result->layout);
}
