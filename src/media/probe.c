#include <math.h>
#include <stdio.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/display.h>
#include <libavutil/mastering_display_metadata.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>

#include "mediaworker/error.h"
#include "mediaworker/probe.h"

/* Container tags worth reporting; the rest is noise or private data. */
static const char *const interesting_tags[] = {
    "title", "artist", "album", "creation_time", "encoder", "major_brand", "location",
    "com.apple.quicktime.make", "com.apple.quicktime.model", "com.apple.quicktime.location.ISO6709",
    "com.apple.quicktime.creationdate", "com.android.version", NULL,
};

int mw_probe_stream_rotation(const AVStream *st, int *hflip)
{
    const int32_t *matrix = (const int32_t *)av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    int32_t unflipped[9];
    double angle;
    int degrees;

    *hflip = 0;
    if (!matrix)
        return 0;
    /* A negative determinant means a mirror; undo it on the first column so the angle is read correctly. */
    memcpy(unflipped, matrix, sizeof(unflipped));
    if ((int64_t)matrix[0] * matrix[4] - (int64_t)matrix[1] * matrix[3] < 0) {
        *hflip = 1;
        av_display_matrix_flip(unflipped, 1, 0);
    }
    angle = av_display_rotation_get(unflipped);
    if (isnan(angle))
        return 0;
    /* The matrix's angle is counter-clockwise; players rotate clockwise by its negation. */
    degrees = (int)lrint(-angle) % 360;
    if (degrees < 0)
        degrees += 360;
    degrees = (degrees + 45) / 90 * 90 % 360;
    /* Negating the first column mirrors the shown picture: the matrix turns first, then mirrors. We report
     * (and every operation applies) the mirror first, then the turn, and a mirror reverses a turn's sense. */
    return *hflip ? (360 - degrees) % 360 : degrees;
}

static void copy_name(char *dst, size_t size, const char *name)
{
    snprintf(dst, size, "%s", name ? name : "");
}

static int is_hdr(const AVStream *st)
{
    const AVCodecParameters *par = st->codecpar;

    if (par->color_trc == AVCOL_TRC_SMPTE2084 || par->color_trc == AVCOL_TRC_ARIB_STD_B67)
        return 1;
    return av_stream_get_side_data(st, AV_PKT_DATA_MASTERING_DISPLAY_METADATA, NULL) != NULL ||
           av_stream_get_side_data(st, AV_PKT_DATA_CONTENT_LIGHT_LEVEL, NULL) != NULL;
}

static const char *field_order_name(enum AVFieldOrder order)
{
    switch (order) {
    case AV_FIELD_PROGRESSIVE: return "progressive";
    case AV_FIELD_TT:          return "tt";
    case AV_FIELD_BB:          return "bb";
    case AV_FIELD_TB:          return "tb";
    case AV_FIELD_BT:          return "bt";
    default:                   return "unknown";
    }
}

static void fill_video(struct mw_probe_stream *s, const AVStream *st)
{
    const AVCodecParameters *par = st->codecpar;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(par->format);
    AVRational sar = par->sample_aspect_ratio;

    copy_name(s->pix_fmt, sizeof(s->pix_fmt), av_get_pix_fmt_name(par->format));
    s->bit_depth = desc ? desc->comp[0].depth : 0;
    s->width = par->width;
    s->height = par->height;
    if (st->sample_aspect_ratio.num)
        sar = st->sample_aspect_ratio;
    s->sample_aspect_ratio = sar.num ? sar : (AVRational){0, 1};
    if (par->width && par->height) {
        AVRational effective_sar = sar.num ? sar : (AVRational){1, 1};
        av_reduce(&s->display_aspect_ratio.num, &s->display_aspect_ratio.den,
                  (int64_t)par->width * effective_sar.num, (int64_t)par->height * effective_sar.den, 1024 * 1024);
    }
    s->rotation = mw_probe_stream_rotation(st, &s->hflip);
    s->avg_frame_rate = st->avg_frame_rate;
    s->real_frame_rate = st->r_frame_rate;
    s->frame_count = st->nb_frames;
    copy_name(s->color_primaries, sizeof(s->color_primaries), av_color_primaries_name(par->color_primaries));
    copy_name(s->color_transfer, sizeof(s->color_transfer), av_color_transfer_name(par->color_trc));
    copy_name(s->color_space, sizeof(s->color_space), av_color_space_name(par->color_space));
    copy_name(s->color_range, sizeof(s->color_range), av_color_range_name(par->color_range));
    s->hdr = is_hdr(st);
    copy_name(s->field_order, sizeof(s->field_order), field_order_name(par->field_order));
}

