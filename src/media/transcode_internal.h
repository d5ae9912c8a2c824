/*
 * The stages of the transcode pipeline, one file each: decoder.c (packets -> frames with repaired
 * timestamps), filter.c (libavfilter graphs: deinterlace, tone map, split, the one scaling step, rotation),
 * encoder.c (opening encoders from a preset row), muxer.c (containers written to temporary names),
 * remux.c (the no-re-encode fast path). transcode.c drives them. Private to src/media.
 */
#ifndef MEDIAWORKER_MEDIA_TRANSCODE_INTERNAL_H
#define MEDIAWORKER_MEDIA_TRANSCODE_INTERNAL_H

#define MW_TRANSCODE_PATH_SIZE 2048

#include <pthread.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "mediaworker/input.h"
#include "mediaworker/transcode.h"

/* ---- decoder.c ---- */
struct mw_decoder;

/* Opens the decoder of stream index of in. 0 and *out, or a negative error with *out NULL. */
int mw_decoder_open(struct mw_decoder **out, const struct mw_input *in, int stream_index, int threads);

/* Sends one packet (NULL: end of stream). AVERROR(EAGAIN) when frames must be received first. */
int mw_decoder_send(struct mw_decoder *dec, const AVPacket *pkt);

/*
 * Receives a frame whose pts is set, in the stream time base, shifted so that start (same base) becomes 0,
 * and strictly increasing: missing timestamps are extrapolated from the previous frame, repeated or
 * backwards ones nudged forward. AVERROR(EAGAIN)/AVERROR_EOF as avcodec_receive_frame.
 */
int mw_decoder_receive(struct mw_decoder *dec, AVFrame *frame);

void mw_decoder_set_start(struct mw_decoder *dec, int64_t start);

/* Where the last received frame ends (pts + duration, stream time base), AV_NOPTS_VALUE before any. */
int64_t mw_decoder_end(const struct mw_decoder *dec);
const AVCodecContext *mw_decoder_context(const struct mw_decoder *dec);
void mw_decoder_free(struct mw_decoder **dec);

/* ---- filter.c ---- */
struct mw_filter;

/* What the video graph is built from. */
struct mw_video_filter_spec {
    const AVCodecContext *source;          /* the decoder: size, pixel format, SAR, colour properties */
    AVRational time_base;
    AVRational frame_rate;                 /* of the source, {0,1} when unknown */
    AVRational output_rate;                /* mw_ladder_frame_rate result; equal to frame_rate = no fps filter */
    int rotation, hflip;                   /* from the display matrix; baked into the pixels */
    int deinterlace;
    int tonemap;                           /* PQ/HLG source: tone-map to SDR BT.709; the caller sets it
                                            * only where zscale and tonemap exist */
    int count;
    const struct mw_rendition *renditions; /* count sizes, upright */
    int threads;
};

/* Builds the video graph: one input, count outputs in yuv420p BT.709 at the rendition sizes. */
int mw_filter_new_video(struct mw_filter **out, const struct mw_video_filter_spec *spec);

/* Builds the audio graph: decoder's samples -> sample_rate, channels, fltp, in frames of frame_size. */
int mw_filter_new_audio(struct mw_filter **out, const AVCodecContext *source, AVRational time_base,
                        int sample_rate, int channels, int frame_size);

/* Pushes a frame (its references move into the graph; frame is left blank), or NULL for end of stream. */
int mw_filter_push(struct mw_filter *f, AVFrame *frame);

/* Pulls a frame from output index. AVERROR(EAGAIN) when the graph needs input, AVERROR_EOF at the end. */
int mw_filter_pull(struct mw_filter *f, int index, AVFrame *frame);

AVRational mw_filter_time_base(const struct mw_filter *f, int index);
void mw_filter_free(struct mw_filter **f);

/* ---- queue.c ---- */
struct mw_frame_queue;

/* A queue of capacity frames (slots allocated now). 0 or AVERROR(ENOMEM). */
int mw_frame_queue_new(struct mw_frame_queue **out, int capacity);

/* Moves frame's reference into the queue, waiting while it is full; NULL marks the end. AVERROR_EXIT once
 * aborted (frame is then left as it was). */
int mw_frame_queue_push(struct mw_frame_queue *q, AVFrame *frame);

/* Moves the oldest frame into frame, waiting while empty. AVERROR_EOF after the end marker, AVERROR_EXIT
 * once aborted. */
int mw_frame_queue_pop(struct mw_frame_queue *q, AVFrame *frame);

/* Wakes and fails every waiting and later push and pop. */
void mw_frame_queue_abort(struct mw_frame_queue *q);

void mw_frame_queue_free(struct mw_frame_queue **q);

/* ---- rendition.c ---- */

/*
 * One output rendition while it is written: its encoder thread and its containers. The encoder thread
 * owns encoder, the fields from next_keyframe to dts_shift, and encoded, copy and work; it gets frames
 * through queue. lock guards the muxers, which the main thread also writes audio packets to.
 */
struct mw_rendition_output {
    struct mw_rendition size;            /* {0,0} for the audio-only output */
    char label[16];                      /* "720p", "audio" */
    char name[128];                      /* final file name in the output directory */
    char tmp_path[MW_TRANSCODE_PATH_SIZE];
    char hls_playlist[MW_TRANSCODE_PATH_SIZE];        /* in the temporary HLS directory */
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

