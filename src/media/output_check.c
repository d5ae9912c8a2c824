#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/intreadwrite.h>

#include "mediaworker/error.h"
#include "mediaworker/input.h"
#include "mediaworker/log.h"
#include "mediaworker/output_check.h"

/*
 * The checks read the output the way a player would: through the safe input path, first frames from the
 * start, then a seek to the last GOP and a decode to the end.
 */
int mw_output_check_faststart(const char *path)
{
    uint8_t header[16];
    off_t offset = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return AVERROR(errno);
    for (;;) {
        ssize_t got = pread(fd, header, sizeof(header), offset);
        uint64_t size;

        if (got < 0) {
            ret = AVERROR(errno);
            break;
        }
        if (got < 8)
            break;
        size = AV_RB32(header);
        if (!memcmp(header + 4, "moov", 4)) {
            ret = 1;
            break;
        }
        if (!memcmp(header + 4, "mdat", 4))
            break;
        if (size == 1 && got >= 16)
            size = AV_RB64(header + 8);
        if (size < 8)
            break;
        offset += (off_t)size;
    }
    close(fd);
    return ret;
}

struct check_state {
    AVFormatContext *format;
    int video, audio;                /* stream indexes or -1 */
    struct mw_input *in;
    AVCodecContext *decoder[2];      /* video, audio */
    AVPacket *pkt;
    AVFrame *frame;
    int decoded[2];
    int video_drained;               /* the first pass decoded every video frame */
    double last_video_end_s;
};

