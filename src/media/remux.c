/*
 * The fast path: an upload that is already what the web preset would make (H.264 8-bit 4:2:0, AAC, in
 * MP4/MOV, upright, progressive, SDR, no larger than asked, on average within the preset's bitrate cap) only needs its moov atom moved to the front and
 * its extra tracks dropped. Copying packets is two orders of magnitude cheaper than encoding and loses no
 * quality. Inputs with a display matrix are not eligible: their rotation has to be baked into pixels.
 */
#include <stdio.h>
#include <string.h>

#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "transcode_internal.h"

int mw_remux_eligible(const struct mw_probe *probe, const struct mw_preset *preset,
                      const struct mw_rendition *renditions, int count)
{
    const struct mw_probe_stream *v = probe->best_video >= 0 ? &probe->streams[probe->best_video] : NULL;
    const struct mw_probe_stream *a = probe->best_audio >= 0 ? &probe->streams[probe->best_audio] : NULL;
    AVRational sar;

    if (!v || count != 1 || !strstr(probe->format_name, "mp4"))
        return 0;
    sar = v->sample_aspect_ratio;
    if (strcmp(v->codec, "h264") || strcmp(v->pix_fmt, "yuv420p") || v->hdr || v->rotation || v->hflip)
        return 0;
    if (strcmp(v->field_order, "progressive") && strcmp(v->field_order, "unknown"))
        return 0;
    if (sar.num && sar.num != sar.den)
        return 0;
    if (renditions[0].width != v->width || renditions[0].height != v->height)
        return 0;
    if (av_cmp_q(v->avg_frame_rate, (AVRational){preset->max_fps, 1}) > 0)
        return 0;
    /* The preset's cap bounds the peaks of what it encodes; an upload averaging above it is no web file. */
    if (v->bit_rate > mw_preset_cap_for(preset, v->height)->maxrate)
        return 0;
    return !a || !strcmp(a->codec, "aac");
}

/*
 * Untagged video gets the colour description players assume for it anyway (BT.709 from 720 lines up,
 * BT.601 below), written into the container, so the output says what it is without touching the pixels.
 */
static int add_copy_stream(struct mw_muxer *m, const AVStream *st, int *index)
{
    AVCodecParameters *par = avcodec_parameters_alloc();
    int hd = st->codecpar->height >= 720;
    int ret;

    if (!par)
        return AVERROR(ENOMEM);
    ret = avcodec_parameters_copy(par, st->codecpar);
    if (ret >= 0 && par->codec_type == AVMEDIA_TYPE_VIDEO) {
        if (par->color_primaries == AVCOL_PRI_UNSPECIFIED)
            par->color_primaries = hd ? AVCOL_PRI_BT709 : AVCOL_PRI_SMPTE170M;
        if (par->color_trc == AVCOL_TRC_UNSPECIFIED)
            par->color_trc = hd ? AVCOL_TRC_BT709 : AVCOL_TRC_SMPTE170M;
        if (par->color_space == AVCOL_SPC_UNSPECIFIED)
            par->color_space = hd ? AVCOL_SPC_BT709 : AVCOL_SPC_SMPTE170M;
        if (par->color_range == AVCOL_RANGE_UNSPECIFIED)
            par->color_range = AVCOL_RANGE_MPEG;
    }
    if (ret >= 0)
        ret = mw_muxer_add_stream(m, par, st->time_base, index);
    avcodec_parameters_free(&par);
    return ret;
}

int mw_remux_run(struct mw_input *in, const struct mw_probe *probe, const char *path, char *codecs,
                 size_t codecs_size)
{
    AVFormatContext *format = mw_input_format(in);
    int source[2] = {probe->streams[probe->best_video].index,
                     probe->best_audio >= 0 ? probe->streams[probe->best_audio].index : -1};
    int target[2] = {-1, -1};
    int64_t start[2] = {0, 0};
    struct mw_muxer *m = NULL;
    AVPacket *pkt = av_packet_alloc();
    int ret;

    codecs[0] = '\0';
    if (!pkt)
        return AVERROR(ENOMEM);
    ret = mw_muxer_open(&m, "mp4", path, 0);
    for (int i = 0; ret >= 0 && i < 2; i++) {
        const AVStream *st = source[i] >= 0 ? format->streams[source[i]] : NULL;
        size_t used = strlen(codecs);
        char codec[32];

        if (!st)
            continue;
        ret = add_copy_stream(m, st, &target[i]);
        mw_encoder_codec_string(st->codecpar, codec, sizeof(codec));
        snprintf(codecs + used, codecs_size - used, "%s%s", used ? "," : "", codec);
    }
    if (ret < 0 || (ret = mw_muxer_start(m)) < 0)
        goto end;
    for (int i = 0; i < 2; i++)
        if (source[i] >= 0)
            start[i] = mw_input_stream_ts(in, source[i], 0);
    while ((ret = mw_input_read(in, pkt)) >= 0) {
        int which = pkt->stream_index == source[0] ? 0 : pkt->stream_index == source[1] ? 1 : -1;

        if (which >= 0) {
            if (pkt->pts != AV_NOPTS_VALUE)
                pkt->pts -= start[which];
            if (pkt->dts != AV_NOPTS_VALUE)
                pkt->dts -= start[which];
            ret = mw_muxer_write(m, target[which], pkt, format->streams[source[which]]->time_base);
        }
        av_packet_unref(pkt);
        if (ret < 0)
            goto end;
    }
    if (ret != AVERROR_EOF)
        goto end;
    ret = mw_muxer_finish(m);
end:
    if (ret < 0)
        mw_log(MW_LOG_ERROR, "remux", "remuxing into %s failed: %s", path, mw_err2str(ret));
    mw_muxer_free(&m);
    av_packet_free(&pkt);
    return ret;
}
