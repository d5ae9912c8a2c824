/*
 * Opening encoders from a preset row.
 *
 * Renditions must switch cleanly in a player, so every rendition gets the same GOP structure: no scene-cut
 * keyframes, closed GOPs, and an IDR at each keyframe that rendition.c forces by PTS every keyframe_ms. The
 * encoder's own GOP is twice that, a backstop only: counting frames at the nominal rate, it would put a
 * keyframe off the grid wherever the input runs faster for a while (a 24 -> 30 fps switch, a held picture).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "transcode_internal.h"

static int open_encoder(AVCodecContext *ctx, const AVCodec *codec, AVDictionary **options)
{
    int ret = avcodec_open2(ctx, codec, options);

    if (ret < 0)
        mw_log(MW_LOG_ERROR, "encoder", "cannot open encoder %s: %s", codec->name, mw_err2str(ret));
    return ret;
}

void mw_encoder_lower_priority(int steps)
{
    /* On Linux a nice value belongs to a thread, and who = 0 names the calling one: the only form the job
     * sandbox allows (it refuses other pids). */
    id_t self = 0;
    int nice;

    errno = 0;
    nice = getpriority(PRIO_PROCESS, self);
    if ((nice == -1 && errno) || setpriority(PRIO_PROCESS, self, nice + steps) < 0)
        mw_log(MW_LOG_DEBUG, "encoder", "encoder threads keep their priority: %s", strerror(errno));
}

int mw_encoder_open_video(AVCodecContext **out, const struct mw_preset *preset, const struct mw_rendition *r,
                          AVRational time_base, AVRational frame_rate, int threads)
{
    const AVCodec *codec = avcodec_find_encoder_by_name(preset->video_codec);
    const struct mw_preset_cap *cap = mw_preset_cap_for(preset, r->height);
    AVRational rate = frame_rate.num > 0 && frame_rate.den > 0 ? frame_rate : (AVRational){30, 1};
    AVDictionary *options = NULL;
    AVCodecContext *ctx = NULL;
    char crf[16];
    int gop;
    int ret;

    *out = NULL;
    if (!codec)
        return AVERROR_ENCODER_NOT_FOUND;
    if (!(ctx = avcodec_alloc_context3(codec)))
        return AVERROR(ENOMEM);
    gop = (int)av_rescale(preset->keyframe_ms, rate.num, (int64_t)rate.den * 1000);
    ctx->width = r->width;
    ctx->height = r->height;
    ctx->pix_fmt = AV_PIX_FMT_YUV420P;
    ctx->sample_aspect_ratio = (AVRational){1, 1};
    ctx->time_base = time_base;
    ctx->framerate = rate;
    ctx->gop_size = gop > 0 ? 2 * gop : 1;
    ctx->keyint_min = gop > 0 ? gop : 1;
    ctx->rc_max_rate = cap->maxrate;
    ctx->rc_buffer_size = (int)cap->bufsize;
    ctx->color_primaries = AVCOL_PRI_BT709;
    ctx->color_trc = AVCOL_TRC_BT709;
    ctx->colorspace = AVCOL_SPC_BT709;
    ctx->color_range = AVCOL_RANGE_MPEG;
    ctx->thread_count = threads;
    /* MP4 wants the parameter sets out of band; MPEG-TS segments get them back in front of each keyframe
     * from the muxer, so one encoder serves both containers. */
    ctx->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    snprintf(crf, sizeof(crf), "%d", preset->crf);
    if ((ret = av_dict_set(&options, "preset", preset->video_speed, 0)) < 0 ||
        (ret = av_dict_set(&options, "profile", preset->video_profile, 0)) < 0 ||
        (ret = av_dict_set(&options, "crf", crf, 0)) < 0 ||
        (ret = av_dict_set(&options, "sc_threshold", "0", 0)) < 0 ||
        (ret = av_dict_set(&options, "forced-idr", "1", 0)) < 0 ||
        (ret = av_dict_set(&options, "x264-params", "open-gop=0", 0)) < 0)
        goto end;
    ret = open_encoder(ctx, codec, &options);
end:
    av_dict_free(&options);
    if (ret < 0) {
        avcodec_free_context(&ctx);
        return ret;
    }
    *out = ctx;
    return 0;
}

int mw_encoder_open_audio(AVCodecContext **out, const struct mw_preset *preset)
{
    const AVCodec *codec = avcodec_find_encoder_by_name(preset->audio_codec);
    AVCodecContext *ctx = NULL;
    int ret;

    *out = NULL;
    if (!codec)
        return AVERROR_ENCODER_NOT_FOUND;
    if (!(ctx = avcodec_alloc_context3(codec)))
        return AVERROR(ENOMEM);
    ctx->sample_rate = preset->audio_sample_rate;
    ctx->sample_fmt = AV_SAMPLE_FMT_FLTP;
    av_channel_layout_default(&ctx->ch_layout, preset->audio_channels);
    ctx->bit_rate = preset->audio_bitrate;
    ctx->time_base = (AVRational){1, preset->audio_sample_rate};
    ctx->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    ret = open_encoder(ctx, codec, NULL);
    if (ret < 0) {
        avcodec_free_context(&ctx);
        return ret;
    }
    *out = ctx;
    return 0;
}

/* H.264 profile, constraint flags and level as the SPS spells them, for "avc1.PPCCLL". */
static int h264_sps_bytes(const AVCodecParameters *par, uint8_t bytes[3])
{
    const uint8_t *data = par->extradata;
    int size = par->extradata_size;

    if (size >= 4 && data[0] == 1) {       /* avcC, as a remuxed MP4 carries it */
        memcpy(bytes, data + 1, 3);
        return 1;
    }
    for (int i = 0; i + 6 < size; i++)     /* Annex B, as x264 writes it */
        if (data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 && (data[i + 3] & 0x1f) == 7) {
            memcpy(bytes, data + i + 4, 3);
            return 1;
        }
    return 0;
}

void mw_encoder_codec_string(const AVCodecParameters *par, char *out, size_t size)
{
    uint8_t sps[3];

    if (par->codec_id == AV_CODEC_ID_H264 && h264_sps_bytes(par, sps))
        snprintf(out, size, "avc1.%02x%02x%02x", sps[0], sps[1], sps[2]);
    else if (par->codec_id == AV_CODEC_ID_H264)
        snprintf(out, size, "avc1.640028");
    else if (par->codec_id == AV_CODEC_ID_AAC)
        snprintf(out, size, "mp4a.40.%d", par->profile >= 0 ? par->profile + 1 : 2);
    else
        snprintf(out, size, "%s", avcodec_get_name(par->codec_id));
}