/* Takes every frame the decoder has ready, remembering where the last video frame ends. */
static int receive_frames(struct check_state *s, int which, int ret)
{
    const AVStream *st = s->format->streams[which == 0 ? s->video : s->audio];

    while (ret >= 0 && (ret = avcodec_receive_frame(s->decoder[which], s->frame)) >= 0) {
        s->decoded[which]++;
        if (which == 0 && s->frame->best_effort_timestamp != AV_NOPTS_VALUE)
            s->last_video_end_s = (double)(s->frame->best_effort_timestamp + s->frame->pkt_duration) *
                                  av_q2d(st->time_base);
        av_frame_unref(s->frame);
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

/*
 * Decodes packets from the current position; stops after the first frame of each stream when first_only,
 * else reads to the end remembering where the last video frame ends. A decoder that gave nothing by the
 * end (a one-frame video, fewer frames than frame threads) is drained there: if that is the video's, every
 * video frame has then been decoded, and video_drained says so.
 */
static int decode_run(struct check_state *s, int first_only)
{
    int ret;

    while ((ret = mw_input_read(s->in, s->pkt)) >= 0) {
        int which = s->pkt->stream_index == s->video ? 0 : s->pkt->stream_index == s->audio ? 1 : -1;

        if (which >= 0 && !(first_only && s->decoded[which]))
            ret = receive_frames(s, which, avcodec_send_packet(s->decoder[which], s->pkt));
        av_packet_unref(s->pkt);
        if (ret < 0)
            return ret;
        if (first_only && (s->video < 0 || s->decoded[0]) && (s->audio < 0 || s->decoded[1]))
            return 0;
    }
    if (ret != AVERROR_EOF)
        return ret;
    for (int which = 0; first_only && which < 2; which++) {
        if (!s->decoder[which] || s->decoded[which])
            continue;
        ret = receive_frames(s, which, avcodec_send_packet(s->decoder[which], NULL));
        if (ret < 0)
            return ret;
        avcodec_flush_buffers(s->decoder[which]);
        s->video_drained |= which == 0;
    }
    return 0;
}

static double start_s(const AVStream *st)
{
    return st->start_time == AV_NOPTS_VALUE ? 0 : (double)st->start_time * av_q2d(st->time_base);
}

/*
 * Where the last stream ends as a player presents it (edit lists applied). The MP4 header's overall
 * duration can run past that by the encoder's reorder delay, which no player shows.
 */
static double presented_duration(const struct check_state *s)
{
    int indexes[2] = {s->video, s->audio};
    double end = 0;

    for (int i = 0; i < 2; i++) {
        const AVStream *st = indexes[i] >= 0 ? s->format->streams[indexes[i]] : NULL;
        if (st && st->duration != AV_NOPTS_VALUE) {
            double stream_end = start_s(st) + (double)st->duration * av_q2d(st->time_base);
            end = stream_end > end ? stream_end : end;
        }
    }
    if (end <= 0 && s->format->duration != AV_NOPTS_VALUE)
        end = (double)s->format->duration / AV_TIME_BASE;
    return end;
}

static int check_streams(struct check_state *s, const struct mw_output_expect *expect, char *why, size_t size)
{
    const AVCodecParameters *par;

    if (expect->video != (s->video >= 0) || expect->audio != (s->audio >= 0)) {
        snprintf(why, size, "expected %s video and %s audio", expect->video ? "a" : "no", expect->audio ? "an" : "no");
        return MW_ERR_OUTPUT_CHECK;
    }
    if (s->video >= 0) {
        par = s->format->streams[s->video]->codecpar;
        if (par->color_primaries == AVCOL_PRI_UNSPECIFIED || par->color_trc == AVCOL_TRC_UNSPECIFIED ||
            par->color_space == AVCOL_SPC_UNSPECIFIED || par->color_range == AVCOL_RANGE_UNSPECIFIED) {
            snprintf(why, size, "video has no colour tags");
            return MW_ERR_OUTPUT_CHECK;
        }
    }
    if (s->video >= 0 && s->audio >= 0) {
        double gap = fabs(start_s(s->format->streams[s->video]) - start_s(s->format->streams[s->audio]));
        if (gap > expect->tolerance_s) {
            snprintf(why, size, "audio and video start %.3f s apart", gap);
            return MW_ERR_OUTPUT_CHECK;
        }
    }
    if (expect->duration_s > 0) {
        double duration = presented_duration(s);
        if (fabs(duration - expect->duration_s) > expect->tolerance_s) {
            snprintf(why, size, "duration %.3f s, source %.3f s", duration, expect->duration_s);
            return MW_ERR_OUTPUT_CHECK;
        }
    }
    return 0;
}

static int open_decoders(struct check_state *s, const struct mw_input *in, int threads)
{
    int ret;

    s->video = av_find_best_stream(s->format, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    s->audio = av_find_best_stream(s->format, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    s->video = s->video >= 0 ? s->video : -1;
    s->audio = s->audio >= 0 ? s->audio : -1;
    if (s->video >= 0 && (ret = mw_input_open_decoder(in, s->video, threads, &s->decoder[0])) < 0)
        return ret;
    if (s->audio >= 0 && (ret = mw_input_open_decoder(in, s->audio, 1, &s->decoder[1])) < 0)
        return ret;
    return 0;
}

/* Decodes the last GOP to EOF: seeks a little before the end (MP4), else reads on. */
static int decode_tail(struct check_state *s, const struct mw_output_expect *expect, double end)
{
    const AVStream *st = s->format->streams[s->video];
    /* Just before the end: the backward seek lands on the last keyframe, so only the last GOP is decoded. */
    int64_t target = (int64_t)((end > 0.5 ? end - 0.5 : 0) / av_q2d(st->time_base));
    int ret;

    /* MPEG-TS seeks by bytes and would land mid-GOP; its files here are short segments, read through. */
    if (expect->mp4) {
        ret = av_seek_frame(s->format, s->video, target, AVSEEK_FLAG_BACKWARD);
        if (ret < 0)
            return ret;
        avcodec_flush_buffers(s->decoder[0]);
    }
    s->decoded[0] = 0;
    ret = decode_run(s, 0);
    if (ret < 0)
        return ret;
    /* Frames held back by the decoder (B-frame reordering) come out on the flush. */
    return receive_frames(s, 0, avcodec_send_packet(s->decoder[0], NULL));
}

/* The last frame must decode and reach the video's end (the first pass may already have decoded it all). */
static int check_tail(struct check_state *s, const struct mw_output_expect *expect, char *why, size_t size)
{
    const AVStream *st = s->format->streams[s->video];
    /* The video's own end: a sound track may rightly go on after the last picture. */
    double end = st->duration != AV_NOPTS_VALUE ? (double)(start_s(st) + st->duration * av_q2d(st->time_base))
                 : s->format->duration != AV_NOPTS_VALUE ? (double)s->format->duration / AV_TIME_BASE : 0;
    int ret = s->video_drained ? 0 : decode_tail(s, expect, end);

    if (ret < 0)
        return ret;
    if (!s->decoded[0]) {
        snprintf(why, size, "the last frames do not decode");
        return MW_ERR_OUTPUT_CHECK;
    }
    if (expect->duration_s > 0 && s->last_video_end_s < end - 2 * expect->tolerance_s) {
        snprintf(why, size, "last decodable frame ends at %.3f s of %.3f s", s->last_video_end_s, end);
        return MW_ERR_OUTPUT_CHECK;
    }
    return 0;
}

int mw_output_check_file(const char *path, const struct mw_output_expect *expect, const struct mw_limits *limits,
                         char *why, size_t why_size)
{
    struct check_state s = {.video = -1, .audio = -1};
    struct mw_input *in = NULL;
    int ret;

    why[0] = '\0';
    if (expect->mp4 && (ret = mw_output_check_faststart(path)) <= 0) {
        if (ret == 0) {
            snprintf(why, why_size, "moov atom is not before mdat");
            ret = MW_ERR_OUTPUT_CHECK;
        }
        goto end;
    }
    ret = mw_input_open_file(&in, path, limits, 0);
    if (ret < 0)
        goto end;
    s.in = in;
    s.format = mw_input_format(in);
    if (!(s.pkt = av_packet_alloc()) || !(s.frame = av_frame_alloc())) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    if ((ret = open_decoders(&s, in, expect->threads > 0 ? expect->threads : 1)) < 0 || (ret = check_streams(&s, expect, why, why_size)) < 0)
        goto end;
    ret = decode_run(&s, 1);
    if (ret < 0)
        goto end;
    if ((s.video >= 0 && !s.decoded[0]) || (s.audio >= 0 && !s.decoded[1])) {
        snprintf(why, why_size, "the first %s frame does not decode", s.video >= 0 && !s.decoded[0] ? "video" : "audio");
        ret = MW_ERR_OUTPUT_CHECK;
        goto end;
    }
    if (s.video >= 0)
        ret = check_tail(&s, expect, why, why_size);
end:
    if (ret < 0 && !why[0])
        snprintf(why, why_size, "%s", mw_err2str(ret));
    /* An output that cannot even be read back failed the check; only running out of memory is not its fault. */
    if (ret < 0 && ret != AVERROR(ENOMEM))
        ret = MW_ERR_OUTPUT_CHECK;
    if (ret < 0)
        mw_log(MW_LOG_ERROR, "output_check", "%s failed verification: %s", path, why);
    avcodec_free_context(&s.decoder[0]);
    avcodec_free_context(&s.decoder[1]);
    av_packet_free(&s.pkt);
    av_frame_free(&s.frame);
    mw_input_close(&in);
    return ret;
}
