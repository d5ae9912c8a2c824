/*
 * Frame processing between the decoder and the encoders, as libavfilter graphs.
 *
 * Video: [deinterlace] -> [tone map] -> [frame-rate cap] -> split into one branch per rendition -> the one
 * scaling step (size, 8-bit 4:2:0, BT.709 matrix and limited range in a single swscale pass) -> rotation
 * and square pixels. Everything that runs once per source frame comes before the split, so N renditions
 * still decode and deinterlace once. Rotation is applied after scaling, where the picture is smallest, and
 * turns the display matrix into pixels: the output carries no matrix, so no player rotates twice.
 *
 * Audio: resampled to the encoder's rate and layout, with gaps and a late start filled with silence
 * (aresample async + first_pts=0) so that audio cannot drift from the video timeline, and cut into frames
 * of the encoder's frame size by the sink.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/channel_layout.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "transcode_internal.h"

#define MAX_OUTPUTS MW_TRANSCODE_MAX_RENDITIONS
#define DESCRIPTION_MAX 4096

struct mw_filter {
    AVFilterGraph *graph;
    AVFilterContext *source;
    AVFilterContext *sinks[MAX_OUTPUTS];
    int count;
};

void mw_filter_free(struct mw_filter **pf)
{
    struct mw_filter *f = pf ? *pf : NULL;

    if (!f)
        return;
    avfilter_graph_free(&f->graph);
    av_free(f);
    *pf = NULL;
}

/* Creates the graph around description, whose input is [in] and whose outputs are [out0]..[outN-1]. */
static int build(struct mw_filter **out, const char *source_name, const char *source_args, const char *description,
                 int count, int threads)
{
    struct mw_filter *f = av_mallocz(sizeof(*f));
    AVFilterInOut *inputs = NULL, *outputs = NULL;
    const char *sink_name = !strcmp(source_name, "buffer") ? "buffersink" : "abuffersink";
    int ret;

    *out = NULL;
    if (!f || count > MAX_OUTPUTS || !(f->graph = avfilter_graph_alloc())) {
        ret = count > MAX_OUTPUTS ? AVERROR(EINVAL) : AVERROR(ENOMEM);
        goto end;
    }
    f->graph->nb_threads = threads;
    f->count = count;
    ret = avfilter_graph_create_filter(&f->source, avfilter_get_by_name(source_name), "in", source_args, NULL,
                                       f->graph);
    if (ret < 0)
        goto end;
    if (!(outputs = avfilter_inout_alloc())) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    outputs->name = av_strdup("in");
    outputs->filter_ctx = f->source;
    for (int i = count - 1; i >= 0; i--) {
        char name[16];
        AVFilterInOut *entry = avfilter_inout_alloc();

        if (!entry) {
            ret = AVERROR(ENOMEM);
            goto end;
        }
        entry->next = inputs;
        inputs = entry;
        snprintf(name, sizeof(name), "out%d", i);
        ret = avfilter_graph_create_filter(&f->sinks[i], avfilter_get_by_name(sink_name), name, NULL, NULL,
                                           f->graph);
        if (ret < 0)
            goto end;
        entry->name = av_strdup(name);
        entry->filter_ctx = f->sinks[i];
        if (!entry->name) {
            ret = AVERROR(ENOMEM);
            goto end;
        }
    }
    if (!outputs->name) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = avfilter_graph_parse_ptr(f->graph, description, &inputs, &outputs, NULL);
    if (ret < 0)
        goto end;
    ret = avfilter_graph_config(f->graph, NULL);
end:
    avfilter_inout_free(&inputs);
    avfilter_inout_free(&outputs);
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "filter", "cannot build filter graph \"%.300s\": %s", description, mw_err2str(ret));
        mw_filter_free(&f);
        return ret;
    }
    *out = f;
    return 0;
}

/* The YUV matrix of the source: its tag, else what players assume for untagged video of that height. */
static const char *source_matrix(const AVCodecContext *src)
{
    switch (src->colorspace) {
    case AVCOL_SPC_BT709:      return "bt709";
    case AVCOL_SPC_BT470BG:    return "bt470";
    case AVCOL_SPC_SMPTE170M:  return "smpte170m";
    case AVCOL_SPC_SMPTE240M:  return "smpte240m";
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:  return "bt2020";
    default:                   return src->height >= 720 ? "bt709" : "bt601";
    }
}

/* Appends printf-style text to buf; returns AVERROR(ENAMETOOLONG) when it does not fit. */
static int append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int append(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list args;
    int n;

    va_start(args, fmt);
    n = vsnprintf(buf + used, size - used, fmt, args);
    va_end(args);
    return n < 0 || (size_t)n >= size - used ? AVERROR(ENAMETOOLONG) : 0;
}

static int describe_shared(char *d, size_t size, const struct mw_video_filter_spec *spec)
{
    int ret = append(d, size, "[in]null");

    if (!ret && spec->deinterlace)
        ret = append(d, size, ",bwdif=mode=send_frame:parity=auto:deint=all");
    if (!ret && spec->tonemap)
        ret = append(d, size, ",zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
                              "tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv");
    if (!ret && av_cmp_q(spec->output_rate, spec->frame_rate) && spec->output_rate.num > 0)
        ret = append(d, size, ",fps=%d/%d", spec->output_rate.num, spec->output_rate.den);
    if (!ret && spec->count > 1) {
        ret = append(d, size, ",split=%d", spec->count);
        for (int i = 0; !ret && i < spec->count; i++)
            ret = append(d, size, "[s%d]", i);
    } else if (!ret) {
        ret = append(d, size, "[s0]");
    }
    return ret;
}