static void fill_audio(struct mw_probe_stream *s, const AVStream *st)
{
    const AVCodecParameters *par = st->codecpar;

    s->sample_rate = par->sample_rate;
    s->channels = par->ch_layout.nb_channels;
    if (av_channel_layout_describe(&par->ch_layout, s->channel_layout, sizeof(s->channel_layout)) < 0)
        s->channel_layout[0] = '\0';
}

static void fill_stream(struct mw_probe_stream *s, const AVStream *st)
{
    const AVCodecParameters *par = st->codecpar;
    const AVCodecDescriptor *desc = avcodec_descriptor_get(par->codec_id);
    const AVDictionaryEntry *language = av_dict_get(st->metadata, "language", NULL, 0);

    s->index = st->index;
    s->type = par->codec_type;
    copy_name(s->codec, sizeof(s->codec), desc ? desc->name : "unknown");
    copy_name(s->codec_long, sizeof(s->codec_long), desc ? desc->long_name : "");
    copy_name(s->profile, sizeof(s->profile), avcodec_profile_name(par->codec_id, par->profile));
    s->level = par->level;
    s->bit_rate = par->bit_rate;
    s->duration_us = st->duration != AV_NOPTS_VALUE ? av_rescale_q(st->duration, st->time_base, AV_TIME_BASE_Q)
                                                     : AV_NOPTS_VALUE;
    copy_name(s->language, sizeof(s->language), language ? language->value : "");
    s->is_default = !!(st->disposition & AV_DISPOSITION_DEFAULT);
    s->is_attached_pic = !!(st->disposition & AV_DISPOSITION_ATTACHED_PIC);
    if (par->codec_type == AVMEDIA_TYPE_VIDEO)
        fill_video(s, st);
    else if (par->codec_type == AVMEDIA_TYPE_AUDIO)
        fill_audio(s, st);
}

static int collect_tags(struct mw_probe *p, const AVDictionary *metadata)
{
    p->tags = cJSON_CreateObject();
    if (!p->tags)
        return AVERROR(ENOMEM);
    for (const char *const *name = interesting_tags; *name; name++) {
        const AVDictionaryEntry *tag = av_dict_get(metadata, *name, NULL, 0);
        if (tag && !cJSON_AddStringToObject(p->tags, *name, tag->value))
            return AVERROR(ENOMEM);
    }
    return 0;
}

int mw_probe_input(const struct mw_input *in, struct mw_probe **out)
{
    const AVFormatContext *fmt = mw_input_format(in);
    struct mw_probe *p;
    int ret;

    *out = NULL;
    p = av_mallocz(sizeof(*p));
    if (!p)
        return AVERROR(ENOMEM);
    copy_name(p->format_name, sizeof(p->format_name), fmt->iformat->name);
    copy_name(p->format_long_name, sizeof(p->format_long_name), fmt->iformat->long_name);
    p->duration_us = fmt->duration;
    p->start_time_us = fmt->start_time;
    p->bit_rate = fmt->bit_rate;
    p->size = mw_input_size(in);
    p->chapter_count = (int)fmt->nb_chapters;
    p->best_video = -1;
    p->best_audio = -1;
    ret = collect_tags(p, fmt->metadata);
    if (ret < 0)
        goto fail;
    p->streams = av_calloc(fmt->nb_streams ? fmt->nb_streams : 1, sizeof(*p->streams));
    if (!p->streams) {
        ret = AVERROR(ENOMEM);
        goto fail;
    }
    p->stream_count = (int)fmt->nb_streams;
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        fill_stream(&p->streams[i], fmt->streams[i]);
    /* A cover picture is a video stream too; the main picture is a real one when there is one. */
    for (int i = 0; i < p->stream_count; i++) {
        const struct mw_probe_stream *s = &p->streams[i];
        if (s->type == AVMEDIA_TYPE_VIDEO && !s->is_attached_pic && p->best_video < 0)
            p->best_video = i;
        if (s->type == AVMEDIA_TYPE_AUDIO && (p->best_audio < 0 || (s->is_default &&
                                                                    !p->streams[p->best_audio].is_default)))
            p->best_audio = i;
    }
    *out = p;
    return 0;
fail:
    mw_probe_free(&p);
    return ret;
}

void mw_probe_free(struct mw_probe **pp)
{
    struct mw_probe *p = pp ? *pp : NULL;

    if (!p)
        return;
    cJSON_Delete(p->tags);
    av_free(p->streams);
    av_free(p);
    *pp = NULL;
}

static cJSON *add_rational(cJSON *obj, const char *name, AVRational r, char sep)
{
    char text[48];

    snprintf(text, sizeof(text), "%d%c%d", r.num, sep, r.den);
    return cJSON_AddStringToObject(obj, name, text);
}

static cJSON *add_seconds(cJSON *obj, const char *name, int64_t us)
{
    if (us == AV_NOPTS_VALUE)
        return cJSON_AddNullToObject(obj, name);
    return cJSON_AddNumberToObject(obj, name, (double)us / AV_TIME_BASE);
}