    struct mw_frame_queue *queue;
    int nice_steps;                      /* how far below the producer its threads run (transcode.c) */
    pthread_t thread;
    int thread_started;
    int thread_ret;                      /* read by the main thread after joining */
    AVPacket *encoded, *copy;
    AVFrame *work;
    pthread_mutex_t lock;
    int lock_ready;
    char log_job_id[MW_JOB_ID_MAX], log_request_id[MW_REQUEST_ID_MAX];   /* the starting thread's log context */
};

/* Writes pkt (in time base tb) to the containers of r, through the caller's scratch packet copy; pkt keeps
 * its reference. Called from the encoder thread (video) and the main thread (audio), under r->lock. */
int mw_rendition_output_write(struct mw_rendition_output *r, const AVPacket *pkt, AVPacket *copy, int mp4_index,
                              int hls_index, AVRational tb);

/* Starts r's encoder thread, which runs until the end marker arrives through r->queue or it is aborted. */
int mw_rendition_output_start(struct mw_rendition_output *r);

/* Waits for r's encoder thread (aborting its queue first when abort is set); returns its result, 0 when
 * it was not started. */
int mw_rendition_output_join(struct mw_rendition_output *r, int abort);

/* ---- encoder.c ---- */

/*
 * Opens the preset's video encoder for one rendition: size, time base, frame rate, bitrate caps, fixed
 * GOP of keyframe_ms with scene-cut keyframes off (renditions keep aligned keyframes), BT.709 tags.
 */
int mw_encoder_open_video(AVCodecContext **out, const struct mw_preset *preset, const struct mw_rendition *r,
                          AVRational time_base, AVRational frame_rate, int threads);

/*
 * Lowers the calling thread's priority by steps (nice); threads it starts from then on inherit it. Failing
 * to (a sandbox that forbids it) only costs speed, so it is logged, not returned.
 */
void mw_encoder_lower_priority(int steps);

/* Opens the preset's audio encoder. */
int mw_encoder_open_audio(AVCodecContext **out, const struct mw_preset *preset);

/* RFC 6381 codec name of an opened encoder or a stream's parameters ("avc1.64001f", "mp4a.40.2"). */
void mw_encoder_codec_string(const AVCodecParameters *par, char *out, size_t size);

/* ---- muxer.c ---- */
struct mw_muxer;

/*
 * Creates a muxer of format ("mp4", "hls") writing to path. For mp4 the moov atom is moved to the front
 * at the end (faststart). For hls path is the media playlist and the segments go beside it.
 */
int mw_muxer_open(struct mw_muxer **out, const char *format, const char *path, int segment_ms);

/* Adds a stream with par's parameters and time base tb; *index receives its index. */
int mw_muxer_add_stream(struct mw_muxer *m, const AVCodecParameters *par, AVRational tb, int *index);

int mw_muxer_start(struct mw_muxer *m);

/* Writes pkt (in time base tb) to stream index; takes pkt's reference, leaving it blank. */
int mw_muxer_write(struct mw_muxer *m, int index, AVPacket *pkt, AVRational tb);

/* Writes the trailer and closes the file. Must succeed before the file is used. */
int mw_muxer_finish(struct mw_muxer *m);

void mw_muxer_free(struct mw_muxer **m);

/* ---- hls.c ---- */

struct mw_hls_stats {
    int segments;
    double duration_s;
    int64_t peak_bps, average_bps;     /* over the segments' file sizes */
    char first_segment[256], last_segment[256];
};

/* Reads a VOD media playlist written by the hls muxer and measures its segments on disk. */
int mw_hls_playlist_stats(const char *playlist, struct mw_hls_stats *stats);

struct mw_hls_variant {
    const char *uri;                   /* relative to the master playlist */
    int64_t bandwidth, average_bandwidth;
    int width, height;                 /* 0 for audio-only */
    AVRational frame_rate;
    const char *codecs;
};

/* Writes the master playlist at path (atomically). */
int mw_hls_write_master(const char *path, const struct mw_hls_variant *variants, int count);

/* Replaces final_dir by tmp_dir (rename; an older final_dir is removed afterwards). */
int mw_hls_commit_dir(const char *tmp_dir, const char *final_dir);

/* Removes dir and everything in it (two levels: variants and their segments); ignores errors. */
void mw_hls_remove_dir(const char *dir);

/* ---- remux.c ---- */

/* True when the input can be served by remuxing alone: H.264 8-bit 4:2:0 (+ AAC) in MP4/MOV, upright,
 * progressive, SDR, within the preset's frame rate and bitrate cap and the single requested rendition's
 * size. */
int mw_remux_eligible(const struct mw_probe *probe, const struct mw_preset *preset,
                      const struct mw_rendition *renditions, int count);

/* Copies the chosen video and audio streams of in into a faststart MP4 at path; codecs receives the RFC 6381
 * codecs string of what was copied. */
int mw_remux_run(struct mw_input *in, const struct mw_probe *probe, const char *path, char *codecs,
                 size_t codecs_size);

#endif
