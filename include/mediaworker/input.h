/*
 * Safe input opening: the only way media code opens a file.
 *
 * The file is opened by us (read-only, no symlink following at the last component, regular files only)
 * and handed to libav through a custom AVIOContext, so libav never resolves a name itself. Nested opens
 * that some demuxers attempt (HLS segments, concat entries, MOV data references) are refused by an
 * io_open callback, and as a second fence protocol_whitelist is "file" and the demuxer must be on a list of
 * real media containers. The per-job deadline is checked in the read callback and in libav's interrupt
 * callback, and the configured limits (size, streams, pixels, duration) are enforced at open.
 */
#ifndef MEDIAWORKER_INPUT_H
#define MEDIAWORKER_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "mediaworker/config.h"

struct mw_input;

/*
 * Opens the regular file at path (already resolved by the path policy) and probes its streams. deadline
 * is an av_gettime_relative() value after which every read fails with MW_ERR_DEADLINE; 0 = none.
 * Returns 0 and sets *out, or a negative error (MW_ERR_* for refused inputs, libav's for unreadable ones)
 * with *out NULL and nothing left open.
 */
int mw_input_open_file(struct mw_input **out, const char *path, const struct mw_limits *limits, int64_t deadline);

/*
 * As mw_input_open_file, for a file the caller already opened (a confined job process gets its input opened
 * before it drops its privileges). The input reads through its own duplicate of fd; the caller keeps fd.
 */
int mw_input_open_fd(struct mw_input **out, int fd, const struct mw_limits *limits, int64_t deadline);

/* As mw_input_open_file, on bytes in memory (fuzzing, tests). data must outlive the input. */
int mw_input_open_memory(struct mw_input **out, const uint8_t *data, size_t size, const struct mw_limits *limits,
                         int64_t deadline);

/* The demuxer context; owned by the input. */
AVFormatContext *mw_input_format(const struct mw_input *in);

/*
 * One timeline for every operation: times that operations take (--at, storyboard tiles) and report are
 * presentation times from the file's start, as players show them, not from one stream's first frame. The
 * start is the earliest first timestamp of the file's audio and video streams (cover pictures aside), so a
 * video that starts 1.5 s after its audio (an MKV, an MP4's empty edit, B-frame delay without an edit list,
 * ASF preroll) has its first picture at 1.5 s. Without any timestamps (raw streams) the start is 0.
 */
int64_t mw_input_start_us(const struct mw_input *in);

/*
 * A timestamp of stream index as timeline microseconds, and back; AV_NOPTS_VALUE maps to 0. Back rounds
 * down: the picture shown at a time is the last one that starts at or before it, so in a coarse time base
 * (AVI's 1/25) 1.5 s is tick 37, not the 38 that starts after it.
 */
int64_t mw_input_time_us(const struct mw_input *in, int stream_index, int64_t ts);
int64_t mw_input_stream_ts(const struct mw_input *in, int stream_index, int64_t time_us);

/* Size of the input in bytes. */
int64_t mw_input_size(const struct mw_input *in);

/* True once the deadline has passed; decode loops check it between packets. */
int mw_input_deadline_passed(const struct mw_input *in);

/*
 * av_read_frame for in, except that AVERROR_EOF means the true end: some demuxers test avio_feof() and report
 * a failed read, or one the deadline cut short, as EOF; this returns the read error or MW_ERR_DEADLINE then.
 * Every read loop reads through it.
 */
int mw_input_read(struct mw_input *in, AVPacket *pkt);

/*
 * Opens a decoder for stream index with the codec whitelist, the pixel limit and thread count applied.
 * Returns 0 and sets *out, or a negative error with *out NULL (MW_ERR_CODEC_REFUSED when the codec is not
 * allowed, AVERROR_DECODER_NOT_FOUND when none exists).
 */
int mw_input_open_decoder(const struct mw_input *in, int stream_index, int threads, AVCodecContext **out);

/* Whether mw_input_open_decoder may open one for the stream: 0, MW_ERR_CODEC_REFUSED or
 * AVERROR_DECODER_NOT_FOUND (AVERROR_STREAM_NOT_FOUND for a bad index). Opens nothing. */
int mw_input_check_decoder(const struct mw_input *in, int stream_index);

/*
 * As mw_input_open_decoder, decoding on hw_device (an av_hwdevice_ctx reference; NULL = software) where the
 * codec supports that device. *on_device (unless NULL) is set to 1 when the decoder was set up for the device:
 * frames may then arrive in device memory (see mw_hwaccel_frame_to_software). Profiles the device cannot decode
 * (libavcodec asks get_format again without the device format when the device refuses) fall back to
 * software frames by themselves, stream by stream.
 */
int mw_input_open_decoder_hw(const struct mw_input *in, int stream_index, int threads, AVBufferRef *hw_device,
                             AVCodecContext **out, int *on_device);

/* Closes everything and sets *in to NULL; accepts NULL. */
void mw_input_close(struct mw_input **in);

/*
 * Runs, once, the one-time set-up of the decoders uploads need most (libavcodec builds their static tables
 * on first open). A process that forks a child per job calls it before forking, so that each child inherits
 * the tables instead of building them again. Touches no input; a decoder that fails to open is skipped.
 */
void mw_input_prewarm_decoders(void);

/* Comma-separated lists used at open; exposed for `mediaworker caps` and the docs. */
extern const char mw_input_format_whitelist[];
extern const char mw_input_codec_whitelist[];

#endif
