#include <libavcodec/avcodec.h>
#include <libavutil/time.h>

#include "mediaworker/decode_check.h"
#include "mediaworker/error.h"
#include "mediaworker/hwaccel.h"

static int drain(AVCodecContext *dec, AVFrame *frame, AVFrame **transfer, struct mw_decode_stats *stats)
{
    int ret;

    while ((ret = avcodec_receive_frame(dec, frame)) >= 0) {
        ret = mw_hwaccel_frame_to_software(frame, transfer);
        if (ret > 0)
            stats->on_device = 1;
        if (frame->flags & AV_FRAME_FLAG_CORRUPT)
            stats->corrupt_frames++;
        stats->frames++;
        av_frame_unref(frame);
        if (ret < 0)
            return ret;
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

int mw_decode_check(struct mw_input *in, int threads, AVBufferRef *hw_device, struct mw_decode_stats *stats)
{
    AVFormatContext *fmt = mw_input_format(in);
    int64_t started = av_gettime_relative();
    AVCodecContext *dec = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    AVFrame *transfer = NULL;
    int stream, ret;

    *stats = (struct mw_decode_stats){0};
    if (!pkt || !frame) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (stream < 0) {
        ret = MW_ERR_NO_PICTURE;
        goto end;
    }
    ret = mw_input_open_decoder_hw(in, stream, threads, hw_device, &dec, NULL);
    if (ret < 0)
        goto end;
    while ((ret = mw_input_read(in, pkt)) >= 0) {
        if (pkt->stream_index == stream) {
            ret = avcodec_send_packet(dec, pkt);
            /* A damaged packet costs a frame, not the check: count on, as a player would. */
            if (ret >= 0 || ret == AVERROR_INVALIDDATA)
                ret = drain(dec, frame, &transfer, stats);
        }
        av_packet_unref(pkt);
        if (ret < 0)
            goto end;
        if (mw_input_deadline_passed(in)) {
            ret = MW_ERR_DEADLINE;
            goto end;
        }
    }
    if (ret != AVERROR_EOF)
        goto end;
    ret = avcodec_send_packet(dec, NULL);
    if (ret >= 0)
        ret = drain(dec, frame, &transfer, stats);
end:
    stats->seconds = (double)(av_gettime_relative() - started) / 1e6;
    avcodec_free_context(&dec);
    av_frame_free(&transfer);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    return ret;
}
