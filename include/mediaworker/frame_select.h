/*
 * Frame selection: which decoded frame represents a video at a position.
 *
 * A frame source is one picture stream of an opened input with its decoder, one packet and one working
 * frame. Three ways to pick a frame:
 *   keyframe  seek to the last keyframe at or before the position and decode that packet alone (the
 *             decoder is drained and reset after it, so nothing else is decoded): the fast path;
 *   exact     the frame shown at the position: decode from that keyframe, with frames no other frame
 *             refers to skipped by the decoder (skip_frame = AVDISCARD_NONREF) until the position is near;
 *   best      score keyframes around the position (black, flat, blurred or single-colour pictures score
 *             low) and keep the best; if all of them are poor, look over the whole duration.
 * Still images and attached covers have one frame, whatever is asked. Animated images (GIF, APNG) have
 * no useful seeking, so they decode forward from the start.
 */
#ifndef MEDIAWORKER_FRAME_SELECT_H
#define MEDIAWORKER_FRAME_SELECT_H

#include <stdint.h>

#include <libavutil/frame.h>

#include "mediaworker/input.h"

enum mw_select {
    MW_SELECT_KEYFRAME,
    MW_SELECT_EXACT,
    MW_SELECT_BEST,
};

/* Parses "keyframe" / "exact" / "best"; 0 or AVERROR(EINVAL). */
int mw_select_parse(const char *text, enum mw_select *select);
const char *mw_select_name(enum mw_select select);

/* How well a picture represents a video, from an 8-bit grey rendering of it. */
struct mw_frame_score {
    double mean;       /* 0..255 */
    double stddev;     /* contrast */
    double detail;     /* mean absolute difference between neighbouring pixels: edges, sharpness */
    double score;      /* 0 (black, flat, blurred) .. 1 */
};

/* Scores a grey picture. Pure. A picture smaller than 2x2 scores 0. */
void mw_frame_score_gray(const uint8_t *data, int linesize, int width, int height, struct mw_frame_score *out);

/* Scores a decoded frame (any pixel format) on a small grey rendering. 0 or a negative error. */
int mw_frame_score(const AVFrame *frame, struct mw_frame_score *out);

struct mw_frame_source;

/*
 * Opens the decoder of stream_index of in (which must stay open while the source lives), on hw_device when
 * not NULL and the codec can use it (software otherwise). still = 1 for
 * single-picture inputs (still images, covers): every request then returns the first picture. animated =
 * 1 for GIF/APNG-like inputs that cannot seek. Returns 0 and *out, or a negative error with *out NULL.
 */
int mw_frame_source_new(struct mw_frame_source **out, struct mw_input *in, int stream_index, int threads,
                        AVBufferRef *hw_device, int still, int animated);

/* True once frames were decoded on the hardware device (they are copied to system memory on the way). */
int mw_frame_source_used_device(const struct mw_frame_source *s);

/*
 * Lets lone keyframes (keyframe mode, `best` candidates, storyboard tiles) be decoded without the
 * in-loop deblocking filter, about a quarter of an H.264 decode. Only for pictures that will be shrunk to
 * a third of their width or less, where block edges cannot be seen. Frames decoded in exact mode always
 * get the full filter, since later frames are predicted from them.
 */
void mw_frame_source_set_fast_keyframes(struct mw_frame_source *s, int fast);

/* Frees the source (not the input) and sets *s to NULL; accepts NULL. */
void mw_frame_source_free(struct mw_frame_source **s);

/*
 * Puts into out (unreferenced first) the frame chosen by select for position t_us (microseconds from the
 * start of the media); duration_us (or AV_NOPTS_VALUE) bounds the search of MW_SELECT_BEST. On success
 * returns 0, *time_us is the chosen frame's time and score its score (may be NULL: then
 * keyframe and exact skip scoring). MW_ERR_NO_PICTURE
 * when no frame could be decoded there, MW_ERR_DEADLINE when the job deadline passed.
 */
int mw_frame_source_get(struct mw_frame_source *s, enum mw_select select, int64_t t_us, int64_t duration_us,
                        AVFrame *out, int64_t *time_us, struct mw_frame_score *score);

#endif
