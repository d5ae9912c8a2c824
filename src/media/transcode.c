/*
 * The transcode pipeline: one demux, one decode per stream, N renditions.
 *
 * Notes on the pipeline:
 * - The source is read once. Video frames go through one filter graph whose split feeds one branch per
 *   rendition (filter.c), so deinterlacing and tone mapping run once and each rendition scales once.
 * - Audio is encoded once; each encoded packet is referenced (not copied) into every container.
 * - Keyframes are forced by PTS every keyframe_ms in every rendition and the encoders' GOP settings match,
 *   so all renditions and their HLS segments switch at the same instants.
 * - The pipeline owns three packets and two frames, allocated once; each is unreferenced at one point after
 *   its use.
 * - All outputs are written under temporary names, verified, and only then renamed into place; on any
 *   failure every temporary file is removed.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/output_check.h"
#include "mediaworker/path.h"
#include "transcode_internal.h"

#define PATH_SIZE 2048
#define PROGRESS_INTERVAL_US 250000
#define QUEUE_FRAMES 3

struct rendition {
    struct mw_rendition size;            /* {0,0} for the audio-only output */
    char label[16];                      /* "720p", "audio" */
    char name[128];                      /* final file name in the output directory */
    char tmp_path[PATH_SIZE];
    char hls_playlist[PATH_SIZE];        /* in the temporary HLS directory */
    char codecs[64];
    AVCodecContext *encoder;             /* NULL for the audio-only output */
    struct mw_muxer *mp4, *hls;
    int mp4_video, mp4_audio, hls_video, hls_audio;
    int64_t next_keyframe;               /* encoder time base */
    int64_t keyframe_ticks;
    int64_t frame_ticks;                 /* one frame at the output rate, encoder time base */
    AVPacket *held;                      /* the latest video packet, written when the next one comes */
    int64_t end;                         /* where the latest picture ends, encoder time base */
    int64_t dts_shift;                   /* pts - dts of the first packet; -1 before it */

    /* The encoder thread owns encoder, the fields above it from next_keyframe on, and encoded, copy and
     * work; it gets frames through queue. lock guards the muxers, which the main thread writes audio to. */
    struct mw_frame_queue *queue;
    pthread_t thread;
    int thread_started;
    int thread_ret;                      /* read by the main thread after joining */
    AVPacket *encoded, *copy;
    AVFrame *work;
    pthread_mutex_t lock;
    int lock_ready;
};

struct pipeline {
    const struct mw_transcode_options *opt;
    const struct mw_preset *preset;
    const char *output_dir;
    AVFormatContext *format;
    struct mw_input *in;
    int video_index, audio_index;        /* stream indexes, -1 when absent */
    struct mw_decoder *video_decoder, *audio_decoder;
    struct mw_filter *video_filter, *audio_filter;
    AVCodecContext *audio_encoder;
    int count;
    struct rendition r[MW_TRANSCODE_MAX_RENDITIONS];
    AVPacket *pkt, *encoded, *copy;
    AVFrame *frame, *filtered;
    AVRational output_rate;
    double duration_s;
    int64_t expected_frames, runaway_limit, encoded_frames, decoded_frames;
    int video_started;
    int64_t started, last_progress;
    char hls_tmp_dir[PATH_SIZE];
};

/* ---- setup ---- */

static int stream_index_of(const struct mw_probe *probe, int best)
{
    return best >= 0 ? probe->streams[best].index : -1;
}

static void name_renditions(struct pipeline *p)
{
    for (int i = 0; i < p->count; i++) {
        struct rendition *r = &p->r[i];
        const char *extension = r->size.height ? "mp4" : "m4a";
        char label[sizeof(r->label)];
        char name[sizeof(r->name)];

        if (r->size.height)
            snprintf(label, sizeof(label), "%dp", r->size.height);
        else
            snprintf(label, sizeof(label), "audio");
        snprintf(name, sizeof(name), "%s_%s.%s", p->preset->name, label, extension);
        snprintf(r->tmp_path, sizeof(r->tmp_path), "%s/.%s.%ld.tmp", p->output_dir, name, (long)getpid());
        if (p->opt->hls)
            snprintf(r->hls_playlist, sizeof(r->hls_playlist), "%.1500s/%s/index.m3u8", p->hls_tmp_dir, label);
        memcpy(r->label, label, sizeof(label));
        memcpy(r->name, name, sizeof(name));
    }
}

