/*
 * Decoding a whole video stream as fast as it goes: the work under every transcode, exposed on its own so
 * that an operator can check that a file decodes to the end, and measure software against a hardware
 * decoder on the same machine (`mediaworker decode`, tests/gpu/).
 */
#ifndef MEDIAWORKER_DECODE_CHECK_H
#define MEDIAWORKER_DECODE_CHECK_H

#include <stdint.h>

#include <libavutil/buffer.h>

#include "mediaworker/input.h"

struct mw_decode_stats {
    int64_t frames;
    int64_t corrupt_frames;      /* frames the decoder flagged as damaged */
    double seconds;              /* wall time of demux + decode (+ copy back from the device) */
    int on_device;               /* frames came from the hardware decoder */
};

/*
 * Decodes every frame of the main video stream of in, on hw_device when not NULL and usable. Returns 0
 * with *stats filled, MW_ERR_NO_PICTURE without a video stream, MW_ERR_DEADLINE past the input's deadline,
 * or the decoder's error.
 */
int mw_decode_check(struct mw_input *in, int threads, AVBufferRef *hw_device, struct mw_decode_stats *stats);

#endif
