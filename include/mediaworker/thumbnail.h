/*
 * Thumbnail: the picture that represents an upload, as one or more image files.
 *
 * One frame is chosen (frame_select.h) and decoded once, then rendered (picture.h) and encoded
 * (image_encode.h) for every requested size. The picture comes from, in order: the main video stream, a
 * still image, an animation, an audio file's attached cover, or the waveform of the audio (waveform.h).
 * An input with none of these fails with MW_ERR_NO_PICTURE.
 */
#ifndef MEDIAWORKER_THUMBNAIL_H
#define MEDIAWORKER_THUMBNAIL_H

#include <stdint.h>

#include "mediaworker/frame_select.h"
#include "mediaworker/image_encode.h"
#include "mediaworker/input.h"
#include "mediaworker/picture.h"
#include "mediaworker/probe.h"

/* Sizes one request may ask for, and the largest side of each (the CLI and the job operation accept the same). */
#define MW_THUMBNAIL_MAX_SIZES 8
#define MW_THUMBNAIL_MAX_SIDE 8192

/* A position in the media: seconds from the start, or a percentage of the duration. */
struct mw_position {
    double value;
    int percent;
};

/* Parses "12.5" (seconds), "50%" (of the duration) or "hh:mm:ss[.frac]". 0 or AVERROR(EINVAL). Pure. */
int mw_position_parse(const char *text, struct mw_position *pos);

/* The position in microseconds for a media of duration_us (AV_NOPTS_VALUE = unknown: percentages are
 * then 0), clamped inside the media. Pure. */
int64_t mw_position_resolve(const struct mw_position *pos, int64_t duration_us);

struct mw_thumbnail_output {
    const char *path;                  /* final file path; written atomically */
    struct mw_size_request size;       /* `even` is forced on for formats that need it */
    enum mw_image_format format;
    int quality;                       /* 1..100, 0 = default */
    /* Filled by mw_thumbnail_make. */
    int width, height;
    int64_t bytes;
};

struct mw_thumbnail_request {
    struct mw_position at;
    enum mw_select select;
    int threads;                       /* decoder threads (keyframe mode always uses one) */
    AVBufferRef *hw_device;            /* decode on this device when the codec can; NULL = software */
    int output_count;
    struct mw_thumbnail_output *outputs;
};

struct mw_thumbnail_result {
    int64_t time_us;                   /* time of the chosen frame from the start of the media */
    struct mw_frame_score score;
    const char *source;                /* "video", "image", "animation", "cover", "waveform" (static) */
    int decoded_on_device;             /* the frame came from the hardware decoder */
};

/*
 * Chooses the frame and writes every output of req (filling their width, height, bytes). probe is the
 * probe of in. Returns 0, or a negative error; outputs written before a failure stay in place (each one
 * is complete, none is partial).
 */
int mw_thumbnail_make(struct mw_input *in, const struct mw_probe *probe, struct mw_thumbnail_request *req,
                      struct mw_thumbnail_result *result);

/*
 * Finds the picture stream of an input: its index, and whether it is a still (one picture) or an
 * animation. Returns the stream index, or MW_ERR_NO_PICTURE. *source receives a static name.
 */
int mw_thumbnail_picture_stream(const struct mw_probe *probe, int *still, int *animated, const char **source);

/* The orientation and sample aspect ratio to show frame (from stream index of in) upright and square. */
void mw_thumbnail_frame_geometry(const struct mw_input *in, int stream_index, const AVFrame *frame,
                                 struct mw_orientation *orientation, AVRational *sar);

#endif
