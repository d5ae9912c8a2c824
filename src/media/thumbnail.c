#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/dict.h>
#include <libavutil/frame.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/thumbnail.h"
#include "mediaworker/waveform.h"

#define WAVEFORM_WIDTH 1280

int mw_position_parse(const char *text, struct mw_position *pos)
{
    char *end = NULL;
    double value = 0;
    double part;
    int fields = 0;

    if (!text || !*text)
        return AVERROR(EINVAL);
    /* Seconds, optionally preceded by "hh:" and "mm:" fields. */
    for (;;) {
        part = strtod(text, &end);
        if (end == text || !isfinite(part) || part < 0)
            return AVERROR(EINVAL);
        value = value * 60 + part;
        if (*end != ':')
            break;
        if (++fields > 2 || part != floor(part))
            return AVERROR(EINVAL);
        text = end + 1;
    }
    if (*end == '%') {
        if (fields || value > 100 || end[1])
            return AVERROR(EINVAL);
        pos->percent = 1;
        pos->value = value;
        return 0;
    }
    if (*end)
        return AVERROR(EINVAL);
    pos->percent = 0;
    pos->value = value;
    return 0;
}

int64_t mw_position_resolve(const struct mw_position *pos, int64_t duration_us)
{
    int known = duration_us != AV_NOPTS_VALUE && duration_us > 0;
    int64_t t;

    if (pos->percent)
        t = known ? (int64_t)llround((double)duration_us * pos->value / 100.0) : 0;
    else
        t = (int64_t)llround(pos->value * 1e6);
    /* A position at or past the end means the last picture, not nothing. */
    if (known && t >= duration_us)
        t = duration_us - duration_us / 100;
    return t < 0 ? 0 : t;
}

static int is_still_format(const char *name)
{
    static const char *const stills[] = {"jpeg_pipe", "png_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", NULL};

    for (const char *const *s = stills; *s; s++)
        if (!strcmp(name, *s))
            return 1;
    return 0;
}

int mw_thumbnail_picture_stream(const struct mw_probe *probe, int *still, int *animated, const char **source)
{
    *still = 0;
    *animated = 0;
    if (probe->best_video >= 0) {
        if (is_still_format(probe->format_name)) {
            *still = 1;
            *source = "image";
        } else if (!strcmp(probe->format_name, "gif") || !strcmp(probe->format_name, "apng")) {
            *animated = 1;
            *source = "animation";
        } else {
            *source = "video";
        }
        return probe->streams[probe->best_video].index;
    }
    for (int i = 0; i < probe->stream_count; i++) {
        if (probe->streams[i].type == AVMEDIA_TYPE_VIDEO && probe->streams[i].is_attached_pic) {
            *still = 1;
            *source = "cover";
            return probe->streams[i].index;
        }
    }
    return MW_ERR_NO_PICTURE;
}

void mw_thumbnail_frame_geometry(const struct mw_input *in, int stream_index, const AVFrame *frame,
                                 struct mw_orientation *orientation, AVRational *sar)
{
    AVFormatContext *fmt = mw_input_format(in);
    AVStream *st = fmt->streams[stream_index];
    const AVDictionaryEntry *exif = av_dict_get(frame->metadata, "Orientation", NULL, 0);

    orientation->rotation = mw_probe_stream_rotation(st, &orientation->hflip);
    /* A still JPEG says how it is turned in EXIF; libavcodec 59 exports the tag but does not apply it. */
    if (exif && !orientation->rotation && !orientation->hflip)
        *orientation = mw_picture_exif_orientation((int)strtol(exif->value, NULL, 10));
    /* libavformat 59 declares the frame non-const but only reads it. */
    *sar = av_guess_sample_aspect_ratio(fmt, st, (AVFrame *)frame);
}

/* Renders and writes every output of req from the one frame. */
static int write_outputs(const AVFrame *frame, AVRational sar, const struct mw_orientation *orientation,
                         struct mw_thumbnail_request *req)
{
    int ret = 0;

