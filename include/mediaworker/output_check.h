/*
 * Verifying a written output before it is reported as done.
 *
 * A file that a muxer closed without error can still be useless to a player: a moov atom at the end, a
 * duration cut short, audio starting a second after the video, a last GOP that does not decode, no colour
 * tags so that browsers guess the matrix. Each output is re-opened through the same safe input path as an
 * upload and checked for these before it is committed.
 */
#ifndef MEDIAWORKER_OUTPUT_CHECK_H
#define MEDIAWORKER_OUTPUT_CHECK_H

#include <stddef.h>

#include "mediaworker/config.h"

struct mw_output_expect {
    double duration_s;         /* of the source; <= 0 = not checked (e.g. one HLS segment) */
    double tolerance_s;        /* one frame: allowed duration and start-time mismatch */
    int video, audio;          /* streams that must be present and decodable */
    int mp4;                   /* moov must come before mdat; else the file is read through, not seeked */
    int threads;               /* decoder threads; 0 = 1 */
};

/*
 * Checks the file at path against expect. Returns 0 when it passes, MW_ERR_OUTPUT_CHECK with the reason
 * in why when it does not, or another negative error when it cannot be read at all. Leaves nothing open.
 */
int mw_output_check_file(const char *path, const struct mw_output_expect *expect, const struct mw_limits *limits,
                         char *why, size_t why_size);

/* MP4/MOV layout: 1 when the moov box precedes the mdat box at the top level, 0 when not or when either
 * is missing, a negative error when the file cannot be read. */
int mw_output_check_faststart(const char *path);

#endif
