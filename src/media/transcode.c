/*
 * The transcode pipeline: one demux, one decode per stream, N renditions.
 *
 * Notes on the pipeline:
 * - The source is read once. Video frames go through one filter graph whose split feeds one branch per
 *   rendition (filter.c), so deinterlacing and tone mapping run once and each rendition scales once.
 * - Audio is encoded once; each encoded packet is referenced (not copied) into every container.
 * - Keyframes are forced by PTS every keyframe_ms in every rendition and the encoders' GOP settings match,
 *   so all renditions and their HLS segments switch at the same instants.
 * - Threads: this one demuxes, decodes, filters and encodes audio; each rendition's video encoder runs in
 *   a thread of its own behind a small bounded frame queue (rendition.c, queue.c), below this thread's
 *   priority (the smaller renditions of a ladder below the largest), and the decoder gets the part of the
 *   threads its share of the work calls for.
 * - The pipeline owns three packets and two frames, each rendition two packets and a frame, allocated
 *   once; each is unreferenced at one point after its use.
 * - All outputs are written under temporary names, verified, and only then renamed into place; on any
 *   failure every temporary file is removed.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavfilter/avfilter.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/output_check.h"
#include "mediaworker/path.h"
#include "mediaworker/tonemap.h"
#include "transcode_internal.h"

#define PATH_SIZE MW_TRANSCODE_PATH_SIZE
#define PROGRESS_INTERVAL_US 250000
/* Below this many expected pictures a share of them says little (a still, a second of video). */
#define MIN_FRAMES_FOR_SHARE_CHECK 20
/* Frames waiting for each encoder. The producer, running ahead of the encoders (PACE_NICE_STEPS), needs
 * room to stay ahead while libx264's time per frame swings with the picture type. On the 60 s reference
 * to 720p on two cores, 6 was about 2 % faster than 3 or 4 and no slower than 10; a 720p frame is 1.4 MB. */
#define QUEUE_FRAMES 6
/*
 * What encoding a pixel costs against decoding and scaling a source pixel, for sizing the decoder's threads.
 * On the 60 s 1080p30 H.264 reference to 720p (libx264 veryfast) on this project's 2-core machine: decoding
 * took 7.1 s of CPU and scaling 2.4 s for 1800 x 2.07 Mpixels, encoding ~13.5 s for 1800 x 0.92 Mpixels:
 * about 2.5 ns against 8 ns per pixel.
 */
#define ENCODE_COST_PER_PIXEL 3.0
/*
 * Priorities below the producer (the thread that demuxes, decodes and scales for the encoders), as nice
 * steps; the nice value is per thread on Linux. Under fair scheduling the producer, one thread against each
 * encoder's frame and lookahead threads, gets less than the core it needs whenever they all run; the
 * encoders then run out of frames and a core idles. Below it, they take every cycle it leaves. In a ladder
 * the largest rendition sets the pace in the same way, so the smaller ones run below it and fill the cycles
 * it leaves. Measured on the 60 s reference on two cores: for one 720p rendition, 3 and 5 steps gave the
 * same times and 10 was 4 % slower; for 1080/720/480, the smaller two 4 steps further down took 0.97-0.99
 * of the time of all three at 5.
 */
#define PACE_NICE_STEPS 5
#define LADDER_NICE_STEPS 4

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
    struct mw_rendition_output r[MW_TRANSCODE_MAX_RENDITIONS];
    AVPacket *pkt, *encoded, *copy;
    AVFrame *frame, *filtered;
    AVFrame *last_picture;               /* the latest decoded picture, held on screen if the audio runs longer */
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
        struct mw_rendition_output *r = &p->r[i];
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
    const int *heights;
    int count = mw_transcode_heights(opt, &heights);
    struct mw_rendition sizes[MW_TRANSCODE_MAX_RENDITIONS];
    int ret;

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