static int plan_renditions(struct pipeline *p, const struct mw_probe *probe)
{
    const struct mw_transcode_options *opt = p->opt;
    const int *heights = opt->height_count > 0 ? opt->heights : p->preset->default_heights;
    int count = opt->height_count;
    struct mw_rendition sizes[MW_TRANSCODE_MAX_RENDITIONS];
    int ret;

    if (opt->height_count <= 0)
        for (count = 0; count < MW_TRANSCODE_MAX_RENDITIONS && heights[count]; count++)
            ;
    if (p->video_index < 0) {
        p->count = 1;
    } else {
        const struct mw_probe_stream *v = &probe->streams[probe->best_video];
        ret = mw_ladder_compute(v->width, v->height, v->sample_aspect_ratio, v->rotation, heights, count, sizes,
                                MW_TRANSCODE_MAX_RENDITIONS);
        if (ret < 0)
            return ret;
        p->count = ret;
        for (int i = 0; i < p->count; i++)
            p->r[i].size = sizes[i];
    }
    if (opt->hls)
        snprintf(p->hls_tmp_dir, sizeof(p->hls_tmp_dir), "%s/.hls.%ld.tmp", p->output_dir, (long)getpid());
    name_renditions(p);
    return 0;
}

static AVRational source_rate(const AVStream *st)
{
    if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
        return st->avg_frame_rate;
    return st->r_frame_rate;
}

static int open_video(struct pipeline *p, const struct mw_probe *probe)
{
    const struct mw_probe_stream *v = &probe->streams[probe->best_video];
    const AVStream *st = p->format->streams[p->video_index];
    struct mw_rendition sizes[MW_TRANSCODE_MAX_RENDITIONS];
    struct mw_video_filter_spec spec = {0};
    int ret;

    ret = mw_decoder_open(&p->video_decoder, p->in, p->video_index, p->opt->threads);
    if (ret < 0)
        return ret;
    for (int i = 0; i < p->count; i++)
        sizes[i] = p->r[i].size;
    spec.source = mw_decoder_context(p->video_decoder);
    spec.time_base = st->time_base;
    spec.frame_rate = source_rate(st);
    spec.output_rate = p->output_rate = mw_ladder_frame_rate(spec.frame_rate, p->preset->max_fps);
    spec.rotation = v->rotation;
    spec.hflip = v->hflip;
    spec.deinterlace = strcmp(v->field_order, "progressive") && strcmp(v->field_order, "unknown");
    spec.tonemap = !strcmp(v->color_transfer, "smpte2084") || !strcmp(v->color_transfer, "arib-std-b67");
    spec.count = p->count;
    spec.renditions = sizes;
    spec.threads = p->opt->threads;
    ret = mw_filter_new_video(&p->video_filter, &spec);
    if (ret < 0)
        return ret;
    for (int i = 0; i < p->count; i++) {
        struct rendition *r = &p->r[i];
        AVRational tb = mw_filter_time_base(p->video_filter, i);

        ret = mw_encoder_open_video(&r->encoder, p->preset, &r->size, tb, p->output_rate, p->opt->threads);
        if (ret < 0)
            return ret;
        if (!(r->held = av_packet_alloc()) || !(r->encoded = av_packet_alloc()) || !(r->copy = av_packet_alloc()) ||
            !(r->work = av_frame_alloc()))
            return AVERROR(ENOMEM);
        if ((ret = mw_frame_queue_new(&r->queue, QUEUE_FRAMES)) < 0)
            return ret;
        r->dts_shift = -1;
        r->keyframe_ticks = av_rescale_q(p->preset->keyframe_ms, (AVRational){1, 1000}, tb);
        r->frame_ticks = av_rescale_q(1, av_inv_q(p->output_rate.num > 0 ? p->output_rate : (AVRational){30, 1}), tb);
        if (r->keyframe_ticks < 1)
            r->keyframe_ticks = 1;
        if (r->frame_ticks < 1)
            r->frame_ticks = 1;
    }
    return 0;
}

