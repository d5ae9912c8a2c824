#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>

#include "mediaworker/error.h"
#include "mediaworker/frame_select.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/log.h"
#include "mediaworker/picture.h"

/* A keyframe that does not decode (corrupt) is retried on the next ones, this many times. */
#define MAX_KEYFRAME_TRIES 3
/* Packets read after a seek before giving up on finding the frame: a bound for broken indexes. */
#define MAX_PACKETS_PER_SEEK 20000
/* Packets decoded after a keyframe to learn when it is shown: its reorder delay and an open GOP's B-frames. */
#define SEQUENCE_PACKETS 32
/* Width of the grey rendering a frame is scored on. */
#define SCORE_WIDTH 160
/* Candidates scoring below this send `best` over the whole duration. */
#define POOR_SCORE 0.35
#define NEAR_CANDIDATES 5
#define WIDE_CANDIDATES 9

struct mw_frame_source {
    struct mw_input *in;
    AVFormatContext *fmt;
    const AVStream *st;
    int stream_index;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;              /* working frame; unreferenced at the tail of each decode loop */
    int64_t start;               /* first timestamp of the stream, in its time base */
    int64_t frame_duration;      /* nominal, in the stream's time base */
    int still;
    int animated;
    int read_any;                /* packets were read since the open (a still can then no longer be re-read) */
    int fast_keyframes;          /* decode lone keyframes without the deblocking filter */
    int on_device;               /* the decoder was set up on a hardware device */
    int untimed;                 /* a raw stream: pictures carry no timestamps, they are numbered here */
    int64_t pictures_out;        /* pictures decoded since the start, while untimed */
    int64_t first_shown;         /* time of the first picture decoded since the last seek, or AV_NOPTS_VALUE */
    int device_frames;           /* frames did arrive in device memory (and were copied back) */
    AVFrame *transfer;           /* scratch for copying device frames to system memory */
};

/* Frames may arrive in device memory; everything after the decoder works on system memory. */
static int receive_frame(struct mw_frame_source *s)
{
    int ret = avcodec_receive_frame(s->dec, s->frame);

    if (ret >= 0 && s->on_device) {
        ret = mw_hwaccel_frame_to_software(s->frame, &s->transfer);
        if (ret > 0)
            s->device_frames = 1;
        if (ret < 0)
            av_frame_unref(s->frame);
    }
    /* Decoded from the start (seek_to), the n-th picture out of the decoder is shown n frames in. */
    if (ret >= 0 && s->untimed && s->frame->best_effort_timestamp == AV_NOPTS_VALUE)
        s->frame->best_effort_timestamp = s->start + s->pictures_out++ * s->frame_duration;
    return ret < 0 ? ret : 0;
}

int mw_select_parse(const char *text, enum mw_select *select)
{
    if (!strcmp(text, "keyframe"))
        *select = MW_SELECT_KEYFRAME;
    else if (!strcmp(text, "exact"))
        *select = MW_SELECT_EXACT;
    else if (!strcmp(text, "best"))
        *select = MW_SELECT_BEST;
    else
        return AVERROR(EINVAL);
    return 0;
}

const char *mw_select_name(enum mw_select select)
{
    return select == MW_SELECT_EXACT ? "exact" : select == MW_SELECT_BEST ? "best" : "keyframe";
}

static double ramp(double x, double from, double to)
{
    if (x <= from)
        return 0;
    if (x >= to)
        return 1;
    return (x - from) / (to - from);
}

