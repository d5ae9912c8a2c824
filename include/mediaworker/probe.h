/*
 * Probe: what an opened input contains, as a plain value and as JSON.
 *
 * Field names and value spellings follow ffprobe's where ffprobe has one (codec names, pix_fmt,
 * color_* names, field_order, channel_layout), so reports can be compared with it and users recognise
 * them. Where ffprobe's spelling is awkward for consumers ours is normalised and documented: rotation is
 * the clockwise angle a player must apply to show the picture upright (0, 90, 180, 270), not the display
 * matrix's counter-clockwise angle.
 */
#ifndef MEDIAWORKER_PROBE_H
#define MEDIAWORKER_PROBE_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <libavformat/avformat.h>

#include "mediaworker/input.h"

struct mw_probe_stream {
    int index;
    enum AVMediaType type;
    char codec[32];
    char codec_long[128];
    char profile[64];
    int level;                  /* codec level, or -99 (FF_LEVEL_UNKNOWN) */
    int64_t bit_rate;           /* 0 when unknown */
    int64_t duration_us;        /* AV_NOPTS_VALUE when unknown */
    char language[16];
    int is_default;
    int is_attached_pic;

    /* video */
    char pix_fmt[32];
    int bit_depth;
    int width, height;
    AVRational sample_aspect_ratio;   /* {0,1} when unknown */
    AVRational display_aspect_ratio;  /* of the displayed picture, rotation not applied */
    int rotation;                     /* clockwise degrees to display upright: 0, 90, 180, 270 */
    int hflip;                        /* display matrix mirrors the picture horizontally */
    AVRational avg_frame_rate, real_frame_rate;
    int64_t frame_count;              /* 0 when the container does not say */
    char color_primaries[32], color_transfer[32], color_space[32], color_range[16];
    int hdr;                          /* PQ or HLG transfer, or mastering/content-light metadata */
    char field_order[16];

    /* audio */
    int sample_rate;
    int channels;
    char channel_layout[64];
};

struct mw_probe {
    char format_name[64];
    char format_long_name[128];
    int64_t duration_us;        /* AV_NOPTS_VALUE when unknown */
    int64_t start_time_us;
    int64_t bit_rate;
    int64_t size;
    int chapter_count;
    cJSON *tags;                /* container tags of interest; owned */
    int stream_count;
    struct mw_probe_stream *streams;
    int best_video;             /* index into streams of the main picture stream, or -1 */
    int best_audio;             /* index into streams, or -1 */
};

/* Fills *out from an opened input. Returns 0, or AVERROR(ENOMEM) with *out NULL. */
int mw_probe_input(const struct mw_input *in, struct mw_probe **out);

/* Frees a probe and sets *p to NULL; accepts NULL. */
void mw_probe_free(struct mw_probe **p);

/* The probe as a new JSON object (the caller owns it), or NULL when out of memory. */
cJSON *mw_probe_to_json(const struct mw_probe *p);

/* Clockwise display rotation of a stream (0, 90, 180, 270) from its display matrix; *hflip is set when
 * the matrix also mirrors, and then the picture is shown mirrored left-right first and turned after.
 * Streams without a matrix give 0. */
int mw_probe_stream_rotation(const AVStream *st, int *hflip);

#endif