/*
 * The video decoder's threads: its share of the job's threads in proportion to its share of the work, at
 * least one. The encoders set the pace, so decoder threads beyond that share only spend CPU the encoders
 * could have had: a frame thread costs CPU of its own (copying the decoder's state for every picture, a
 * cache shared with more threads). On the 60 s reference to 720p with two threads, one decoder thread
 * instead of two (the encoders below the producer in both) used 5-10 % less CPU and took 0.91-0.95 of the
 * time, in three alternating pairs.
 */
static int decoder_threads(const struct pipeline *p, const AVCodecParameters *source)
{
    double source_pixels = (double)source->width * source->height, encoded_pixels = 0, share;
    int threads;

    for (int i = 0; i < p->count; i++)
        encoded_pixels += (double)p->r[i].size.width * p->r[i].size.height;
    if (source_pixels <= 0 || encoded_pixels <= 0)
        return p->opt->threads;
    share = source_pixels / (source_pixels + ENCODE_COST_PER_PIXEL * encoded_pixels);
    threads = (int)ceil(p->opt->threads * share);
    return FFMIN(FFMAX(threads, 1), p->opt->threads);
}

struct encoder_opening {
    struct pipeline *p;
    int threads;
    int pace;                        /* the rendition that sets the pace: the largest */
    char log_job_id[MW_JOB_ID_MAX], log_request_id[MW_REQUEST_ID_MAX];
    int ret;
};

static int open_video_encoder(struct encoder_opening *o, int i)
{
    struct pipeline *p = o->p;

    return mw_encoder_open_video(&p->r[i].encoder, p->preset, &p->r[i].size, mw_filter_time_base(p->video_filter, i),
                                 p->output_rate, o->threads);
}

/*
 * Opens the video encoders in a thread that lowers its priority first: libx264 starts its threads inside
 * avcodec_open2, and they take the opening thread's priority, which a thread cannot raise back once
 * lowered. So the pace-setting encoder opens first, and the others after one more step down.
 */
static void *open_video_encoders(void *opaque)
{
    struct encoder_opening *o = opaque;

    mw_log_context_set(o->log_job_id, o->log_request_id);
    mw_encoder_lower_priority(PACE_NICE_STEPS);
    o->ret = open_video_encoder(o, o->pace);
    if (o->p->count > 1)
        mw_encoder_lower_priority(LADDER_NICE_STEPS);
    for (int i = 0; i < o->p->count && o->ret >= 0; i++)
        if (i != o->pace)
            o->ret = open_video_encoder(o, i);
    return NULL;
}

static int open_video_encoders_below(struct pipeline *p, int threads)
{
    struct encoder_opening opening = {.p = p, .threads = threads};
    pthread_t thread;
    int err;

    for (int i = 1; i < p->count; i++)
        if (p->r[i].size.width * p->r[i].size.height > p->r[opening.pace].size.width * p->r[opening.pace].size.height)
            opening.pace = i;
    for (int i = 0; i < p->count; i++)
        p->r[i].nice_steps = PACE_NICE_STEPS + (i == opening.pace ? 0 : LADDER_NICE_STEPS);
    mw_log_context_get(opening.log_job_id, sizeof(opening.log_job_id), opening.log_request_id,
                       sizeof(opening.log_request_id));
    if ((err = pthread_create(&thread, NULL, open_video_encoders, &opening)))
        return AVERROR(err);
    pthread_join(thread, NULL);
    return opening.ret;
}