static int open_audio(struct pipeline *p)
{
    const AVStream *st = p->format->streams[p->audio_index];
    int ret;

    ret = mw_decoder_open(&p->audio_decoder, p->in, p->audio_index, 1);
    if (ret < 0)
        return ret;
    ret = mw_encoder_open_audio(&p->audio_encoder, p->preset);
    if (ret < 0)
        return ret;
    return mw_filter_new_audio(&p->audio_filter, mw_decoder_context(p->audio_decoder), st->time_base,
                               p->audio_encoder->sample_rate, p->audio_encoder->ch_layout.nb_channels,
                               p->audio_encoder->frame_size);
}

/* Adds the video and audio streams to one container of a rendition. */
static int add_streams(struct pipeline *p, struct rendition *r, struct mw_muxer *m, int *video, int *audio)
{
    AVCodecParameters *par = avcodec_parameters_alloc();
    int ret = par ? 0 : AVERROR(ENOMEM);

    *video = *audio = -1;
    if (!ret && r->encoder && (ret = avcodec_parameters_from_context(par, r->encoder)) >= 0)
        ret = mw_muxer_add_stream(m, par, r->encoder->time_base, video);
    if (ret >= 0 && r->encoder)
        mw_encoder_codec_string(par, r->codecs, sizeof(r->codecs));
    if (ret >= 0 && p->audio_encoder && (ret = avcodec_parameters_from_context(par, p->audio_encoder)) >= 0) {
        char audio_codec[32];
        ret = mw_muxer_add_stream(m, par, p->audio_encoder->time_base, audio);
        mw_encoder_codec_string(par, audio_codec, sizeof(audio_codec));
        snprintf(r->codecs + strlen(r->codecs), sizeof(r->codecs) - strlen(r->codecs), "%s%s",
                 r->codecs[0] ? "," : "", audio_codec);
    }
    avcodec_parameters_free(&par);
    return ret < 0 ? ret : mw_muxer_start(m);
}