/* A rendition at the source's own size, from 8-bit 4:2:0 limited-range BT.709, is already what the encoder
 * takes. A scale filter given colour options would still run every frame through swscale (a full copy per
 * 1080p frame for the top rung of a ladder), so such a branch gets no scale filter at all. */
static int needs_conversion(const struct mw_video_filter_spec *spec, int width, int height, const char *matrix)
{
    const AVCodecContext *src = spec->source;

    return spec->tonemap || src->pix_fmt != AV_PIX_FMT_YUV420P || src->color_range == AVCOL_RANGE_JPEG ||
           strcmp(matrix, "bt709") || src->width != width || src->height != height;
}

static int describe_branch(char *d, size_t size, const struct mw_video_filter_spec *spec, int i)
{
    const struct mw_rendition *r = &spec->renditions[i];
    int sideways = spec->rotation == 90 || spec->rotation == 270;
    const char *matrix = spec->tonemap ? "bt709" : source_matrix(spec->source);
    /* Scaled to the size before rotation, so that rotating gives the upright rendition size. */
    int width = sideways ? r->height : r->width, height = sideways ? r->width : r->height;
    int ret;

    if (needs_conversion(spec, width, height, matrix))
        ret = append(d, size, ";[s%d]scale=w=%d:h=%d:in_color_matrix=%s:out_color_matrix=bt709:out_range=tv,"
                              "format=yuv420p", i, width, height, matrix);
    else
        ret = append(d, size, ";[s%d]null", i);
    if (!ret && spec->hflip)
        ret = append(d, size, ",hflip");
    if (!ret && spec->rotation == 90)
        ret = append(d, size, ",transpose=clock");
    else if (!ret && spec->rotation == 180)
        ret = append(d, size, ",hflip,vflip");
    else if (!ret && spec->rotation == 270)
        ret = append(d, size, ",transpose=cclock");
    if (!ret)
        ret = append(d, size, ",setsar=1[out%d]", i);
    return ret;
}

int mw_filter_new_video(struct mw_filter **out, const struct mw_video_filter_spec *spec)
{
    const AVCodecContext *src = spec->source;
    AVRational sar = src->sample_aspect_ratio.num > 0 ? src->sample_aspect_ratio : (AVRational){1, 1};
    char args[512];
    char description[DESCRIPTION_MAX] = "";
    int ret;

    *out = NULL;
    snprintf(args, sizeof(args), "video_size=%dx%d:pix_fmt=%d:time_base=%d/%d:pixel_aspect=%d/%d", src->width,
             src->height, src->pix_fmt, spec->time_base.num, spec->time_base.den, sar.num, sar.den);
    if (spec->frame_rate.num > 0 && spec->frame_rate.den > 0)
        snprintf(args + strlen(args), sizeof(args) - strlen(args), ":frame_rate=%d/%d", spec->frame_rate.num,
                 spec->frame_rate.den);
    ret = describe_shared(description, sizeof(description), spec);
    for (int i = 0; !ret && i < spec->count; i++)
        ret = describe_branch(description, sizeof(description), spec, i);
    if (ret < 0)
        return ret;
    mw_log(MW_LOG_DEBUG, "filter", "video graph: %s", description);
    return build(out, "buffer", args, description, spec->count, spec->threads);
}

int mw_filter_new_audio(struct mw_filter **out, const AVCodecContext *source, AVRational time_base,
                        int sample_rate, int channels, int frame_size)
{
    AVChannelLayout fallback = {0};
    const AVChannelLayout *layout = &source->ch_layout;
    char layout_name[128];
    char args[512];
    char description[512];
    int ret;

    *out = NULL;
    /* Streams that only say how many channels they have get the usual layout for that count. */
    if (layout->order == AV_CHANNEL_ORDER_UNSPEC) {
        av_channel_layout_default(&fallback, layout->nb_channels);
        layout = &fallback;
    }
    ret = av_channel_layout_describe(layout, layout_name, sizeof(layout_name));
    av_channel_layout_uninit(&fallback);
    if (ret < 0)
        return ret;
    snprintf(args, sizeof(args), "time_base=%d/%d:sample_rate=%d:sample_fmt=%s:channel_layout=%s", time_base.num,
             time_base.den, source->sample_rate, av_get_sample_fmt_name(source->sample_fmt), layout_name);
    snprintf(description, sizeof(description),
             "[in]aresample=%d:async=1:first_pts=0,aformat=sample_fmts=fltp:sample_rates=%d:channel_layouts=%s"
             "[out0]", sample_rate, sample_rate, channels == 1 ? "mono" : "stereo");
    ret = build(out, "abuffer", args, description, 1, 1);
    if (ret < 0)
        return ret;
    if (frame_size > 0)
        av_buffersink_set_frame_size((*out)->sinks[0], (unsigned)frame_size);
    return 0;
}

int mw_filter_push(struct mw_filter *f, AVFrame *frame)
{
    return av_buffersrc_add_frame(f->source, frame);
}

int mw_filter_pull(struct mw_filter *f, int index, AVFrame *frame)
{
    return av_buffersink_get_frame(f->sinks[index], frame);
}

AVRational mw_filter_time_base(const struct mw_filter *f, int index)
{
    return av_buffersink_get_time_base(f->sinks[index]);
}
