/*
 * Transcoding: web-playable renditions (and HLS) of one input, from one demux and one decode.
 *
 * What a preset makes is data: a row of the preset table (ladder.c) names the codecs, the rate control,
 * the keyframe interval and the per-height bitrate caps. The pipeline (transcode.c) reads the row and never
 * branches on a preset's name, so a new preset is a new row.
 *
 * Output names are deterministic so that a redelivered job overwrites the same files:
 * "<preset>_<height>p.mp4" per video rendition, "<preset>_audio.m4a" for audio-only inputs, and with HLS
 * "hls/master.m3u8" + "hls/<height>p/index.m3u8" (segments beside it). Every file is written under a
 * temporary name, verified (output_check.h) and only then renamed into place.
 */
#ifndef MEDIAWORKER_TRANSCODE_H
#define MEDIAWORKER_TRANSCODE_H

#include <stdint.h>

#include <libavutil/rational.h>

#include "mediaworker/config.h"
#include "mediaworker/input.h"
#include "mediaworker/job.h"
#include "mediaworker/probe.h"

#define MW_TRANSCODE_MAX_RENDITIONS 8
/* Heights a rendition may ask for (the CLI and the job operation accept the same). */
#define MW_TRANSCODE_MIN_HEIGHT 16
#define MW_TRANSCODE_MAX_HEIGHT 4320

/* Bitrate caps of the renditions up to a height. */
struct mw_preset_cap {
    int max_height;
    int64_t maxrate;           /* bits per second */
    int64_t bufsize;           /* bits */
};

struct mw_preset {
    const char *name;
    const char *video_codec;   /* encoder name, "libx264" */
    const char *video_speed;   /* encoder preset, "veryfast" */
    const char *video_profile; /* "high" */
    int crf;
    int keyframe_ms;           /* forced keyframe interval, the same in every rendition */
    int max_fps;               /* higher frame rates are divided down to at most this */
    int hls_segment_ms;        /* a multiple of keyframe_ms */
    const char *audio_codec;   /* "aac" */
    int64_t audio_bitrate;
    int audio_sample_rate;
    int audio_channels;
    int default_heights[MW_TRANSCODE_MAX_RENDITIONS]; /* used when a job names none; 0-terminated */
    struct mw_preset_cap caps[MW_TRANSCODE_MAX_RENDITIONS]; /* ascending max_height; 0-terminated */
};

/* The preset named name, or NULL. */
const struct mw_preset *mw_preset_find(const char *name);

/* The caps for a rendition of height: the first row at or above it, else the last row. */
const struct mw_preset_cap *mw_preset_cap_for(const struct mw_preset *preset, int height);

struct mw_rendition {
    int width, height;         /* displayed size of the output: even, square pixels, upright */
};

/*
 * Computes the rendition sizes for a source of width x height coded pixels with sample aspect ratio sar
 * ({0,1} = square) shown rotated clockwise by rotation degrees. Each requested height gives the largest
 * even size of that height that keeps the displayed aspect ratio, never larger than the source (a request
 * above the source gives the source size once). The result is sorted by descending height without
 * duplicates. Returns the number of renditions written into out (at most max_out), or AVERROR(EINVAL) for
 * an empty source or request.
 */
int mw_ladder_compute(int width, int height, AVRational sar, int rotation, const int *heights, int count,
                      struct mw_rendition *out, int max_out);

/*
 * The frame rate to encode at: rate itself, or rate divided by the smallest whole number that brings it
 * to max_fps or below. Unknown rates ({0,x}) come back unchanged.
 */
AVRational mw_ladder_frame_rate(AVRational rate, int max_fps);

/*
 * Fills the numbers of a progress report from the work done: done of total units (total 0 = unknown),
 * media_done_s seconds of media after elapsed_s seconds of wall clock. percent is done/total, speed media
 * seconds per wall second, eta_s the remaining wall time at that speed (negative when it cannot be told).
 */
void mw_progress_compute(struct mw_progress *p, int64_t done, int64_t total, double media_done_s,
                         double elapsed_s);

struct mw_transcode_options {
    const struct mw_preset *preset;
    int heights[MW_TRANSCODE_MAX_RENDITIONS];  /* requested heights; none = the preset's defaults */
    int height_count;
    int hls;
    int allow_remux;           /* remux an already web-compliant single rendition instead of encoding */
    int threads;               /* codec threads for the job (mw_config_codec_threads) */
    const struct mw_limits *limits;            /* required: for re-opening outputs in the output check */
    mw_progress_fn progress;   /* may be NULL */
    void *progress_opaque;
};

struct mw_transcode_output {
    char type[16];             /* "video", "audio", "hls" */
    char name[128];            /* relative to the output directory */
    int width, height;         /* 0 for audio */
    double duration_s;
    char codec[64];            /* RFC 6381 codecs string, "avc1.64001f,mp4a.40.2" */
};

struct mw_transcode_result {
    int count;
    struct mw_transcode_output outputs[MW_TRANSCODE_MAX_RENDITIONS + 2];
    int remuxed;               /* the fast path was taken: no re-encoding */
    char detail[256];          /* on failure, what went wrong beyond the error code (e.g. the failed check) */
};

/* The heights options ask for (its own, else its preset's defaults) into *heights; returns their count. */
int mw_transcode_heights(const struct mw_transcode_options *options, const int **heights);

/*
 * The bytes a transcode of the probed input may write with options: each rendition at its preset's
 * bitrate cap plus the preset's audio, for the whole duration, twice with HLS (the MP4 and the segments),
 * plus a tenth for container overhead. The caps bound the encoder (VBV) and the remux fast path (taken
 * only for sources under them), so a job's outputs stay near or below this. 0 when the duration is
 * unknown; AVERROR(EINVAL) for a source the ladder cannot size.
 */
int64_t mw_transcode_bytes_at_caps(const struct mw_probe *probe, const struct mw_transcode_options *options);

/*
 * Transcodes the opened input in into output_dir. in must not have been read from since it was opened
 * (the pipeline reads it once from the start); probe is its probe (or that of another opening of the same
 * file). Progress is reported from the calling thread. On success returns 0 with
 * the committed outputs listed in result. On failure returns a negative error (MW_ERR_OUTPUT_CHECK when
 * an output failed verification, MW_ERR_RUNAWAY when the output ran far past the input duration,
 * MW_ERR_NO_MEDIA_STREAM when there is nothing to encode) and leaves no output or temporary file of this
 * call behind; files committed by an earlier successful run are left as they were.
 */
int mw_transcode_run(struct mw_input *in, const struct mw_probe *probe, const char *output_dir,
                     const struct mw_transcode_options *options, struct mw_transcode_result *result);

#endif