    for (int i = 0; i < req->output_count && ret >= 0; i++) {
        struct mw_thumbnail_output *o = &req->outputs[i];
        struct mw_size_request size = o->size;
        AVFrame *picture = NULL;

        size.even = size.even || mw_image_format_wants_even(o->format);
        ret = mw_picture_render(frame, sar, orientation, &size, mw_image_format_has_alpha(o->format), &picture);
        if (ret >= 0)
            ret = mw_image_encode_file(picture, o->format, o->quality, o->path, &o->bytes);
        if (ret >= 0) {
            o->width = picture->width;
            o->height = picture->height;
        } else {
            mw_log(MW_LOG_DEBUG, "thumbnail", "writing %s failed: %s", o->path, mw_err2str(ret));
        }
        av_frame_free(&picture);
    }
    return ret;
}

/* True when every output is at most a third of the picture's width: see mw_frame_source_set_fast_keyframes. */
static int all_outputs_small(const struct mw_input *in, int stream_index, const struct mw_thumbnail_request *req)
{
    AVFormatContext *fmt = mw_input_format(in);
    AVStream *st = fmt->streams[stream_index];
    struct mw_orientation o = {0, 0};
    int dw, dh;

    o.rotation = mw_probe_stream_rotation(st, &o.hflip);
    if (st->codecpar->width <= 0 || st->codecpar->height <= 0)
        return 0;
    mw_picture_display_size(st->codecpar->width, st->codecpar->height, av_guess_sample_aspect_ratio(fmt, st, NULL),
                            &o, &dw, &dh);
    for (int i = 0; i < req->output_count; i++) {
        struct mw_fit_result fit;
        if (mw_picture_fit(dw, dh, &req->outputs[i].size, &fit) < 0 || fit.scaled_width * 3 > dw)
            return 0;
    }
    return 1;
}

/* Audio without a picture gets its waveform, drawn as wide as the largest output (4:1). */
static int make_waveform(struct mw_input *in, const struct mw_probe *probe, struct mw_thumbnail_request *req,
                         struct mw_thumbnail_result *result)
{
    static const struct mw_orientation upright = {0, 0};
    AVFrame *picture = NULL;
    int width = WAVEFORM_WIDTH;
    int ret;

    for (int i = 0; i < req->output_count; i++)
        if (req->outputs[i].size.width > width)
            width = req->outputs[i].size.width;
    ret = mw_waveform_render(in, probe->streams[probe->best_audio].index, width, width / 4, &picture);
    if (ret < 0)
        return ret;
    result->source = "waveform";
    result->time_us = 0;
    memset(&result->score, 0, sizeof(result->score));
    ret = write_outputs(picture, (AVRational){1, 1}, &upright, req);
    av_frame_free(&picture);
    return ret;
}

int mw_thumbnail_make(struct mw_input *in, const struct mw_probe *probe, struct mw_thumbnail_request *req,
                      struct mw_thumbnail_result *result)
{
    struct mw_frame_source *source = NULL;
    struct mw_orientation orientation;
    AVRational sar;
    AVFrame *frame = NULL;
    int64_t duration_us = probe->duration_us;
    int still, animated;
    int stream_index = mw_thumbnail_picture_stream(probe, &still, &animated, &result->source);
    int ret;

    if (stream_index < 0) {
        ret = probe->best_audio >= 0 ? make_waveform(in, probe, req, result) : stream_index;
        goto end;
    }
    /* A single keyframe decodes fastest on one thread: frame threads only add latency there. */
    ret = mw_frame_source_new(&source, in, stream_index, req->select == MW_SELECT_KEYFRAME ? 1 : req->threads,
                              req->hw_device, still, animated);
    if (ret < 0)
        goto end;
    mw_frame_source_set_fast_keyframes(source, all_outputs_small(in, stream_index, req));
    frame = av_frame_alloc();
    if (!frame) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = mw_frame_source_get(source, req->select, mw_position_resolve(&req->at, duration_us), duration_us,
                              frame, &result->time_us, &result->score);
    if (ret < 0)
        goto end;
    mw_thumbnail_frame_geometry(in, stream_index, frame, &orientation, &sar);
    ret = write_outputs(frame, sar, &orientation, req);
end:
    if (source)
        result->decoded_on_device = mw_frame_source_used_device(source);
    av_frame_free(&frame);
    mw_frame_source_free(&source);
    return ret;
}