static int open_outputs(struct pipeline *p)
{
    int ret;

    if (p->opt->hls && (ret = mw_path_mkdirs(p->hls_tmp_dir)) < 0)
        return ret;
    for (int i = 0; i < p->count; i++) {
        struct rendition *r = &p->r[i];

        if (pthread_mutex_init(&r->lock, NULL))
            return AVERROR(ENOMEM);
        r->lock_ready = 1;

        ret = mw_muxer_open(&r->mp4, "mp4", r->tmp_path, 0);
        if (ret < 0)
            return ret;
        r->codecs[0] = '\0';
        ret = add_streams(p, r, r->mp4, &r->mp4_video, &r->mp4_audio);
        if (ret < 0)
            return ret;
        if (!p->opt->hls)
            continue;
        char dir[PATH_SIZE];
        snprintf(dir, sizeof(dir), "%.1500s/%s", p->hls_tmp_dir, r->label);
        if ((ret = mw_path_mkdirs(dir)) < 0 ||
            (ret = mw_muxer_open(&r->hls, "hls", r->hls_playlist, p->preset->hls_segment_ms)) < 0)
            return ret;
        r->codecs[0] = '\0';
        ret = add_streams(p, r, r->hls, &r->hls_video, &r->hls_audio);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static void *encode_thread(void *opaque);

static int start_encoders(struct pipeline *p)
{
    for (int i = 0; i < p->count; i++) {
        struct rendition *r = &p->r[i];
        int err;

        if (!r->encoder)
            continue;
        if ((err = pthread_create(&r->thread, NULL, encode_thread, r)))
            return AVERROR(err);
        r->thread_started = 1;
    }
    return 0;
}

/* ---- the frame loop ---- */

static void report_progress(struct pipeline *p, int64_t pts, AVRational tb, int final)
{
    int64_t now = av_gettime_relative();
    struct mw_progress progress = {.phase = "transcode"};
    double media_s = pts == AV_NOPTS_VALUE ? 0 : (double)pts * av_q2d(tb);

    if (!p->opt->progress || (!final && now - p->last_progress < PROGRESS_INTERVAL_US))
        return;
    p->last_progress = now;
    if (p->expected_frames > 0)
        mw_progress_compute(&progress, final ? p->expected_frames : p->decoded_frames, p->expected_frames,
                            media_s, (double)(now - p->started) / 1e6);
    else
        mw_progress_compute(&progress, final ? 1 : (int64_t)(media_s * 1000), (int64_t)(p->duration_s * 1000),
                            media_s, (double)(now - p->started) / 1e6);
    p->opt->progress(p->opt->progress_opaque, &progress);
}

/* Writes pkt (in time base tb) to the containers of rendition r, through the caller's scratch packet copy;
 * pkt keeps its reference. Called from the encoder thread (video) and the main thread (audio). */
static int write_packet(struct rendition *r, const AVPacket *pkt, AVPacket *copy, int mp4_index, int hls_index,
                        AVRational tb)
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
 * Video packets are written one behind: muxers take each sample's duration from the next timestamp, so
 * only the last packet's own duration matters, and it must reach past the last picture (which, after
 * B-frame reordering on VFR input, need not be the last packet's). Without that the MP4 edit list would
 * cut the last picture off.
 */
static int write_video(struct rendition *r, int last)
{
    int ret = 0;

    if (r->held->data) {
        /* The MP4 track ends at the last dts plus its duration, shifted by the first packet's reorder delay. */
        int64_t reach = r->end - r->held->dts - r->dts_shift;
        if (last && r->held->dts != AV_NOPTS_VALUE && reach > r->held->duration)
            r->held->duration = reach;
        ret = write_packet(r, r->held, r->copy, r->mp4_video, r->hls_video, r->encoder->time_base);
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
static int encode_video(struct rendition *r, AVFrame *frame)
{
    int ret = avcodec_send_frame(r->encoder, frame);

    while (ret >= 0 && (ret = avcodec_receive_packet(r->encoder, r->encoded)) >= 0)
        ret = write_video(r, 0);
    if (ret == AVERROR_EOF)
        return write_video(r, 1);
    return ret == AVERROR(EAGAIN) ? 0 : ret;
}

static int encode_audio(struct pipeline *p, AVFrame *frame)
{
    int ret = avcodec_send_frame(p->audio_encoder, frame);

    while (ret >= 0 && (ret = avcodec_receive_packet(p->audio_encoder, p->encoded)) >= 0) {
        for (int i = 0; i < p->count && ret >= 0; i++)
            ret = write_packet(&p->r[i], p->encoded, p->copy, p->r[i].mp4_audio, p->r[i].hls_audio,
                               p->audio_encoder->time_base);
        av_packet_unref(p->encoded);
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

/* Keyframes on the same PTS grid in every rendition; every other frame type is the encoder's choice. */
static void force_keyframe(struct rendition *r, AVFrame *frame)
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
    struct rendition *r = opaque;
    int ret;

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
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "transcode", "encoding %s failed: %s", r->label, mw_err2str(ret));
        mw_frame_queue_abort(r->queue);
    }
    return NULL;
}

/* Ends the encoder threads (after the end marker, or aborting them) and returns the first failure. */
static int join_encoders(struct pipeline *p, int abort)
{
    int ret = 0;

    for (int i = 0; i < p->count; i++) {
        struct rendition *r = &p->r[i];

        if (!r->thread_started)
            continue;
        if (abort)
            mw_frame_queue_abort(r->queue);
        pthread_join(r->thread, NULL);
        r->thread_started = 0;
        if (r->thread_ret < 0 && ret >= 0)
            ret = r->thread_ret;
    }
    return ret;
}

/* Moves every frame the video graph has ready to the encoder threads. */
static int drain_video_filter(struct pipeline *p)
{
    for (int i = 0; i < p->count; i++) {
        int ret;

        while ((ret = mw_filter_pull(p->video_filter, i, p->filtered)) >= 0) {
            if (i == 0 && ++p->encoded_frames > p->runaway_limit) {
                av_frame_unref(p->filtered);
                mw_log(MW_LOG_ERROR, "transcode", "%lld frames for a %.3f s input: stopping",
                       (long long)p->encoded_frames, p->duration_s);
                return MW_ERR_RUNAWAY;
            }
            ret = mw_frame_queue_push(p->r[i].queue, p->filtered);
            av_frame_unref(p->filtered);
            if (ret == AVERROR_EXIT) {
                ret = join_encoders(p, 1);
                return ret < 0 ? ret : AVERROR_EXIT;
            }
            if (ret < 0)
                return ret;
        }
        if (ret != AVERROR(EAGAIN) && ret != AVERROR_EOF)
            return ret;
    }
    return 0;
}

static int drain_audio_filter(struct pipeline *p)
{
    int ret;

    while ((ret = mw_filter_pull(p->audio_filter, 0, p->filtered)) >= 0) {
        ret = encode_audio(p, p->filtered);
        av_frame_unref(p->filtered);
        if (ret < 0)
            return ret;
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

/* Receives every decoded frame of a stream and pushes it through its filter to the encoders. */
static int drain_decoder(struct pipeline *p, int video)
{
    struct mw_decoder *dec = video ? p->video_decoder : p->audio_decoder;
    AVRational tb = p->format->streams[video ? p->video_index : p->audio_index]->time_base;
    int ret;

    while ((ret = mw_decoder_receive(dec, p->frame)) >= 0) {
        /* A video stream that starts a little after its audio starts at 0 like it (the first picture is
         * shown from the start), so the output's streams begin together. */
        if (video && !p->video_started)
            p->frame->pts = 0;
        p->video_started |= video;
        if (video || p->video_index < 0) {
            p->decoded_frames++;
            report_progress(p, p->frame->pts, tb, 0);
        }
        ret = mw_filter_push(video ? p->video_filter : p->audio_filter, p->frame);
        av_frame_unref(p->frame);
        if (ret < 0)
            return ret;
        ret = video ? drain_video_filter(p) : drain_audio_filter(p);
        if (ret < 0)
            return ret;
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

static int decode_packet(struct pipeline *p, int video, const AVPacket *pkt)
{
    int ret = mw_decoder_send(video ? p->video_decoder : p->audio_decoder, pkt);

    /* A damaged packet costs a picture, not the job: the decoder resynchronises at the next one. */
    if (ret == AVERROR_INVALIDDATA && pkt) {
        mw_log(MW_LOG_WARN, "transcode", "skipped an undecodable %s packet", video ? "video" : "audio");
        ret = 0;
    }
    if (ret < 0 && ret != AVERROR_EOF)
        return ret;
    return drain_decoder(p, video);
}

static int flush_all(struct pipeline *p)
{
    int ret;

    if (p->video_decoder) {
        if ((ret = decode_packet(p, 1, NULL)) < 0 || (ret = mw_filter_push(p->video_filter, NULL)) < 0 ||
            (ret = drain_video_filter(p)) < 0)
            return ret;
        for (int i = 0; i < p->count; i++)
            if ((ret = mw_frame_queue_push(p->r[i].queue, NULL)) < 0 && ret != AVERROR_EXIT)
                return ret;
        if ((ret = join_encoders(p, 0)) < 0)
            return ret;
    }
    if (p->audio_decoder) {
        if ((ret = decode_packet(p, 0, NULL)) < 0 || (ret = mw_filter_push(p->audio_filter, NULL)) < 0 ||
            (ret = drain_audio_filter(p)) < 0 || (ret = encode_audio(p, NULL)) < 0)
            return ret;
    }
    for (int i = 0; i < p->count; i++) {
        if ((ret = mw_muxer_finish(p->r[i].mp4)) < 0)
            return ret;
        if (p->r[i].hls && (ret = mw_muxer_finish(p->r[i].hls)) < 0)
            return ret;
    }
    return 0;
}

static int run_loop(struct pipeline *p)
{
    int ret;

    while ((ret = av_read_frame(p->format, p->pkt)) >= 0) {
        int index = p->pkt->stream_index;

        if (index == p->video_index || index == p->audio_index)
            ret = decode_packet(p, index == p->video_index, p->pkt);
        av_packet_unref(p->pkt);
        if (ret < 0)
            return ret;
    }
    if (ret != AVERROR_EOF)
        return ret;
    return flush_all(p);
}

/* ---- verification and commit ---- */

/* How long the decoded media lasted: the reference for the outputs, since a container's header may only
 * estimate it (MP3 from its bitrate) or promise more than the file holds. */
static double decoded_duration(const struct pipeline *p)
{
    double end = 0;

    for (int video = 0; video < 2; video++) {
        const struct mw_decoder *dec = video ? p->video_decoder : p->audio_decoder;
        int64_t ticks = dec ? mw_decoder_end(dec) : AV_NOPTS_VALUE;
        double s;

        if (ticks == AV_NOPTS_VALUE)
            continue;
        s = (double)ticks * av_q2d(p->format->streams[video ? p->video_index : p->audio_index]->time_base);
        end = s > end ? s : end;
    }
    return end > 0 ? end : p->duration_s;
}

static int check_outputs(struct pipeline *p, char *why, size_t why_size)
{
    struct mw_output_expect expect = {
        .duration_s = p->duration_s,
        .video = p->video_index >= 0,
        .audio = p->audio_index >= 0,
        .mp4 = 1,
    };
    int ret;

    /* One frame of the output, or one AAC frame for audio alone; never less than a millisecond. */
    expect.tolerance_s = p->video_index >= 0 && p->output_rate.num > 0 ? av_q2d(av_inv_q(p->output_rate))
                                                                       : 1024.0 / p->preset->audio_sample_rate;
    expect.tolerance_s += 0.001;
    for (int i = 0; i < p->count; i++) {
        ret = mw_output_check_file(p->r[i].tmp_path, &expect, p->opt->limits, why, why_size);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int finish_hls(struct pipeline *p, char *why, size_t why_size)
{
    struct mw_hls_variant variants[MW_TRANSCODE_MAX_RENDITIONS];
    char uris[MW_TRANSCODE_MAX_RENDITIONS][64];
    char master[PATH_SIZE];
    int ret;

    for (int i = 0; i < p->count; i++) {
        struct mw_hls_stats stats;
        double tolerance = 0.1 + (p->output_rate.num ? av_q2d(av_inv_q(p->output_rate)) : 0);

        ret = mw_hls_playlist_stats(p->r[i].hls_playlist, &stats);
        if (ret < 0 || (p->duration_s > 0 && (stats.duration_s < p->duration_s - tolerance ||
                                                stats.duration_s > p->duration_s + tolerance))) {
            snprintf(why, why_size, "HLS playlist %s: %d segments, %.3f s of %.3f s", p->r[i].label,
                     ret < 0 ? 0 : stats.segments, ret < 0 ? 0 : stats.duration_s, p->duration_s);
            return ret == AVERROR(ENOMEM) ? ret : MW_ERR_OUTPUT_CHECK;
        }
        snprintf(uris[i], sizeof(uris[i]), "%s/index.m3u8", p->r[i].label);
        variants[i] = (struct mw_hls_variant){
            .uri = uris[i], .bandwidth = stats.peak_bps, .average_bandwidth = stats.average_bps,
            .width = p->r[i].size.width, .height = p->r[i].size.height, .frame_rate = p->output_rate,
            .codecs = p->r[i].codecs,
        };
    }
    snprintf(master, sizeof(master), "%.1500s/master.m3u8", p->hls_tmp_dir);
    return mw_hls_write_master(master, variants, p->count);
}

static int commit_outputs(struct pipeline *p, struct mw_transcode_result *result)
{
    char final[PATH_SIZE];
    int ret;

    for (int i = 0; i < p->count; i++) {
        struct rendition *r = &p->r[i];
        struct mw_transcode_output *o = &result->outputs[result->count++];

        snprintf(final, sizeof(final), "%s/%s", p->output_dir, r->name);
        if ((ret = mw_path_commit(r->tmp_path, final)) < 0)
            return ret;
        snprintf(o->type, sizeof(o->type), "%s", r->size.height ? "video" : "audio");
        snprintf(o->name, sizeof(o->name), "%s", r->name);
        snprintf(o->codec, sizeof(o->codec), "%s", r->codecs);
        o->width = r->size.width;
        o->height = r->size.height;
        o->duration_s = p->duration_s;
    }
    if (p->opt->hls) {
        struct mw_transcode_output *o = &result->outputs[result->count++];

        snprintf(final, sizeof(final), "%s/hls", p->output_dir);
        if ((ret = mw_hls_commit_dir(p->hls_tmp_dir, final)) < 0)
            return ret;
        snprintf(o->type, sizeof(o->type), "hls");
        snprintf(o->name, sizeof(o->name), "hls/master.m3u8");
        snprintf(o->codec, sizeof(o->codec), "%s", p->r[0].codecs);
        o->width = p->r[0].size.width;
        o->height = p->r[0].size.height;
        o->duration_s = p->duration_s;
    }
    return 0;
}

/* ---- entry point ---- */

static void pipeline_free(struct pipeline *p, int remove_outputs)
{
    join_encoders(p, 1);
    for (int i = 0; i < p->count; i++) {
        mw_muxer_free(&p->r[i].mp4);
        mw_muxer_free(&p->r[i].hls);
        avcodec_free_context(&p->r[i].encoder);
        av_packet_free(&p->r[i].held);
        av_packet_free(&p->r[i].encoded);
        av_packet_free(&p->r[i].copy);
        av_frame_free(&p->r[i].work);
        mw_frame_queue_free(&p->r[i].queue);
        if (p->r[i].lock_ready)
            pthread_mutex_destroy(&p->r[i].lock);
        if (remove_outputs && p->r[i].tmp_path[0])
            unlink(p->r[i].tmp_path);
    }
    if (remove_outputs && p->hls_tmp_dir[0])
        mw_hls_remove_dir(p->hls_tmp_dir);
    mw_decoder_free(&p->video_decoder);
    mw_decoder_free(&p->audio_decoder);
    mw_filter_free(&p->video_filter);
    mw_filter_free(&p->audio_filter);
    avcodec_free_context(&p->audio_encoder);
    av_packet_free(&p->pkt);
    av_packet_free(&p->encoded);
    av_packet_free(&p->copy);
    av_frame_free(&p->frame);
    av_frame_free(&p->filtered);
}

/* The common start: the earliest of the used streams, so both begin at 0 and keep their offset. */
static void set_start(struct pipeline *p)
{
    int64_t start_us = INT64_MAX;
    int indexes[2] = {p->video_index, p->audio_index};

    for (int i = 0; i < 2; i++) {
        const AVStream *st = indexes[i] >= 0 ? p->format->streams[indexes[i]] : NULL;
        if (st && st->start_time != AV_NOPTS_VALUE) {
            int64_t us = av_rescale_q(st->start_time, st->time_base, AV_TIME_BASE_Q);
            start_us = us < start_us ? us : start_us;
        }
    }
    if (start_us == INT64_MAX)
        start_us = 0;
    if (p->video_decoder)
        mw_decoder_set_start(p->video_decoder, av_rescale_q(start_us, AV_TIME_BASE_Q,
                                                            p->format->streams[p->video_index]->time_base));
    if (p->audio_decoder)
        mw_decoder_set_start(p->audio_decoder, av_rescale_q(start_us, AV_TIME_BASE_Q,
                                                            p->format->streams[p->audio_index]->time_base));
}

static void set_limits(struct pipeline *p)
{
    double rate = p->output_rate.num > 0 ? av_q2d(p->output_rate) : 30;
    double duration = p->duration_s > 0 ? p->duration_s : (double)p->opt->limits->max_duration_ms / 1000;

    p->expected_frames = p->video_index >= 0 && p->duration_s > 0 ? (int64_t)(p->duration_s * rate + 0.5) : 0;
    /* Twice the frames the duration allows, plus slack for short clips: only a broken timeline gets there. */
    p->runaway_limit = (int64_t)(duration * rate * 2) + 300;
}

static int transcode(struct pipeline *p, const struct mw_probe *probe, struct mw_transcode_result *result,
                     char *why, size_t why_size)
{
    int ret;

    if ((ret = plan_renditions(p, probe)) < 0)
        return ret;
    if (p->opt->allow_remux && !p->opt->hls && p->count == 1 && p->video_index >= 0 &&
        mw_remux_eligible(p->in, probe, p->preset, &p->r[0].size, 1)) {
        mw_log(MW_LOG_INFO, "transcode", "input is web-compliant: remuxing without re-encoding");
        struct mw_output_expect expect = {.duration_s = p->duration_s, .tolerance_s = 0.1,
                                          .video = 1, .audio = p->audio_index >= 0, .mp4 = 1};
        result->remuxed = 1;
        if ((ret = mw_remux_run(p->in, probe, p->r[0].tmp_path, p->r[0].codecs, sizeof(p->r[0].codecs))) < 0 ||
            (ret = mw_output_check_file(p->r[0].tmp_path, &expect, p->opt->limits, why, why_size)) < 0)
            return ret;
        return commit_outputs(p, result);
    }
    if (!(p->pkt = av_packet_alloc()) || !(p->encoded = av_packet_alloc()) || !(p->copy = av_packet_alloc()) ||
        !(p->frame = av_frame_alloc()) || !(p->filtered = av_frame_alloc()))
        return AVERROR(ENOMEM);
    if (p->audio_index >= 0 && (ret = open_audio(p)) < 0)
        return ret;
    if (p->video_index >= 0 && (ret = open_video(p, probe)) < 0)
        return ret;
    set_start(p);
    set_limits(p);
    if ((ret = open_outputs(p)) < 0 || (ret = start_encoders(p)) < 0 || (ret = run_loop(p)) < 0)
        return ret;
    report_progress(p, AV_NOPTS_VALUE, (AVRational){1, 1}, 1);
    p->duration_s = decoded_duration(p);
    if ((ret = check_outputs(p, why, why_size)) < 0 ||
        (p->opt->hls && (ret = finish_hls(p, why, why_size)) < 0))
        return ret;
    return commit_outputs(p, result);
}

int mw_transcode_run(struct mw_input *in, const struct mw_probe *probe, const char *output_dir,
                     const struct mw_transcode_options *options, struct mw_transcode_result *result)
{
    struct pipeline p = {
        .opt = options,
        .preset = options->preset,
        .output_dir = output_dir,
        .format = mw_input_format(in),
        .in = in,
        .video_index = stream_index_of(probe, probe->best_video),
        .audio_index = stream_index_of(probe, probe->best_audio),
        .duration_s = probe->duration_us != AV_NOPTS_VALUE ? (double)probe->duration_us / AV_TIME_BASE : 0,
        .started = av_gettime_relative(),
    };
    char why[sizeof(result->detail)] = "";
    int ret;

    memset(result, 0, sizeof(*result));
    /* Every path below is the directory plus a short generated name; refusing long ones up front keeps
     * them all from being cut. */
    if (strlen(output_dir) > 1000) {
        ret = AVERROR(ENAMETOOLONG);
        goto end;
    }
    if (p.video_index < 0 && p.audio_index < 0) {
        ret = MW_ERR_NO_MEDIA_STREAM;
        goto end;
    }
    ret = transcode(&p, probe, result, why, sizeof(why));
    if (ret >= 0)
        mw_log(MW_LOG_INFO, "transcode", "%d output(s) in %.2f s%s", result->count,
               (double)(av_gettime_relative() - p.started) / 1e6, result->remuxed ? " (remuxed)" : "");
end:
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "transcode", "transcode failed: %s%s%s", mw_err2str(ret), why[0] ? ": " : "", why);
        memset(result, 0, sizeof(*result));
        snprintf(result->detail, sizeof(result->detail), "%s", why);
    }
    pipeline_free(&p, ret < 0);
    return ret;
}