void mw_frame_score_gray(const uint8_t *data, int linesize, int width, int height, struct mw_frame_score *out)
{
    double sum = 0, sum_sq = 0, diff = 0;
    double count = (double)width * height;
    double brightness, contrast, sharpness, variance;

    memset(out, 0, sizeof(*out));
    if (width < 2 || height < 2)
        return;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = data + (ptrdiff_t)y * linesize;
        const uint8_t *below = y + 1 < height ? row + linesize : NULL;
        for (int x = 0; x < width; x++) {
            sum += row[x];
            sum_sq += (double)row[x] * row[x];
            if (x + 1 < width)
                diff += abs(row[x + 1] - row[x]);
            if (below)
                diff += abs(below[x] - row[x]);
        }
    }
    out->mean = sum / count;
    variance = sum_sq / count - out->mean * out->mean;
    out->stddev = variance > 0 ? sqrt(variance) : 0;
    out->detail = diff / ((double)(width - 1) * height + (double)width * (height - 1));
    /* Near-black and near-white pictures are fades and flashes; contrast separates a picture from a
     * single colour; edge energy separates a sharp picture from a blurred or flat one. */
    brightness = ramp(out->mean, 12, 45) * (1 - ramp(out->mean, 225, 250));
    contrast = ramp(out->stddev, 4, 45);
    sharpness = sqrt(ramp(out->detail, 0.5, 12));
    out->score = brightness * (0.55 * contrast + 0.45 * sharpness);
}

/* True for 8-bit formats whose first plane is the luma, one byte per pixel (yuv4xxp, yuvj4xxp, nv12, gray). */
static int has_plain_luma(const AVFrame *frame)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(frame->format);

    return desc && !(desc->flags & (AV_PIX_FMT_FLAG_RGB | AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BE |
                                    AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_BITSTREAM)) &&
           desc->comp[0].plane == 0 && desc->comp[0].step == 1 && desc->comp[0].depth == 8 &&
           desc->comp[0].offset == 0;
}

/*
 * Scores straight from the luma plane, sampling a 2x2 average per cell of a grid SCORE_WIDTH wide: the
 * scaler would read every pixel of a large frame for a picture that only needs its outline.
 */
