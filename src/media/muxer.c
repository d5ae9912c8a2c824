/*
 * Writing containers. Every muxer writes to a name the caller chose as temporary; the caller verifies the
 * result and commits it. mp4 is written with the moov atom moved to the front (faststart) so a browser can
 * start playing before the whole file arrived; hls writes a VOD media playlist with MPEG-TS segments cut
 * at the (aligned) keyframes.
 */
#include <stdio.h>
#include <string.h>

#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "transcode_internal.h"

struct mw_muxer {
    AVFormatContext *format;
    AVDictionary *options;
};

static int set_options(struct mw_muxer *m, const char *format, const char *path, int segment_ms)
{
    char value[64];
    char segments[1100];
    const char *slash = strrchr(path, '/');
    int ret;

    if (!strcmp(format, "mp4"))
        return av_dict_set(&m->options, "movflags", "+faststart", 0);
    snprintf(value, sizeof(value), "%.3f", segment_ms / 1000.0);
    if (snprintf(segments, sizeof(segments), "%.*s%s", slash ? (int)(slash - path + 1) : 0, path,
                 "segment_%05d.ts") >= (int)sizeof(segments))
        return AVERROR(ENAMETOOLONG);
    if ((ret = av_dict_set(&m->options, "hls_time", value, 0)) < 0 ||
        (ret = av_dict_set(&m->options, "hls_playlist_type", "vod", 0)) < 0 ||
        (ret = av_dict_set(&m->options, "hls_segment_type", "mpegts", 0)) < 0 ||
        (ret = av_dict_set(&m->options, "hls_list_size", "0", 0)) < 0 ||
        (ret = av_dict_set(&m->options, "hls_flags", "independent_segments", 0)) < 0 ||
        (ret = av_dict_set(&m->options, "hls_segment_filename", segments, 0)) < 0)
        return ret;
    return 0;
}

int mw_muxer_open(struct mw_muxer **out, const char *format, const char *path, int segment_ms)
{
    struct mw_muxer *m = av_mallocz(sizeof(*m));
    int ret;

    *out = NULL;
    if (!m)
        return AVERROR(ENOMEM);
    ret = avformat_alloc_output_context2(&m->format, NULL, format, path);
    if (ret < 0)
        goto fail;
    ret = set_options(m, format, path, segment_ms);
    if (ret < 0)
        goto fail;
    /* The hls muxer opens its playlist and segments itself; the others write to one file we open. */
    if (!(m->format->oformat->flags & AVFMT_NOFILE)) {
        ret = avio_open(&m->format->pb, path, AVIO_FLAG_WRITE);
        if (ret < 0)
            goto fail;
    }
    *out = m;
    return 0;
fail:
    mw_log(MW_LOG_ERROR, "muxer", "cannot create %s output %s: %s", format, path, mw_err2str(ret));
    mw_muxer_free(&m);
    return ret;
}

int mw_muxer_add_stream(struct mw_muxer *m, const AVCodecParameters *par, AVRational tb, int *index)
{
    AVStream *st = avformat_new_stream(m->format, NULL);
    int ret;

    if (!st)
        return AVERROR(ENOMEM);
    ret = avcodec_parameters_copy(st->codecpar, par);
    if (ret < 0)
        return ret;
    st->codecpar->codec_tag = 0;
    st->time_base = tb;
    *index = st->index;
    return 0;
}

int mw_muxer_start(struct mw_muxer *m)
{
    int ret = avformat_write_header(m->format, &m->options);

    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "muxer", "cannot write the header of %s: %s", m->format->url, mw_err2str(ret));
        return ret;
    }
    return 0;
}

int mw_muxer_write(struct mw_muxer *m, int index, AVPacket *pkt, AVRational tb)
{
    AVStream *st = m->format->streams[index];
    int ret;

    pkt->stream_index = index;
    av_packet_rescale_ts(pkt, tb, st->time_base);
    ret = av_interleaved_write_frame(m->format, pkt);
    if (ret < 0)
        mw_log(MW_LOG_ERROR, "muxer", "cannot write a packet to %s: %s", m->format->url, mw_err2str(ret));
    return ret;
}

int mw_muxer_finish(struct mw_muxer *m)
{
    int ret = av_write_trailer(m->format);

    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "muxer", "cannot finish %s: %s", m->format->url, mw_err2str(ret));
        return ret;
    }
    if (m->format->pb && !(m->format->oformat->flags & AVFMT_NOFILE)) {
        ret = avio_closep(&m->format->pb);
        if (ret < 0)
            mw_log(MW_LOG_ERROR, "muxer", "cannot close %s: %s", m->format->url, mw_err2str(ret));
    }
    return ret;
}

void mw_muxer_free(struct mw_muxer **pm)
{
    struct mw_muxer *m = pm ? *pm : NULL;

    if (!m)
        return;
    if (m->format) {
        /* An abandoned muxer needs no trailer: avformat_free_context runs the muxer's deinit. */
        if (!(m->format->oformat->flags & AVFMT_NOFILE))
            avio_closep(&m->format->pb);
        avformat_free_context(m->format);
    }
    av_dict_free(&m->options);
    av_free(m);
    *pm = NULL;
}