static int add_video_fields(cJSON *js, const struct mw_probe_stream *s)
{
    if (!cJSON_AddStringToObject(js, "pix_fmt", s->pix_fmt) || !cJSON_AddNumberToObject(js, "bit_depth", s->bit_depth) ||
        !cJSON_AddNumberToObject(js, "width", s->width) || !cJSON_AddNumberToObject(js, "height", s->height) ||
        !add_rational(js, "sample_aspect_ratio", s->sample_aspect_ratio, ':') ||
        !add_rational(js, "display_aspect_ratio", s->display_aspect_ratio, ':') ||
        !cJSON_AddNumberToObject(js, "rotation", s->rotation) || !cJSON_AddBoolToObject(js, "hflip", s->hflip) ||
        !add_rational(js, "avg_frame_rate", s->avg_frame_rate, '/') ||
        !add_rational(js, "r_frame_rate", s->real_frame_rate, '/') ||
        !cJSON_AddNumberToObject(js, "frame_count", (double)s->frame_count) ||
        !cJSON_AddStringToObject(js, "color_primaries", s->color_primaries) ||
        !cJSON_AddStringToObject(js, "color_transfer", s->color_transfer) ||
        !cJSON_AddStringToObject(js, "color_space", s->color_space) ||
        !cJSON_AddStringToObject(js, "color_range", s->color_range) || !cJSON_AddBoolToObject(js, "hdr", s->hdr) ||
        !cJSON_AddStringToObject(js, "field_order", s->field_order))
        return AVERROR(ENOMEM);
    return 0;
}

static cJSON *stream_to_json(const struct mw_probe_stream *s)
{
    cJSON *js = cJSON_CreateObject();
    const char *type = av_get_media_type_string(s->type);

    if (!js)
        return NULL;
    if (!cJSON_AddNumberToObject(js, "index", s->index) || !cJSON_AddStringToObject(js, "type", type ? type : "unknown") ||
        !cJSON_AddStringToObject(js, "codec", s->codec) || !cJSON_AddStringToObject(js, "codec_long_name", s->codec_long) ||
        !(s->profile[0] ? cJSON_AddStringToObject(js, "profile", s->profile) : cJSON_AddNullToObject(js, "profile")) ||
        !(s->level != FF_LEVEL_UNKNOWN ? cJSON_AddNumberToObject(js, "level", s->level)
                                       : cJSON_AddNullToObject(js, "level")) ||
        !cJSON_AddNumberToObject(js, "bit_rate", (double)s->bit_rate) || !add_seconds(js, "duration", s->duration_us) ||
        !cJSON_AddStringToObject(js, "language", s->language) || !cJSON_AddBoolToObject(js, "default", s->is_default) ||
        !cJSON_AddBoolToObject(js, "attached_pic", s->is_attached_pic))
        goto fail;
    if (s->type == AVMEDIA_TYPE_VIDEO && add_video_fields(js, s) < 0)
        goto fail;
    if (s->type == AVMEDIA_TYPE_AUDIO &&
        (!cJSON_AddNumberToObject(js, "sample_rate", s->sample_rate) ||
         !cJSON_AddNumberToObject(js, "channels", s->channels) ||
         !cJSON_AddStringToObject(js, "channel_layout", s->channel_layout)))
        goto fail;
    return js;
fail:
    cJSON_Delete(js);
    return NULL;
}

cJSON *mw_probe_to_json(const struct mw_probe *p)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *format, *streams, *tags;

    if (!root)
        return NULL;
    format = cJSON_AddObjectToObject(root, "format");
    streams = cJSON_AddArrayToObject(root, "streams");
    if (!format || !streams)
        goto fail;
    if (!cJSON_AddStringToObject(format, "name", p->format_name) ||
        !cJSON_AddStringToObject(format, "long_name", p->format_long_name) ||
        !add_seconds(format, "duration", p->duration_us) || !add_seconds(format, "start_time", p->start_time_us) ||
        !cJSON_AddNumberToObject(format, "bit_rate", (double)p->bit_rate) ||
        !cJSON_AddNumberToObject(format, "size", (double)p->size) ||
        !cJSON_AddNumberToObject(format, "stream_count", p->stream_count) ||
        !cJSON_AddNumberToObject(format, "chapter_count", p->chapter_count))
        goto fail;
    tags = cJSON_Duplicate(p->tags, 1);
    if (!tags || !cJSON_AddItemToObject(format, "tags", tags)) {
        cJSON_Delete(tags);
        goto fail;
    }
    for (int i = 0; i < p->stream_count; i++) {
        cJSON *js = stream_to_json(&p->streams[i]);
        if (!js || !cJSON_AddItemToArray(streams, js)) {
            cJSON_Delete(js);
            goto fail;
        }
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}