static int score_luma(const AVFrame *frame, struct mw_frame_score *out)
{
    int width = frame->width < SCORE_WIDTH ? frame->width : SCORE_WIDTH;
    int height = (int)((int64_t)frame->height * width / frame->width);
    int limited = !mw_picture_is_full_range(frame);
    uint8_t *grid;

    if (height < 1)
        height = 1;
    grid = av_malloc((size_t)width * height);
    if (!grid)
        return AVERROR(ENOMEM);
    for (int y = 0; y < height; y++) {
        int sy = (int)((int64_t)y * frame->height / height);
        int sy2 = sy + 1 < frame->height ? sy + 1 : sy;
        const uint8_t *row = frame->data[0] + (ptrdiff_t)sy * frame->linesize[0];
        const uint8_t *next = frame->data[0] + (ptrdiff_t)sy2 * frame->linesize[0];
        for (int x = 0; x < width; x++) {
            int sx = (int)((int64_t)x * frame->width / width);
            int sx2 = sx + 1 < frame->width ? sx + 1 : sx;
            int v = (row[sx] + row[sx2] + next[sx] + next[sx2] + 2) / 4;
            if (limited)
                v = (v - 16) * 255 / 219;
            grid[y * width + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    mw_frame_score_gray(grid, width, width, height, out);
    av_free(grid);
    return 0;
}

int mw_frame_score(const AVFrame *frame, struct mw_frame_score *out)
{
    AVFrame *gray = NULL;
    int ret;

    if (frame->width <= 0 || frame->height <= 0)
        return AVERROR_INVALIDDATA;
    if (has_plain_luma(frame))
        return score_luma(frame, out);
    ret = mw_picture_render_gray(frame, SCORE_WIDTH, &gray);

    if (ret < 0)
        return ret;
    mw_frame_score_gray(gray->data[0], gray->linesize[0], gray->width, gray->height, out);
    av_frame_free(&gray);
    return 0;
}

int mw_frame_source_new(struct mw_frame_source **out, struct mw_input *in, int stream_index, int threads,
                        AVBufferRef *hw_device, int still, int animated)
{
    struct mw_frame_source *s;
    AVRational rate;
    int ret;

    *out = NULL;
    s = av_mallocz(sizeof(*s));
    if (!s)
        return AVERROR(ENOMEM);
    s->in = in;
    s->fmt = mw_input_format(in);
    s->stream_index = stream_index;
    s->still = still;
    s->animated = animated;
    if (stream_index < 0 || (unsigned)stream_index >= s->fmt->nb_streams) {
        ret = AVERROR_STREAM_NOT_FOUND;
        goto fail;
    }
    s->st = s->fmt->streams[stream_index];
    s->start = s->st->start_time != AV_NOPTS_VALUE ? s->st->start_time : 0;
    s->untimed = s->st->start_time == AV_NOPTS_VALUE && !still && !animated;
    rate = s->st->avg_frame_rate.num > 0 ? s->st->avg_frame_rate : s->st->r_frame_rate;
    s->frame_duration = rate.num > 0 && rate.den > 0 ? av_rescale_q(1, av_inv_q(rate), s->st->time_base)
                                                     : av_rescale_q(40, (AVRational){1, 1000}, s->st->time_base);
    if (s->frame_duration < 1)
        s->frame_duration = 1;
    s->pkt = av_packet_alloc();
    s->frame = av_frame_alloc();
    if (!s->pkt || !s->frame) {
        ret = AVERROR(ENOMEM);
        goto fail;
    }
    ret = mw_input_open_decoder_hw(in, stream_index, threads, hw_device, &s->dec, &s->on_device);
    if (ret < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    mw_frame_source_free(&s);
    return ret;
}

int mw_frame_source_used_device(const struct mw_frame_source *s)
{
    return s->device_frames;
}

void mw_frame_source_free(struct mw_frame_source **ps)
{
    struct mw_frame_source *s = ps ? *ps : NULL;

    if (!s)
        return;
    avcodec_free_context(&s->dec);
    av_packet_free(&s->pkt);
    av_frame_free(&s->frame);
    av_frame_free(&s->transfer);
    av_free(s);
    *ps = NULL;
}

static int64_t to_stream_ts(const struct mw_frame_source *s, int64_t t_us)
{
    return mw_input_stream_ts(s->in, s->stream_index, t_us);
}

static int64_t frame_time_us(const struct mw_frame_source *s, const AVFrame *frame)
{
    return mw_input_time_us(s->in, s->stream_index, frame->best_effort_timestamp);
}

/*
 * Positions the demuxer at the last keyframe at or before ts and resets the decoder. Inputs that cannot
 * seek are read from where they are when nothing was read yet (a fresh still image or animation).
 */
static int seek_to(struct mw_frame_source *s, int64_t ts)
{
    /* Without timestamps there is nothing to seek by, and pictures are numbered from the start. MPEG-TS/PS
     * find a time by bisecting bytes and can land just past the first keyframe: their start is byte 0. */
    int from_first_byte = s->untimed || (ts <= s->start && (s->fmt->iformat->flags & AVFMT_TS_DISCONT));
    int ret = AVERROR(ENOSYS);

    if ((s->still || s->animated) && !s->read_any)
        return 0;
    if (!from_first_byte) {
        ret = avformat_seek_file(s->fmt, s->stream_index, INT64_MIN, ts, ts, 0);
        if (ret < 0)
            ret = av_seek_frame(s->fmt, s->stream_index, ts, AVSEEK_FLAG_BACKWARD);
    }
    if (ret < 0) {
        /* Those, and streams whose index cannot reach ts (broken or absent): the start is still a keyframe. */
        ret = avformat_seek_file(s->fmt, -1, INT64_MIN, 0, 0, AVSEEK_FLAG_BYTE);
        if (ret < 0)
            return ret;
        s->pictures_out = 0;
    }
    avcodec_flush_buffers(s->dec);
    return 0;
}

/* The next packet, unless the deadline has passed; from then on the input has been read. */
static int read_packet(struct mw_frame_source *s)
{
    if (mw_input_deadline_passed(s->in))
        return MW_ERR_DEADLINE;
    s->read_any = 1;
    return mw_input_read(s->in, s->pkt);
}

/*
 * libavcodec reports a picture size it refuses (over max_pixels, or absurd) as EINVAL from
 * ff_set_dimensions; bitstream damage is INVALIDDATA. The refusal deserves its own code in reports.
 */
static int decoder_error(int ret)
{
    return ret == AVERROR(EINVAL) ? MW_ERR_TOO_MANY_PIXELS : ret;
}

void mw_frame_source_set_fast_keyframes(struct mw_frame_source *s, int fast)
{
    s->fast_keyframes = fast;
}

/* Decodes the packet in s->pkt on its own (drain, then reset) into s->frame. 0 or EAGAIN when it gave none. */
static int decode_alone(struct mw_frame_source *s)
{
    int ret;

    /* No later frame is decoded from this one, so skipping the deblocking filter cannot drift; its
     * block edges vanish in the downscale the caller promised. */
    s->dec->skip_loop_filter = s->fast_keyframes ? AVDISCARD_ALL : AVDISCARD_DEFAULT;
    ret = avcodec_send_packet(s->dec, s->pkt);
    if (ret < 0 && ret != AVERROR_INVALIDDATA)
        return decoder_error(ret);
    if (ret >= 0) {
        ret = receive_frame(s);
        if (ret == AVERROR(EAGAIN)) {
            ret = avcodec_send_packet(s->dec, NULL);
            if (ret >= 0)
                ret = receive_frame(s);
        }
    }
    avcodec_flush_buffers(s->dec);
    return ret == AVERROR_EOF || ret == AVERROR_INVALIDDATA ? AVERROR(EAGAIN) : decoder_error(ret);
}

/*
 * get_keyframe for a raw stream. Where a keyframe shows cannot be told from its place in decode order (an
 * open GOP's leading pictures follow it there but show before it), so the stream is decoded from the
 * start, its pictures numbered (receive_frame), and the last keyframe shown at or before ts is kept.
 */
static int get_untimed_keyframe(struct mw_frame_source *s, int64_t ts, AVFrame *out)
{
    int have = 0, past = 0;
    int ret = seek_to(s, ts);

    for (int n = 0; ret >= 0 && !past && n < MAX_PACKETS_PER_SEEK; n++) {
        ret = read_packet(s);
        if (ret == AVERROR_EOF)
            ret = avcodec_send_packet(s->dec, NULL);
        else if (ret >= 0 && s->pkt->stream_index == s->stream_index)
            ret = avcodec_send_packet(s->dec, s->pkt);
        av_packet_unref(s->pkt);
        if (ret == AVERROR_INVALIDDATA)
            ret = 0;
        while (ret >= 0 && !past && (ret = receive_frame(s)) >= 0) {
            past = s->frame->best_effort_timestamp > ts;
            if (!past && s->frame->key_frame) {
                av_frame_unref(out);
                av_frame_move_ref(out, s->frame);
                have = 1;
            }
            av_frame_unref(s->frame);
        }
        if (ret == AVERROR(EAGAIN))
            ret = 0;
    }
    avcodec_flush_buffers(s->dec);
    if (ret < 0 && ret != AVERROR_EOF)
        return decoder_error(ret);
    return have ? 0 : MW_ERR_NO_PICTURE;
}

/*
 * Where to seek for a picture at ts, nearest first. Demuxers without an index (MPEG-TS, MPEG-PS) seek by
 * bytes and can land after ts, or after the keyframe before it; each further attempt starts earlier, the
 * last at the stream's start. Returns 1 for the last attempt.
 */
static int seek_point(const struct mw_frame_source *s, int64_t ts, int attempt, int64_t *from)
{
    static const int margin_s[] = {0, 1, 4, 16};
    int64_t margin;

    if (attempt >= (int)(sizeof(margin_s) / sizeof(margin_s[0]))) {
        *from = s->start;
        return 1;
    }
    margin = av_rescale_q(margin_s[attempt], (AVRational){1, 1}, s->st->time_base);
    *from = ts - margin > s->start ? ts - margin : s->start;
    return *from == s->start;
}

static int64_t packet_time(const AVPacket *pkt)
{
    return pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
}

/*
 * Containers that store only decode times (AVI): decoded in sequence, a picture comes out when the decoder
 * may let it go, stamped with the decode time of the packet then sent, and that is the time players (and
 * the ffmpeg CLI) show it at. How many packets that takes depends on the pictures after the keyframe (an
 * MPEG-4 part 2 or MPEG-2 keyframe waits for the next reference picture, past the B-frames an open GOP
 * puts after it), so the keyframe is decoded again in sequence, from its own position, until it comes out.
 * Returns its time, or AV_NOPTS_VALUE when it did not come out within a few packets.
 */
static int64_t shown_in_sequence(struct mw_frame_source *s, int64_t keyframe_dts)
{
    int64_t shown = AV_NOPTS_VALUE;
    int sent = 0;
    int ret = seek_to(s, keyframe_dts);

    for (int n = 0; ret >= 0 && shown == AV_NOPTS_VALUE && sent < SEQUENCE_PACKETS && n < MAX_PACKETS_PER_SEEK;
         n++) {
        ret = read_packet(s);
        if (ret == AVERROR_EOF)
            ret = avcodec_send_packet(s->dec, NULL);
        else if (ret >= 0 && s->pkt->stream_index == s->stream_index &&
                 (sent || (s->pkt->dts == keyframe_dts && (s->pkt->flags & AV_PKT_FLAG_KEY)))) {
            ret = avcodec_send_packet(s->dec, s->pkt);
            sent++;
        }
        av_packet_unref(s->pkt);
        if (ret == AVERROR_INVALIDDATA)
            ret = 0;
        while (ret >= 0 && shown == AV_NOPTS_VALUE && (ret = avcodec_receive_frame(s->dec, s->frame)) >= 0) {
            if (s->frame->key_frame || s->frame->pict_type == AV_PICTURE_TYPE_I)
                shown = s->frame->best_effort_timestamp;
            av_frame_unref(s->frame);
        }
        if (ret == AVERROR(EAGAIN))
            ret = 0;
    }
    avcodec_flush_buffers(s->dec);
    return shown;
}

/* Decodes the keyframe in s->pkt alone into out. 0, AVERROR(EAGAIN) when it gave no picture, or an error. */
static int decode_keyframe(struct mw_frame_source *s, AVFrame *out)
{
    int64_t dts = s->pkt->dts;
    int decode_times_only = s->pkt->pts == AV_NOPTS_VALUE && dts != AV_NOPTS_VALUE;
    int ret = decode_alone(s);

    if (ret < 0)
        return ret;
    av_frame_unref(out);
    av_frame_move_ref(out, s->frame);
    if (decode_times_only) {
        int64_t shown;
        /* The keyframe is read again from the file; this copy would be overwritten by the reads. */
        av_packet_unref(s->pkt);
        shown = shown_in_sequence(s, dts);
        /* Every mode tells one timeline: where the sequence says nothing, the decoder's reorder delay. */
        out->best_effort_timestamp = shown != AV_NOPTS_VALUE ? shown : dts + s->dec->has_b_frames * s->frame_duration;
    }
    return 0;
}

/*
 * From an earlier seek point: reads on (demuxing only) to the last keyframe that starts at or before ts,
 * stopping once decode time passes ts (no later keyframe can show before ts), and decodes it.
 */
static int scan_keyframe(struct mw_frame_source *s, int64_t from, int64_t ts, AVFrame *out)
{
    AVPacket *keyframe = av_packet_alloc();
    AVPacket *earlier = av_packet_alloc();
    int ret = keyframe && earlier ? seek_to(s, from) : AVERROR(ENOMEM);

    for (int n = 0; ret >= 0 && n < MAX_PACKETS_PER_SEEK; n++) {
        ret = read_packet(s);
        if (ret < 0)
            break;
        if (s->pkt->stream_index == s->stream_index) {
            int64_t decode_time = s->pkt->dts != AV_NOPTS_VALUE ? s->pkt->dts : s->pkt->pts;
            if (decode_time != AV_NOPTS_VALUE && decode_time > ts) {
                av_packet_unref(s->pkt);
                break;
            }
            if ((s->pkt->flags & AV_PKT_FLAG_KEY) && packet_time(s->pkt) != AV_NOPTS_VALUE) {
                av_packet_unref(earlier);
                av_packet_move_ref(earlier, keyframe);
                av_packet_move_ref(keyframe, s->pkt);
            }
        }
        av_packet_unref(s->pkt);
    }
    if ((ret >= 0 || ret == AVERROR_EOF) && keyframe->data) {
        av_packet_move_ref(s->pkt, keyframe);
        ret = decode_keyframe(s, out);
        av_packet_unref(s->pkt);
        /* Decoded before ts but shown after it (decode times only): the keyframe before it is the one, or
         * one before this seek point. */
        if (ret >= 0 && out->best_effort_timestamp != AV_NOPTS_VALUE && out->best_effort_timestamp > ts) {
            ret = AVERROR(EAGAIN);
            if (earlier->data) {
                av_packet_move_ref(s->pkt, earlier);
                ret = decode_keyframe(s, out);
                av_packet_unref(s->pkt);
            }
        }
    } else if (ret >= 0 || ret == AVERROR_EOF) {
        ret = AVERROR(EAGAIN);
    }
    av_packet_free(&keyframe);
    av_packet_free(&earlier);
    return ret;
}

/* The first keyframe that decodes after a seek to from, into out. */
static int first_keyframe(struct mw_frame_source *s, int64_t from, AVFrame *out)
{
    int tries = 0;
    int ret = seek_to(s, from);

    for (int n = 0; ret >= 0 && n < MAX_PACKETS_PER_SEEK; n++) {
        ret = read_packet(s);
        if (ret < 0)
            break;
        if (s->pkt->stream_index == s->stream_index && ((s->pkt->flags & AV_PKT_FLAG_KEY) || s->still)) {
            ret = decode_keyframe(s, out);
            av_packet_unref(s->pkt);
            if (ret >= 0)
                return 0;
            if (ret != AVERROR(EAGAIN) || ++tries >= MAX_KEYFRAME_TRIES)
                break;
            ret = 0;
        }
        av_packet_unref(s->pkt);
    }
    av_packet_unref(s->pkt);
    return ret >= 0 || ret == AVERROR_EOF ? AVERROR(EAGAIN) : ret;
}

/*
 * The keyframe shown at or before ts, into out: the last one before ts after a seek to ts (an indexed
 * container lands on it), else from ever earlier seek points; the first one when ts lies before them all.
 */
static int get_keyframe(struct mw_frame_source *s, int64_t ts, AVFrame *out)
{
    int ret;

    if (s->st->disposition & AV_DISPOSITION_ATTACHED_PIC) {
        av_packet_unref(s->pkt);
        ret = av_packet_ref(s->pkt, &s->st->attached_pic);
        if (ret >= 0)
            ret = decode_alone(s);
        av_packet_unref(s->pkt);
        if (ret >= 0) {
            av_frame_unref(out);
            av_frame_move_ref(out, s->frame);
        }
        return ret == AVERROR(EAGAIN) ? MW_ERR_NO_PICTURE : ret;
    }
    if (s->untimed)
        return get_untimed_keyframe(s, ts, out);
    /* Scanned on from the seek point even where it landed on a keyframe: a seek by pages (Ogg) or bytes
     * can land on an earlier one than the last keyframe before ts. */
    for (int attempt = 0, last = 0; !last; attempt++) {
        int64_t from;
        last = seek_point(s, ts, attempt, &from);
        ret = scan_keyframe(s, from, ts, out);
        if (ret != AVERROR(EAGAIN))
            break;
    }
    /* ts lies before every keyframe: the first one is the picture shown there. */
    if (ret == AVERROR(EAGAIN))
        ret = first_keyframe(s, s->start, out);
    return ret == AVERROR(EAGAIN) ? MW_ERR_NO_PICTURE : ret;
}

/*
 * Takes the frames the decoder has ready. The latest one not after ts is kept in out; *done is set once a
 * frame at or past ts has been seen (the one shown at ts is then known).
 */
static int take_frames(struct mw_frame_source *s, int64_t ts, AVFrame *out, int *have, int *done)
{
    int ret;

    while (!*done && (ret = receive_frame(s)) >= 0) {
        int64_t pts = s->frame->best_effort_timestamp;

        if (s->first_shown == AV_NOPTS_VALUE)
            s->first_shown = pts;
        if (pts != AV_NOPTS_VALUE && pts > ts) {
            /* Past the position: the kept frame is the one shown at ts (a player shows each picture until
             * the next one's time); with none kept, ts lies before the first frame and this one is shown. */
            if (!*have) {
                av_frame_move_ref(out, s->frame);
                *have = 1;
            }
            *done = 1;
        } else {
            av_frame_unref(out);
            av_frame_move_ref(out, s->frame);
            *have = 1;
            *done = pts == AV_NOPTS_VALUE || pts == ts;
        }
        av_frame_unref(s->frame);
    }
    if (*done)
        return 0;
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : decoder_error(ret);
}

/* After a seek to from, decodes on to the frame shown at ts, into out. */
static int exact_from(struct mw_frame_source *s, int64_t from, int64_t ts, AVFrame *out)
{
    int have = 0, done = 0, drained = 0;
    int ret;

    s->first_shown = AV_NOPTS_VALUE;
    ret = seek_to(s, from);
    if (ret < 0)
        return ret;
    av_frame_unref(out);
    for (int n = 0; !done; n++) {
        if (n >= MAX_PACKETS_PER_SEEK) {
            ret = AVERROR_EOF;
            break;
        }
        ret = read_packet(s);
        if (ret < 0)
            break;
        if (s->pkt->stream_index == s->stream_index) {
            /* Frames well before the position that nothing refers to need not be decoded at all. */
            int early = s->pkt->pts != AV_NOPTS_VALUE && s->pkt->pts + 2 * s->frame_duration < ts;
            s->dec->skip_frame = early && !s->animated ? AVDISCARD_NONREF : AVDISCARD_DEFAULT;
            s->dec->skip_loop_filter = AVDISCARD_DEFAULT;
            ret = avcodec_send_packet(s->dec, s->pkt);
            if (ret < 0 && ret != AVERROR_INVALIDDATA) {
                ret = decoder_error(ret);
                goto end;
            }
            /* The packet shown at ts has been sent: whatever follows in decode order is either after ts or
             * not needed, so draining now saves decoding the frames the reorder delay would wait for. */
            if (ret >= 0 && s->pkt->pts != AV_NOPTS_VALUE && s->pkt->pts <= ts &&
                ts - s->pkt->pts < s->frame_duration) {
                s->dec->skip_frame = AVDISCARD_DEFAULT;
                ret = avcodec_send_packet(s->dec, NULL);
                if (ret < 0) {
                    ret = decoder_error(ret);
                    goto end;
                }
                drained = 1;
            }
            ret = take_frames(s, ts, out, &have, &done);
            if (ret < 0)
                goto end;
            if (drained)
                done = 1;
        }
        av_packet_unref(s->pkt);
    }
    if (ret == AVERROR_EOF && !done) {
        s->dec->skip_frame = AVDISCARD_DEFAULT;
        ret = avcodec_send_packet(s->dec, NULL);
        if (ret >= 0)
            ret = take_frames(s, ts, out, &have, &done);
    }
    if (ret == AVERROR_EOF)
        ret = 0;
end:
    av_packet_unref(s->pkt);
    s->dec->skip_frame = AVDISCARD_DEFAULT;
    avcodec_flush_buffers(s->dec);
    if (ret >= 0 && !have)
        ret = MW_ERR_NO_PICTURE;
    return ret;
}

/*
 * The frame shown at ts, into out. A seek that lands after ts, or where nothing decodes until after it (a
 * byte seek past the only keyframe), is retried from earlier points (seek_point).
 */
static int get_exact(struct mw_frame_source *s, int64_t ts, AVFrame *out)
{
    int ret = 0;

    if (s->still || (s->st->disposition & AV_DISPOSITION_ATTACHED_PIC))
        return get_keyframe(s, ts, out);
    for (int attempt = 0, last = 0; !last; attempt++) {
        int64_t from;
        last = seek_point(s, ts, attempt, &from) || s->untimed;
        ret = exact_from(s, from, ts, out);
        if (ret < 0 && ret != MW_ERR_NO_PICTURE)
            return ret;
        if (ret >= 0 && (s->first_shown == AV_NOPTS_VALUE || s->first_shown <= ts))
            return 0;
    }
    return ret;
}

static int64_t clamp_time(int64_t t, int64_t duration_us)
{
    if (t < 0)
        return 0;
    if (duration_us != AV_NOPTS_VALUE && duration_us > 0 && t >= duration_us)
        return duration_us - duration_us / 100;
    return t;
}

/* A later (farther) candidate must beat the kept one by this much: near the position is worth something. */
#define DISTANCE_MARGIN 0.03

/* Scores the keyframe at each time of times[]; keeps the best in out. */
static int score_candidates(struct mw_frame_source *s, const int64_t *times, int count, AVFrame *out,
                            AVFrame *candidate, struct mw_frame_score *best, int64_t *seen, int *seen_count)
{
    for (int i = 0; i < count; i++) {
        struct mw_frame_score score;
        int duplicate = 0;
        int ret = get_keyframe(s, to_stream_ts(s, times[i]), candidate);

        if (ret == MW_ERR_NO_PICTURE)
            continue;
        if (ret < 0)
            return ret;
        for (int j = 0; j < *seen_count; j++)
            duplicate |= seen[j] == candidate->best_effort_timestamp;
        if (!duplicate && *seen_count < NEAR_CANDIDATES + WIDE_CANDIDATES) {
            seen[(*seen_count)++] = candidate->best_effort_timestamp;
            ret = mw_frame_score(candidate, &score);
            if (ret < 0)
                return ret;
            if (!out->buf[0] || score.score > best->score + DISTANCE_MARGIN) {
                *best = score;
                av_frame_unref(out);
                av_frame_move_ref(out, candidate);
            }
        }
        av_frame_unref(candidate);
    }
    return 0;
}

static int get_best(struct mw_frame_source *s, int64_t t_us, int64_t duration_us, AVFrame *out,
                    struct mw_frame_score *best)
{
    int64_t times[WIDE_CANDIDATES];
    int64_t seen[NEAR_CANDIDATES + WIDE_CANDIDATES];
    int64_t spread = duration_us != AV_NOPTS_VALUE && duration_us > 0 ? duration_us / 25 : 1000000;
    int seen_count = 0;
    AVFrame *candidate = av_frame_alloc();
    int ret;

    if (!candidate)
        return AVERROR(ENOMEM);
    av_frame_unref(out);
    memset(best, 0, sizeof(*best));
    if (spread < 1000000)
        spread = 1000000;
    /* Nearest first: a farther candidate replaces a nearer one only when clearly better (DISTANCE_MARGIN). */
    for (int i = 0; i < NEAR_CANDIDATES; i++)
        times[i] = clamp_time(t_us + (i % 2 ? 1 : -1) * ((i + 1) / 2) * spread, duration_us);
    ret = score_candidates(s, times, NEAR_CANDIDATES, out, candidate, best, seen, &seen_count);
    if (ret < 0 || best->score >= POOR_SCORE || duration_us == AV_NOPTS_VALUE || duration_us <= 0)
        goto end;
    for (int i = 0; i < WIDE_CANDIDATES; i++)
        times[i] = duration_us / (WIDE_CANDIDATES + 1) * (i + 1);
    ret = score_candidates(s, times, WIDE_CANDIDATES, out, candidate, best, seen, &seen_count);
end:
    av_frame_free(&candidate);
    if (ret >= 0 && !out->buf[0])
        ret = MW_ERR_NO_PICTURE;
    return ret;
}

int mw_frame_source_get(struct mw_frame_source *s, enum mw_select select, int64_t t_us, int64_t duration_us,
                        AVFrame *out, int64_t *time_us, struct mw_frame_score *score)
{
    struct mw_frame_score local;
    int ret;

    t_us = clamp_time(t_us, duration_us);
    /* One picture has one answer; an animation cannot seek, so it is decoded forward to the position. */
    if (s->still || (s->st->disposition & AV_DISPOSITION_ATTACHED_PIC))
        select = MW_SELECT_KEYFRAME;
    else if (s->animated)
        select = MW_SELECT_EXACT;
    switch (select) {
    case MW_SELECT_BEST:
        ret = get_best(s, t_us, duration_us, out, &local);
        break;
    case MW_SELECT_EXACT:
        ret = get_exact(s, to_stream_ts(s, t_us), out);
        break;
    default:
        ret = get_keyframe(s, to_stream_ts(s, t_us), out);
        break;
    }
    if (ret < 0)
        return ret;
    if (select != MW_SELECT_BEST && score) {
        ret = mw_frame_score(out, &local);
        if (ret < 0)
            return ret;
    }
    *time_us = s->still || (s->st->disposition & AV_DISPOSITION_ATTACHED_PIC) ? 0 : frame_time_us(s, out);
    if (score)
        *score = local;
    return 0;
}
