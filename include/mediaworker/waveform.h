/*
 * Waveform: the picture of an audio file that has no cover art.
 *
 * The whole stream is decoded once (the deadline is checked between packets) into 10 ms buckets of peak
 * and RMS level, so the envelope needs no duration up front; very long inputs merge buckets pairwise to
 * stay within a fixed memory bound. The envelope is normalised to its loudest point and drawn as mirrored
 * bars, peak in a darker tone and RMS in a lighter one, on a dark background.
 */
#ifndef MEDIAWORKER_WAVEFORM_H
#define MEDIAWORKER_WAVEFORM_H

#include <libavutil/frame.h>

#include "mediaworker/input.h"

/*
 * Draws the envelope given as count buckets of peak and rms levels (0..1) into rgb (AV_PIX_FMT_RGB24,
 * allocated). Pure apart from writing rgb.
 */
void mw_waveform_draw(const float *peak, const float *rms, int count, AVFrame *rgb);

/*
 * Decodes audio stream stream_index of in and renders its waveform as a new width x height RGB24 frame.
 * Returns 0 and *out (av_frame_free), MW_ERR_NO_PICTURE when no audio could be decoded, MW_ERR_DEADLINE,
 * or another negative error; *out is NULL on failure.
 */
int mw_waveform_render(struct mw_input *in, int stream_index, int width, int height, AVFrame **out);

#endif