static int open_video(struct pipeline *p, const struct mw_probe *probe)
{
    const struct mw_probe_stream *v = &probe->streams[probe->best_video];
    const AVStream *st = p->format->streams[p->video_index];
    struct mw_rendition sizes[MW_TRANSCODE_MAX_RENDITIONS];
    struct mw_video_filter_spec spec = {0};
    /* The renditions encode in parallel threads of their own, so they share the job's threads rather than
     * each taking all of them. One x264 frame thread per thread of the share: on the 60 s reference to 720p
     * with two threads, three x264 threads were no faster than two (14.7-14.8 s against 14.4-15.0 s) and
     * took 9 MB more. With several renditions, never fewer than two: the largest encodes longest and sets
     * the pace, and on one thread it could not use a core the smaller ones leave idle (1080/720/480 of the
     * 60 s reference on two cores with one job thread: 40.2 s with one x264 thread each, 39.1 s with two,
     * 457 MB against the ffmpeg split command's 489 MB). */
    int share = p->opt->threads / p->count;
    int encoder_threads = FFMAX(share, p->count > 1 ? 2 : 1);
    int video_decoder_threads = decoder_threads(p, st->codecpar);
    int ret;

    mw_log(MW_LOG_DEBUG, "transcode", "threads: %d for the video decoder, %d per encoder of %d rendition(s)",
           video_decoder_threads, encoder_threads, p->count);
    ret = mw_decoder_open(&p->video_decoder, p->in, p->video_index, video_decoder_threads);
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
    spec.tonemap = mw_tonemap_is_hdr(st->codecpar->color_trc);
    /* zscale is optional in libavfilter builds. Without it the graph cannot tone-map, and the spec must say
     * so: the scaler then has to convert from the source's own matrix, not from the BT.709 tone mapping gives. */
    if (spec.tonemap && (!avfilter_get_by_name("zscale") || !avfilter_get_by_name("tonemap"))) {
        mw_log(MW_LOG_WARN, "transcode", "no zscale in this libavfilter: HDR converted without tone mapping");
        spec.tonemap = 0;
    }
    spec.count = p->count;
    spec.renditions = sizes;
    spec.threads = p->opt->threads;
    ret = mw_filter_new_video(&p->video_filter, &spec);
    if (ret < 0 || (ret = open_video_encoders_below(p, encoder_threads)) < 0)
        return ret;
    for (int i = 0; i < p->count; i++) {
        struct mw_rendition_output *r = &p->r[i];
        AVRational tb = mw_filter_time_base(p->video_filter, i);

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
static int add_streams(struct pipeline *p, struct mw_rendition_output *r, struct mw_muxer *m, int *video, int *audio)
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
        struct mw_rendition_output *r = &p->r[i];
        char dir[PATH_SIZE];

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

static int start_encoders(struct pipeline *p)
{
    for (int i = 0; i < p->count; i++) {
        struct mw_rendition_output *r = &p->r[i];
        int ret;

        if (!r->encoder)
            continue;
        if ((ret = mw_rendition_output_start(r)) < 0)
            return ret;
    }
    return 0;
}

/* ---- the frame loop ---- */

static void report_progress(struct pipeline *p, int64_t pts, AVRational tb, int final)
{
    int64_t now = av_gettime_relative();
    struct mw_progress progress = {.phase = "transcode"};
    double media_s = final ? p->duration_s : pts == AV_NOPTS_VALUE ? 0 : (double)pts * av_q2d(tb);
    /* Frames when the frame count can be told, else milliseconds of media (audio-only inputs). */
    int64_t total = p->expected_frames > 0 ? p->expected_frames : (int64_t)(p->duration_s * 1000);
    int64_t done = p->expected_frames > 0 ? p->decoded_frames : (int64_t)(media_s * 1000);

    if (!p->opt->progress || (!final && now - p->last_progress < PROGRESS_INTERVAL_US))
        return;
    p->last_progress = now;
    if (final)
        done = total = total > 0 ? total : 1;
    mw_progress_compute(&progress, done, total, media_s, (double)(now - p->started) / 1e6);
    p->opt->progress(p->opt->progress_opaque, &progress);
}

static int encode_audio(struct pipeline *p, AVFrame *frame)
{
    int ret = avcodec_send_frame(p->audio_encoder, frame);

    while (ret >= 0 && (ret = avcodec_receive_packet(p->audio_encoder, p->encoded)) >= 0) {
        for (int i = 0; i < p->count && ret >= 0; i++)
            ret = mw_rendition_output_write(&p->r[i], p->encoded, p->copy, p->r[i].mp4_audio, p->r[i].hls_audio,
                                            p->audio_encoder->time_base);
        av_packet_unref(p->encoded);
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

/*
 * Ends the encoder threads (after the end marker, or aborting them) and returns the first real failure.
 * A rendition that failed aborts its siblings' queues, so they end with AVERROR_EXIT; that only echoes the
 * failure and must not hide it (an ENOSPC stays retryable, an "immediate exit" would not).
 */
static int join_encoders(struct pipeline *p, int abort)
{
    int ret = 0;

    for (int i = 0; i < p->count; i++) {
        int err = mw_rendition_output_join(&p->r[i], abort);

        if (err < 0 && (ret >= 0 || (ret == AVERROR_EXIT && err != AVERROR_EXIT)))
            ret = err;
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

/*
 * Streams of unequal length follow one rule (docs/transcode.md): every output runs from 0 to the end of the
 * longer stream, and where the video covers less of that time than the audio, its first picture is shown
 * from 0 and its last one until the sound ends, as players show such a file. Held pictures are repeated at
 * the output rate, so every packet of the MP4 and of the HLS segments lasts one frame and the playlist's
 * durations add up to the file's. This pushes last_picture at from, from + 1 frame, ... before until.
 */
static int repeat_picture(struct pipeline *p, int64_t from, int64_t until)
{
    AVRational tb = p->format->streams[p->video_index]->time_base;
    int64_t step = av_rescale_q(1, av_inv_q(p->output_rate), tb);
    int ret;

    if (step < 1)
        step = 1;
    for (int64_t pts = from; pts + step / 2 < until; pts += step) {
        if ((ret = av_frame_ref(p->filtered, p->last_picture)) < 0)
            return ret;
        p->filtered->pts = pts;
        p->filtered->pkt_duration = step;
        ret = mw_filter_push(p->video_filter, p->filtered);
        av_frame_unref(p->filtered);
        if (ret < 0 || (ret = drain_video_filter(p)) < 0)
            return ret;
    }
    return 0;
}

/* The first picture (in p->frame and last_picture) of a video that starts after the audio. */
static int pad_video_start(struct pipeline *p)
{
    if (p->frame->pts <= 0)
        return 0;
    if (p->output_rate.num <= 0) {
        p->frame->pts = 0;   /* no rate to repeat at: the first picture alone is shown from 0 */
        return 0;
    }
    return repeat_picture(p, 0, p->frame->pts);
}

/* Receives every decoded frame of a stream and pushes it through its filter to the encoders. */
static int drain_decoder(struct pipeline *p, int video)
{
    struct mw_decoder *dec = video ? p->video_decoder : p->audio_decoder;
    AVRational tb = p->format->streams[video ? p->video_index : p->audio_index]->time_base;
    int ret;

    /* With frame threads a damaged packet surfaces here rather than on send: it costs a picture, as there. */
    while ((ret = mw_decoder_receive(dec, p->frame)) >= 0 || ret == AVERROR_INVALIDDATA) {
        if (ret == AVERROR_INVALIDDATA) {
            mw_log(MW_LOG_WARN, "transcode", "skipped an undecodable %s frame", video ? "video" : "audio");
            continue;
        }
        if (video || p->video_index < 0) {
            p->decoded_frames++;
            report_progress(p, p->frame->pts, tb, 0);
        }
        if (video) {
            av_frame_unref(p->last_picture);
            if ((ret = av_frame_ref(p->last_picture, p->frame)) < 0 ||
                (!p->video_started && (ret = pad_video_start(p)) < 0)) {
                av_frame_unref(p->frame);
                return ret;
            }
            p->video_started = 1;
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

/* The video ends before the audio: its last picture is held until the sound ends (repeat_picture). */
static int hold_last_picture(struct pipeline *p)
{
    int64_t audio_end = p->audio_decoder ? mw_decoder_end(p->audio_decoder) : AV_NOPTS_VALUE;
    int64_t video_end = mw_decoder_end(p->video_decoder);

    if (audio_end == AV_NOPTS_VALUE || video_end == AV_NOPTS_VALUE || !p->last_picture->buf[0] ||
        p->output_rate.num <= 0)
        return 0;
    audio_end = av_rescale_q(audio_end, p->format->streams[p->audio_index]->time_base,
                             p->format->streams[p->video_index]->time_base);
    return repeat_picture(p, video_end, audio_end);
}

/* Audio first: its end decides how long the video's last picture is held. */
static int flush_all(struct pipeline *p)
{
    int ret;

    if (p->audio_decoder) {
        if ((ret = decode_packet(p, 0, NULL)) < 0 || (ret = mw_filter_push(p->audio_filter, NULL)) < 0 ||
            (ret = drain_audio_filter(p)) < 0 || (ret = encode_audio(p, NULL)) < 0)
            return ret;
    }
    if (p->video_decoder) {
        if ((ret = decode_packet(p, 1, NULL)) < 0 || (ret = hold_last_picture(p)) < 0 ||
            (ret = mw_filter_push(p->video_filter, NULL)) < 0 || (ret = drain_video_filter(p)) < 0)
            return ret;
        for (int i = 0; i < p->count; i++)
            if ((ret = mw_frame_queue_push(p->r[i].queue, NULL)) < 0 && ret != AVERROR_EXIT)
                return ret;
        if ((ret = join_encoders(p, 0)) < 0)
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

    while ((ret = mw_input_read(p->in, p->pkt)) >= 0) {
        int index = p->pkt->stream_index;

        if (index == p->video_index || index == p->audio_index)
            ret = decode_packet(p, index == p->video_index, p->pkt);
        av_packet_unref(p->pkt);
        if (ret < 0)
            return ret;
    }
    return ret == AVERROR_EOF ? flush_all(p) : ret;
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
        .threads = p->opt->threads,
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

/* The first and the last segment of a rendition must play on their own, as a player switching to them would. */
static int check_segments(struct pipeline *p, const struct mw_rendition_output *r, const struct mw_hls_stats *stats,
                          char *why, size_t why_size)
{
    /* A segment is cut at a video keyframe; its audio may begin a few audio frames off that point. */
    struct mw_output_expect expect = {
        .tolerance_s = 0.25,
        .video = p->video_index >= 0,
        .audio = p->audio_index >= 0,
        .threads = p->opt->threads,
    };
    const char *names[2] = {stats->first_segment, stats->last_segment};
    char path[PATH_SIZE];
    int ret;

    for (int i = 0; i < (stats->segments > 1 ? 2 : 1); i++) {
        snprintf(path, sizeof(path), "%.1500s/%s/%.200s", p->hls_tmp_dir, r->label, names[i]);
        if ((ret = mw_output_check_file(path, &expect, p->opt->limits, why, why_size)) < 0)
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
        if ((ret = check_segments(p, &p->r[i], &stats, why, why_size)) < 0)
            return ret;
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
        struct mw_rendition_output *r = &p->r[i];
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

/* The codecs and graphs, which hold most of the job's memory; the encoder threads must have ended. */
static void free_codecs(struct pipeline *p)
{
    for (int i = 0; i < p->count; i++)
        avcodec_free_context(&p->r[i].encoder);
    mw_decoder_free(&p->video_decoder);
    mw_decoder_free(&p->audio_decoder);
    mw_filter_free(&p->video_filter);
    mw_filter_free(&p->audio_filter);
    avcodec_free_context(&p->audio_encoder);
}

static void pipeline_free(struct pipeline *p, int remove_outputs)
{
    join_encoders(p, 1);
    free_codecs(p);
    for (int i = 0; i < p->count; i++) {
        mw_muxer_free(&p->r[i].mp4);
        mw_muxer_free(&p->r[i].hls);
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
    av_packet_free(&p->pkt);
    av_packet_free(&p->encoded);
    av_packet_free(&p->copy);
    av_frame_free(&p->frame);
    av_frame_free(&p->filtered);
    av_frame_free(&p->last_picture);
}

/* Both streams start on the input's timeline (mw_input_start_us), so a late stream keeps its offset. */
static void set_start(struct pipeline *p)
{
    int64_t start_us = mw_input_start_us(p->in);

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

/*
 * Undecodable pictures are skipped one by one (a damaged packet costs a picture, not the job), but a
 * video of which almost nothing decodes is a corrupt input, not a rendition: its few frames would be
 * stretched over the whole duration. A tenth leaves room for video shorter than its file.
 */
static int check_decoded_share(const struct pipeline *p, const struct mw_probe *probe, char *why, size_t why_size)
{
    const struct mw_probe_stream *v = p->video_index >= 0 ? &probe->streams[probe->best_video] : NULL;
    double seconds = v && v->duration_us != AV_NOPTS_VALUE && v->duration_us > 0 ? v->duration_us / 1e6
                     : p->duration_s;
    double rate = p->output_rate.num > 0 ? av_q2d(p->output_rate) : 0;
    int64_t expected = (int64_t)(seconds * rate + 0.5);

    if (!v || expected < MIN_FRAMES_FOR_SHARE_CHECK || p->decoded_frames * 10 >= expected)
        return 0;
    snprintf(why, why_size, "only %lld of about %lld video frames decode", (long long)p->decoded_frames,
             (long long)expected);
    return AVERROR_INVALIDDATA;
}

static int transcode(struct pipeline *p, const struct mw_probe *probe, struct mw_transcode_result *result,
                     char *why, size_t why_size)
{
    int ret;

    if ((ret = plan_renditions(p, probe)) < 0)
        return ret;
    if (p->opt->allow_remux && !p->opt->hls && p->count == 1 && p->video_index >= 0 &&
        mw_remux_eligible(probe, p->preset, &p->r[0].size, 1)) {
        mw_log(MW_LOG_INFO, "transcode", "input is web-compliant: remuxing without re-encoding");
        struct mw_output_expect expect = {.duration_s = p->duration_s, .tolerance_s = 0.1,
                                          .video = 1, .audio = p->audio_index >= 0, .mp4 = 1,
                                          .threads = p->opt->threads};
        result->remuxed = 1;
        if ((ret = mw_remux_run(p->in, probe, p->r[0].tmp_path, p->r[0].codecs, sizeof(p->r[0].codecs))) < 0 ||
            (ret = mw_output_check_file(p->r[0].tmp_path, &expect, p->opt->limits, why, why_size)) < 0)
            return ret;
        return commit_outputs(p, result);
    }
    if (!(p->pkt = av_packet_alloc()) || !(p->encoded = av_packet_alloc()) || !(p->copy = av_packet_alloc()) ||
        !(p->frame = av_frame_alloc()) || !(p->filtered = av_frame_alloc()) ||
        !(p->last_picture = av_frame_alloc()))
        return AVERROR(ENOMEM);
    if (p->audio_index >= 0 && (ret = open_audio(p)) < 0)
        return ret;
    if (p->video_index >= 0 && (ret = open_video(p, probe)) < 0)
        return ret;
    set_start(p);
    set_limits(p);
    if ((ret = open_outputs(p)) < 0 || (ret = start_encoders(p)) < 0 || (ret = run_loop(p)) < 0 ||
        (ret = check_decoded_share(p, probe, why, why_size)) < 0)
        return ret;
    report_progress(p, AV_NOPTS_VALUE, (AVRational){1, 1}, 1);
    p->duration_s = decoded_duration(p);
    /* The check decodes the outputs again: it can reuse this memory instead of adding to the peak. */
    free_codecs(p);
    mw_log(MW_LOG_DEBUG, "transcode", "%d output(s) written in %.2f s, %lld frames; verifying", p->count,
           (double)(av_gettime_relative() - p->started) / 1e6, (long long)p->encoded_frames);
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
    /* A refused codec says so, as in every other operation, before a picture it never sized is planned. */
    if ((p.video_index >= 0 && (ret = mw_input_check_decoder(in, p.video_index)) < 0) ||
        (p.audio_index >= 0 && (ret = mw_input_check_decoder(in, p.audio_index)) < 0))
        goto end;
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
