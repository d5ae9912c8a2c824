/*
 * Decoding one stream with timestamps an encoder can trust.
 *
 * Uploads carry every kind of broken timing: streams without pts, repeated pts after a splice, VFR phone
 * video with jittery stamps. Encoders and muxers refuse non-increasing timestamps, and synthesising a whole
 * new timeline would drift away from the audio. So the decoder keeps the container's timestamps where they
 * are usable and repairs only the frames that are not: a missing pts is extrapolated from the previous
 * frame's duration, a pts at or before the previous one is moved just past it.
 */
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "transcode_internal.h"

struct mw_decoder {
    AVCodecContext *ctx;
    AVRational time_base;          /* the stream's */
    int64_t start;                 /* subtracted from every pts */
    int64_t last_pts;              /* after the shift; AV_NOPTS_VALUE before the first frame */
    int64_t last_duration;
};

int mw_decoder_open(struct mw_decoder **out, const struct mw_input *in, int stream_index, int threads)
{
    const AVStream *st = mw_input_format(in)->streams[stream_index];
    struct mw_decoder *dec;
    int ret;

    *out = NULL;
    dec = av_mallocz(sizeof(*dec));
    if (!dec)
        return AVERROR(ENOMEM);
    ret = mw_input_open_decoder(in, stream_index, threads, &dec->ctx);
    if (ret < 0) {
        av_free(dec);
        return ret;
    }
    dec->time_base = st->time_base;
    dec->last_pts = AV_NOPTS_VALUE;
    *out = dec;
    return 0;
}

void mw_decoder_set_start(struct mw_decoder *dec, int64_t start)
{
    dec->start = start;
}

int mw_decoder_send(struct mw_decoder *dec, const AVPacket *pkt)
{
    return avcodec_send_packet(dec->ctx, pkt);
}

/* Duration of one frame in the stream time base, from the frame, else the codec's rate. */
static int64_t frame_duration(const struct mw_decoder *dec, const AVFrame *frame)
{
    const AVCodecContext *ctx = dec->ctx;

    if (frame->pkt_duration > 0)
        return frame->pkt_duration;
    if (ctx->codec_type == AVMEDIA_TYPE_AUDIO && frame->sample_rate > 0)
        return av_rescale_q(frame->nb_samples, (AVRational){1, frame->sample_rate}, dec->time_base);
    if (ctx->framerate.num > 0 && ctx->framerate.den > 0) {
        int64_t duration = av_rescale_q(1, av_inv_q(ctx->framerate), dec->time_base);
        return duration > 0 ? duration : 1;
    }
    return dec->last_duration > 0 ? dec->last_duration : 1;
}

int mw_decoder_receive(struct mw_decoder *dec, AVFrame *frame)
{
    int64_t pts;
    int ret = avcodec_receive_frame(dec->ctx, frame);

    if (ret < 0)
        return ret;
    pts = frame->best_effort_timestamp;
    if (pts != AV_NOPTS_VALUE)
        pts -= dec->start;
    if (dec->last_pts != AV_NOPTS_VALUE) {
        if (pts == AV_NOPTS_VALUE)
            pts = dec->last_pts + dec->last_duration;
        else if (pts <= dec->last_pts)
            pts = dec->last_pts + 1;
    } else if (pts == AV_NOPTS_VALUE) {
        pts = 0;
    }
    dec->last_duration = frame_duration(dec, frame);
    dec->last_pts = pts;
    frame->pts = pts;
    return 0;
}

int64_t mw_decoder_end(const struct mw_decoder *dec)
{
    return dec->last_pts == AV_NOPTS_VALUE ? AV_NOPTS_VALUE : dec->last_pts + dec->last_duration;
}

const AVCodecContext *mw_decoder_context(const struct mw_decoder *dec)
{
    return dec->ctx;
}

void mw_decoder_free(struct mw_decoder **pdec)
{
    struct mw_decoder *dec = pdec ? *pdec : NULL;

    if (!dec)
        return;
    avcodec_free_context(&dec->ctx);
    av_free(dec);
    *pdec = NULL;
}
