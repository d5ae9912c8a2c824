/*
 * The encoder stage: one thread per rendition takes scaled frames from its queue, forces keyframes on the
 * shared PTS grid, encodes, and writes the packets to the rendition's containers. Running the encoders in
 * threads of their own lets decoding and scaling of the next frames overlap encoding instead of
 * alternating with it, as it would in a single loop.
 */
#include <pthread.h>

#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "transcode_internal.h"

int mw_rendition_output_write(struct mw_rendition_output *r, const AVPacket *pkt, AVPacket *copy, int mp4_index,
                              int hls_index, AVRational tb)
{
    int ret = 0;

    pthread_mutex_lock(&r->lock);
    if (r->hls) {
        if ((ret = av_packet_ref(copy, pkt)) < 0)
            goto end;
        ret = mw_muxer_write(r->hls, hls_index, copy, tb);
        av_packet_unref(copy);
        if (ret < 0)
            goto end;
    }
    if ((ret = av_packet_ref(copy, pkt)) < 0)
        goto end;
    ret = mw_muxer_write(r->mp4, mp4_index, copy, tb);
    av_packet_unref(copy);
end:
    pthread_mutex_unlock(&r->lock);
    return ret;
}

/*
 * Video packets are written one behind, so each one's duration is the time to the next (the MP4 muxer
 * takes that itself, the HLS muxer sums packet durations into EXTINF, so a nominal 1/24 s on a part that
 * runs at 30 fps would stretch the playlist), and the last one's must reach past the last picture (which,
 * after B-frame reordering on VFR input, need not be the last packet's). Without that the MP4 edit list
 * would cut the last picture off.
 */
static int write_video(struct mw_rendition_output *r, int last)
{
    int ret = 0;

    if (r->held->data) {
        const AVPacket *next = r->encoded;
        if (!last && next->dts != AV_NOPTS_VALUE && r->held->dts != AV_NOPTS_VALUE && next->dts > r->held->dts)
            r->held->duration = next->dts - r->held->dts;
        /* The MP4 track ends at the last dts plus its duration, shifted by the first packet's reorder delay. */
        int64_t reach = r->end - r->held->dts - r->dts_shift;
        if (last && r->held->dts != AV_NOPTS_VALUE && reach > r->held->duration)
            r->held->duration = reach;
        ret = mw_rendition_output_write(r, r->held, r->copy, r->mp4_video, r->hls_video, r->encoder->time_base);
        av_packet_unref(r->held);
    }
    if (!last) {
        AVPacket *pkt = r->encoded;

        if (r->dts_shift < 0)
            r->dts_shift = pkt->pts != AV_NOPTS_VALUE && pkt->dts != AV_NOPTS_VALUE ? pkt->pts - pkt->dts : 0;
        if (pkt->pts != AV_NOPTS_VALUE && pkt->pts + r->frame_ticks > r->end)
            r->end = pkt->pts + r->frame_ticks;
        if (pkt->duration <= 0)
            pkt->duration = r->frame_ticks;
        av_packet_move_ref(r->held, pkt);
    }
    return ret;
}

/* Sends frame (NULL: flush) to the rendition's encoder and writes what comes out. */
static int encode_video(struct mw_rendition_output *r, AVFrame *frame)
{
    int ret = avcodec_send_frame(r->encoder, frame);

    while (ret >= 0 && (ret = avcodec_receive_packet(r->encoder, r->encoded)) >= 0)
        ret = write_video(r, 0);
    if (ret == AVERROR_EOF)
        return write_video(r, 1);
    return ret == AVERROR(EAGAIN) ? 0 : ret;
}

/* Keyframes on the same PTS grid in every rendition; every other frame type is the encoder's choice. */
static void force_keyframe(struct mw_rendition_output *r, AVFrame *frame)
{
    frame->pict_type = AV_PICTURE_TYPE_NONE;
    if (frame->pts >= r->next_keyframe) {
        frame->pict_type = AV_PICTURE_TYPE_I;
        r->next_keyframe = (frame->pts / r->keyframe_ticks + 1) * r->keyframe_ticks;
    }
}

/*
 * One thread per rendition encodes, so decoding and scaling the next frames overlaps the encoder's work
 * instead of alternating with it. On failure it aborts its queue, which stops the producer.
 */
static void *encode_thread(void *opaque)
{
    struct mw_rendition_output *r = opaque;
    int ret;

    mw_log_context_set(r->log_job_id, r->log_request_id);
    mw_encoder_lower_priority(r->nice_steps);
    while ((ret = mw_frame_queue_pop(r->queue, r->work)) >= 0) {
        force_keyframe(r, r->work);
        ret = encode_video(r, r->work);
        av_frame_unref(r->work);
        if (ret < 0)
            break;
    }
    if (ret == AVERROR_EOF)
        ret = encode_video(r, NULL);
    r->thread_ret = ret;
    /* AVERROR_EXIT means another rendition failed and aborted this queue: that one logs and reports it. */
    if (ret < 0 && ret != AVERROR_EXIT) {
        mw_log(MW_LOG_ERROR, "transcode", "encoding %s failed: %s", r->label, mw_err2str(ret));
        mw_frame_queue_abort(r->queue);
    }
    return NULL;
}

int mw_rendition_output_start(struct mw_rendition_output *r)
{
    int err;

    mw_log_context_get(r->log_job_id, sizeof(r->log_job_id), r->log_request_id, sizeof(r->log_request_id));
    err = pthread_create(&r->thread, NULL, encode_thread, r);

    if (err)
        return AVERROR(err);
    r->thread_started = 1;
    return 0;
}

int mw_rendition_output_join(struct mw_rendition_output *r, int abort)
{
    if (!r->thread_started)
        return 0;
    if (abort)
        mw_frame_queue_abort(r->queue);
    pthread_join(r->thread, NULL);
    r->thread_started = 0;
    return r->thread_ret;
}
