#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/image_header.h"
#include "mediaworker/input.h"
#include "mediaworker/log.h"

/* Demuxer names (as libav spells them) of real media containers and still-image formats. Playlists and
 * indirections (hls, dash, concat, image2 patterns), text formats (tty, subtitles) and devices are absent. */
const char mw_input_format_whitelist[] =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,flv,ogg,wav,w64,aiff,caf,mp3,aac,flac,asf,"
    "m4v,h264,hevc,ivf,obu,mxf,amr,jpeg_pipe,png_pipe,webp_pipe,bmp_pipe,tiff_pipe,gif,apng";

/* Decoder names for the codecs an upload pipeline is expected to meet. */
const char mw_input_codec_whitelist[] =
    "h264,hevc,vp8,vp9,av1,libdav1d,libaom-av1,mpeg4,mpeg2video,mpeg1video,mjpeg,prores,dnxhd,theora,h263,"
    "vc1,wmv1,wmv2,wmv3,msmpeg4,msmpeg4v2,mpegvideo,png,apng,gif,webp,bmp,tiff,"
    "aac,aac_fixed,aac_latm,mp3,mp3float,mp2,mp2float,opus,libopus,vorbis,libvorbis,flac,alac,ac3,ac3_fixed,eac3,"
    "wmav1,wmav2,amrnb,amrwb,pcm_s16le,pcm_s16be,pcm_s24le,pcm_s24be,pcm_s32le,pcm_f32le,pcm_f64le,pcm_u8,"
    "pcm_alaw,pcm_mulaw,mov_text,subrip,webvtt,ass,ssa";

#define IO_BUFFER_SIZE (64 * 1024)
/* A raw stream's pictures are counted this far: about two minutes of 1080p at 8 Mbit/s, read at each open. */
#define RAW_SCAN_BYTES ((int64_t)128 << 20)

struct mw_input {
    AVFormatContext *format;
    AVIOContext *io;
    int fd;                      /* -1 for memory inputs */
    const uint8_t *memory;
    int64_t size;
    int64_t position;            /* memory inputs only */
    int64_t deadline;
    int read_error;              /* the first failed read of the file (AVERROR(errno)), 0 when none */
    int64_t start_us;            /* the timeline's 0 (mw_input_start_us) on the container's clock */
    struct mw_limits limits;
};

int mw_input_deadline_passed(const struct mw_input *in)
{
    return in->deadline > 0 && av_gettime_relative() > in->deadline;
}

/*
 * What a demuxer's failure says about the file. Our arguments are valid and reads of the file fail only
 * where read_error says so; otherwise a demuxer's EINVAL (a seek past the end, a nonsensical field), EIO
 * (matroska on a truncated element) or bare -1 (EPERM: libav's old generic failure) is about the data, and
 * must not be classed as this machine's trouble (EIO would be retried through every tier). at_open: the
 * file ending (EOF) inside its header is about the data too.
 */
static int demuxer_error(const struct mw_input *in, int ret, int at_open)
{
    if (in->read_error < 0)
        return in->read_error;
    if (ret == AVERROR(EINVAL) || ret == AVERROR(EIO) || ret == AVERROR(EPERM) || (at_open && ret == AVERROR_EOF))
        return AVERROR_INVALIDDATA;
    return ret;
}

int mw_input_read(struct mw_input *in, AVPacket *pkt)
{
    int ret = av_read_frame(in->format, pkt);

    if (ret != AVERROR_EOF)
        return ret < 0 && ret != MW_ERR_DEADLINE ? demuxer_error(in, ret, 0) : ret;
    if (mw_input_deadline_passed(in))
        return MW_ERR_DEADLINE;
    return in->io && in->io->error < 0 ? in->io->error : ret;
}

static int interrupt_callback(void *opaque)
{
    return mw_input_deadline_passed(opaque);
}

static int read_packet(void *opaque, uint8_t *buf, int buf_size)
{
    struct mw_input *in = opaque;
    ssize_t got;

    if (mw_input_deadline_passed(in))
        return MW_ERR_DEADLINE;
    if (in->fd < 0) {
        int64_t left = in->size - in->position;
        if (left <= 0)
            return AVERROR_EOF;
        got = left < buf_size ? (ssize_t)left : buf_size;
        memcpy(buf, in->memory + in->position, (size_t)got);
        in->position += got;
        return (int)got;
    }
    /* pread at our own position: inputs opened from one descriptor (dup'd) share no file offset. */
    do {
        got = pread(in->fd, buf, (size_t)buf_size, (off_t)in->position);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (!in->read_error)
            in->read_error = AVERROR(errno);
        return AVERROR(errno);
    }
    in->position += got;
    return got == 0 ? AVERROR_EOF : (int)got;
}

static int64_t seek(void *opaque, int64_t offset, int whence)
{
    struct mw_input *in = opaque;
    int64_t target;

    if (whence == AVSEEK_SIZE)
        return in->size;
    whence &= ~AVSEEK_FORCE;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)
        return AVERROR(EINVAL);
    target = whence == SEEK_SET ? offset : whence == SEEK_CUR ? in->position + offset : in->size + offset;
    /* A file does not change size under a job (uploads are complete when the message is sent). */
    if (target < 0 || target > in->size)
        return AVERROR(EINVAL);
    in->position = target;
    return target;
}

/* Demuxers that open further files (playlists, references) get nothing: one upload is one file. */
static int refuse_nested_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                              AVDictionary **options)
{
    (void)s;
    (void)pb;
    (void)flags;
    (void)options;
    mw_log(MW_LOG_WARN, "input", "refused a nested open of \"%.200s\" requested by the demuxer", url);
    return MW_ERR_FORMAT_REFUSED;
}

static int check_limits(const struct mw_input *in)
{
    const AVFormatContext *fmt = in->format;

    if ((int)fmt->nb_streams > in->limits.max_streams)
        return MW_ERR_TOO_MANY_STREAMS;
    if (fmt->duration != AV_NOPTS_VALUE && fmt->duration / 1000 > in->limits.max_duration_ms)
        return MW_ERR_TOO_LONG;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVStream *st = fmt->streams[i];
        const AVCodecParameters *par = st->codecpar;

        if (par->codec_type == AVMEDIA_TYPE_VIDEO && (int64_t)par->width * par->height > in->limits.max_pixels)
            return MW_ERR_TOO_MANY_PIXELS;
        if (st->duration != AV_NOPTS_VALUE && st->time_base.den &&
            av_rescale_q(st->duration, st->time_base, (AVRational){1, 1000}) > in->limits.max_duration_ms)
            return MW_ERR_TOO_LONG;
    }
    return 0;
}

/* Still images declare their size in the first bytes; a pixel bomb is refused before any decoder runs. */
static int check_image_header(struct mw_input *in)
{
    uint8_t head[64 * 1024];
    int64_t width, height;
    int got;

    got = avio_read_partial(in->io, head, sizeof(head));
    if (got < 0)
        return got == AVERROR_EOF ? AVERROR_INVALIDDATA : got;
    if (avio_seek(in->io, 0, SEEK_SET) < 0)
        return AVERROR(EIO);
    if (mw_image_header_is_unreadable_heif(head, (size_t)got)) {
        mw_log(MW_LOG_INFO, "input", "a HEIF/HEIC image: not a format this worker reads");
        return MW_ERR_FORMAT_REFUSED;
    }
    /* Headers hold 32-bit sizes; dividing keeps the product from overflowing. */
    if (mw_image_header_dimensions(head, (size_t)got, &width, &height) == 0 && width > 0 && height > 0 &&
        width > in->limits.max_pixels / height)
        return MW_ERR_TOO_MANY_PIXELS;
    return 0;
}

/* True for a file without timestamps whose one stream is video: a raw elementary stream (.264, .265, .m4v). */
static int is_raw_video(const AVFormatContext *fmt)
{
    return fmt->duration == AV_NOPTS_VALUE && fmt->nb_streams == 1 &&
           fmt->streams[0]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO && fmt->streams[0]->start_time == AV_NOPTS_VALUE;
}

/*
 * A raw elementary stream states no duration, so posters at a share of it, storyboards and the duration
 * limit would have nothing to go by. Its pictures are counted instead (the parser splits the stream into
 * one packet per picture) at its frame rate, reading at most RAW_SCAN_BYTES; a longer stream keeps an
 * unknown duration. The input is then rewound to its start.
 */
static int find_raw_duration(struct mw_input *in)
{
    AVFormatContext *fmt = in->format;
    AVStream *st;
    AVRational rate;
    AVPacket *pkt;
    int64_t pictures = 0;
    int ret;

    if (!is_raw_video(fmt))
        return 0;
    st = fmt->streams[0];
    rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    if (rate.num <= 0 || rate.den <= 0)
        return 0;
    if (!(pkt = av_packet_alloc()))
        return AVERROR(ENOMEM);
    while ((ret = mw_input_read(in, pkt)) >= 0 && avio_tell(fmt->pb) <= RAW_SCAN_BYTES) {
        pictures++;
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    if (ret != AVERROR_EOF && ret < 0)
        return ret;
    if (ret == AVERROR_EOF && pictures > 0) {
        st->duration = av_rescale_q(pictures, av_inv_q(rate), st->time_base);
        st->nb_frames = pictures;
        fmt->duration = av_rescale_q(pictures, av_inv_q(rate), AV_TIME_BASE_Q);
    }
    ret = av_seek_frame(fmt, -1, 0, AVSEEK_FLAG_BYTE);
    return ret < 0 ? ret : 0;
}

/* Set once the streams are known: the earliest start of the streams a player plays together. */
static void find_start(struct mw_input *in)
{
    int64_t start_us = INT64_MAX;

    for (unsigned i = 0; i < in->format->nb_streams; i++) {
        const AVStream *st = in->format->streams[i];
        enum AVMediaType type = st->codecpar->codec_type;
        int64_t us;
        if ((type != AVMEDIA_TYPE_VIDEO && type != AVMEDIA_TYPE_AUDIO) ||
            (st->disposition & AV_DISPOSITION_ATTACHED_PIC) || st->start_time == AV_NOPTS_VALUE)
            continue;
        us = av_rescale_q(st->start_time, st->time_base, AV_TIME_BASE_Q);
        start_us = us < start_us ? us : start_us;
    }
    if (start_us == INT64_MAX)
        start_us = in->format->start_time != AV_NOPTS_VALUE ? in->format->start_time : 0;
    in->start_us = start_us;
}

int64_t mw_input_start_us(const struct mw_input *in)
{
    return in->start_us;
}

int64_t mw_input_time_us(const struct mw_input *in, int stream_index, int64_t ts)
{
    if (ts == AV_NOPTS_VALUE)
        return 0;
    return av_rescale_q(ts, in->format->streams[stream_index]->time_base, AV_TIME_BASE_Q) - in->start_us;
}

int64_t mw_input_stream_ts(const struct mw_input *in, int stream_index, int64_t time_us)
{
    return av_rescale_q_rnd(time_us + in->start_us, AV_TIME_BASE_Q, in->format->streams[stream_index]->time_base,
                            AV_ROUND_DOWN | AV_ROUND_PASS_MINMAX);
}

static int open_common(struct mw_input *in)
{
    const AVInputFormat *detected = NULL;
    AVDictionary *format_options = NULL;
    AVDictionary **stream_options = NULL;
    unsigned char *io_buffer = NULL;
    unsigned stream_count = 0;
    int ret;

    io_buffer = av_malloc(IO_BUFFER_SIZE);
    if (!io_buffer)
        return AVERROR(ENOMEM);
    in->io = avio_alloc_context(io_buffer, IO_BUFFER_SIZE, 0, in, read_packet, NULL, seek);
    if (!in->io) {
        av_free(io_buffer);
        return AVERROR(ENOMEM);
    }
    in->format = avformat_alloc_context();
    if (!in->format)
        return AVERROR(ENOMEM);
    in->format->pb = in->io;
    in->format->flags |= AVFMT_FLAG_CUSTOM_IO;
    in->format->interrupt_callback = (AVIOInterruptCB){interrupt_callback, in};
    in->format->io_open = refuse_nested_open;
    in->format->probesize = in->limits.probesize;
    in->format->max_analyze_duration = in->limits.analyzeduration_ms * 1000;
    /* libav's own cap stays the hard stop; ours is checked after the header, so that a file with too many
     * streams is reported as such rather than as the allocation failure libav gives at its cap. */
    in->format->max_streams = FFMAX(1000, in->limits.max_streams + 1);

    if ((ret = av_dict_set(&format_options, "protocol_whitelist", "file", 0)) < 0 ||
        (ret = av_dict_set(&format_options, "format_whitelist", mw_input_format_whitelist, 0)) < 0 ||
        (ret = av_dict_set(&format_options, "codec_whitelist", mw_input_codec_whitelist, 0)) < 0)
        goto end;
    ret = check_image_header(in);
    if (ret < 0)
        goto end;
    /* Probing ourselves lets a refused container be reported as such instead of as libav's EINVAL. */
    ret = av_probe_input_buffer2(in->io, &detected, NULL, NULL, 0, (unsigned)in->limits.probesize);
    if (ret < 0) {
        ret = demuxer_error(in, ret, 1);
        goto end;
    }
    if (!av_match_list(detected->name, mw_input_format_whitelist, ',')) {
        mw_log(MW_LOG_DEBUG, "input", "container \"%s\" is not on the allowed list", detected->name);
        ret = MW_ERR_FORMAT_REFUSED;
        goto end;
    }
    ret = avformat_open_input(&in->format, NULL, detected, &format_options);
    if (ret < 0) {
        /* avformat_open_input frees the context on failure; the custom IO stays ours to free. */
        in->format = NULL;
        ret = demuxer_error(in, ret, 1);
        goto end;
    }
    if ((int)in->format->nb_streams > in->limits.max_streams) {
        ret = MW_ERR_TOO_MANY_STREAMS;
        goto end;
    }
    stream_count = in->format->nb_streams;
    stream_options = av_calloc(stream_count ? stream_count : 1, sizeof(*stream_options));
    if (!stream_options) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    for (unsigned i = 0; i < stream_count; i++) {
        char max_pixels[32];
        snprintf(max_pixels, sizeof(max_pixels), "%lld", (long long)in->limits.max_pixels);
        /* The frames decoded while probing are thrown away, so the deblocking filter is wasted work. */
        if ((ret = av_dict_set(&stream_options[i], "max_pixels", max_pixels, 0)) < 0 ||
            (ret = av_dict_set(&stream_options[i], "threads", "1", 0)) < 0 ||
            (ret = av_dict_set(&stream_options[i], "skip_loop_filter", "all", 0)) < 0)
            goto end;
    }
    ret = avformat_find_stream_info(in->format, stream_options);
    if (ret < 0) {
        ret = demuxer_error(in, ret, 1);
        goto end;
    }
    if (mw_input_deadline_passed(in)) {
        ret = MW_ERR_DEADLINE;
        goto end;
    }
    if ((ret = find_raw_duration(in)) < 0)
        goto end;
    find_start(in);
    ret = check_limits(in);
end:
    av_dict_free(&format_options);
    for (unsigned i = 0; i < stream_count; i++)
        av_dict_free(&stream_options[i]);
    av_free(stream_options);
    return ret;
}

static int finish_open(struct mw_input **out, struct mw_input *in)
{
    int ret = open_common(in);

    if (ret < 0) {
        mw_input_close(&in);
        return ret;
    }
    *out = in;
    return 0;
}

static struct mw_input *input_alloc(const struct mw_limits *limits, int64_t deadline)
{
    struct mw_input *in = av_mallocz(sizeof(*in));

    if (!in)
        return NULL;
    in->fd = -1;
    in->limits = *limits;
    in->deadline = deadline;
    return in;
}

/* Takes in->fd (open, possibly O_NONBLOCK) through the file checks and the container open. */
static int open_descriptor(struct mw_input **out, struct mw_input *in)
{
    struct stat st;
    int ret;

    if (fstat(in->fd, &st) < 0) {
        ret = AVERROR(errno);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = MW_ERR_NOT_REGULAR_FILE;
        goto fail;
    }
    if (st.st_size > in->limits.max_input_bytes) {
        ret = MW_ERR_INPUT_TOO_LARGE;
        goto fail;
    }
    if (st.st_size == 0) {
        ret = AVERROR_INVALIDDATA;
        goto fail;
    }
    /* O_NONBLOCK only guarded the open against FIFOs; regular files ignore it, but clear it anyway. */
    if (fcntl(in->fd, F_SETFL, 0) < 0) {
        ret = AVERROR(errno);
        goto fail;
    }
    in->size = st.st_size;
    return finish_open(out, in);
fail:
    mw_input_close(&in);
    return ret;
}

int mw_input_open_file(struct mw_input **out, const char *path, const struct mw_limits *limits, int64_t deadline)
{
    struct mw_input *in;
    int ret;

    *out = NULL;
    in = input_alloc(limits, deadline);
    if (!in)
        return AVERROR(ENOMEM);
    in->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (in->fd < 0) {
        ret = errno == ELOOP ? MW_ERR_PATH_REFUSED : AVERROR(errno);
        mw_input_close(&in);
        return ret;
    }
    return open_descriptor(out, in);
}

int mw_input_open_fd(struct mw_input **out, int fd, const struct mw_limits *limits, int64_t deadline)
{
    struct mw_input *in;
    int ret;

    *out = NULL;
    in = input_alloc(limits, deadline);
    if (!in)
        return AVERROR(ENOMEM);
    in->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (in->fd < 0) {
        ret = AVERROR(errno);
        mw_input_close(&in);
        return ret;
    }
    return open_descriptor(out, in);
}

int mw_input_open_memory(struct mw_input **out, const uint8_t *data, size_t size, const struct mw_limits *limits,
                         int64_t deadline)
{
    struct mw_input *in;

    *out = NULL;
    if ((int64_t)size > limits->max_input_bytes)
        return MW_ERR_INPUT_TOO_LARGE;
    if (size == 0)
        return AVERROR_INVALIDDATA;
    in = input_alloc(limits, deadline);
    if (!in)
        return AVERROR(ENOMEM);
    in->memory = data;
    in->size = (int64_t)size;
    return finish_open(out, in);
}

AVFormatContext *mw_input_format(const struct mw_input *in)
{
    return in->format;
}

int64_t mw_input_size(const struct mw_input *in)
{
    return in->size;
}

/* Picks the device's format when libavcodec offers it (the device accepted this stream), else software. */
static enum AVPixelFormat pick_device_format(AVCodecContext *ctx, const enum AVPixelFormat *offered)
{
    const AVHWDeviceContext *device = (const AVHWDeviceContext *)(const void *)ctx->hw_device_ctx->data;
    enum AVPixelFormat wanted = mw_hwaccel_pix_fmt(device->type);

    for (const enum AVPixelFormat *fmt = offered; *fmt != AV_PIX_FMT_NONE; fmt++)
        if (*fmt == wanted)
            return wanted;
    return avcodec_default_get_format(ctx, offered);
}

static int codec_supports_device(const AVCodec *codec, enum AVHWDeviceType type)
{
    for (int i = 0;; i++) {
        const AVCodecHWConfig *config = avcodec_get_hw_config(codec, i);
        if (!config)
            return 0;
        if ((config->methods & AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX) && config->device_type == type)
            return 1;
    }
}

int mw_input_check_decoder(const struct mw_input *in, int stream_index)
{
    const AVCodec *codec;

    if (stream_index < 0 || (unsigned)stream_index >= in->format->nb_streams)
        return AVERROR_STREAM_NOT_FOUND;
    codec = avcodec_find_decoder(in->format->streams[stream_index]->codecpar->codec_id);
    if (!codec)
        return AVERROR_DECODER_NOT_FOUND;
    return av_match_list(codec->name, mw_input_codec_whitelist, ',') ? 0 : MW_ERR_CODEC_REFUSED;
}

int mw_input_open_decoder_hw(const struct mw_input *in, int stream_index, int threads, AVBufferRef *hw_device,
                             AVCodecContext **out, int *on_device)
{
    const AVStream *st;
    const AVCodec *codec;
    AVCodecContext *ctx = NULL;
    int ret;

    *out = NULL;
    if (on_device)
        *on_device = 0;
    if ((ret = mw_input_check_decoder(in, stream_index)) < 0)
        return ret;
    st = in->format->streams[stream_index];
    codec = avcodec_find_decoder(st->codecpar->codec_id);
    ctx = avcodec_alloc_context3(codec);
    if (!ctx)
        return AVERROR(ENOMEM);
    ret = avcodec_parameters_to_context(ctx, st->codecpar);
    if (ret < 0)
        goto fail;
    ctx->pkt_timebase = st->time_base;
    ctx->max_pixels = in->limits.max_pixels;
    ctx->thread_count = threads > 0 ? threads : 1;
    if (hw_device && codec->type == AVMEDIA_TYPE_VIDEO &&
        codec_supports_device(codec, ((const AVHWDeviceContext *)(const void *)hw_device->data)->type)) {
        ctx->hw_device_ctx = av_buffer_ref(hw_device);
        if (!ctx->hw_device_ctx) {
            ret = AVERROR(ENOMEM);
            goto fail;
        }
        ctx->get_format = pick_device_format;
    }
    ret = avcodec_open2(ctx, codec, NULL);
    if (ret < 0)
        goto fail;
    if (on_device)
        *on_device = ctx->hw_device_ctx != NULL;
    *out = ctx;
    return 0;
fail:
    avcodec_free_context(&ctx);
    return ret;
}

int mw_input_open_decoder(const struct mw_input *in, int stream_index, int threads, AVCodecContext **out)
{
    return mw_input_open_decoder_hw(in, stream_index, threads, NULL, out, NULL);
}

void mw_input_close(struct mw_input **pin)
{
    struct mw_input *in = pin ? *pin : NULL;

    if (!in)
        return;
    avformat_close_input(&in->format);
    if (in->io)
        av_freep(&in->io->buffer);
    avio_context_free(&in->io);
    if (in->fd >= 0)
        close(in->fd);
    av_free(in);
    *pin = NULL;
}

void mw_input_prewarm_decoders(void)
{
    static const enum AVCodecID common[] = {
        AV_CODEC_ID_H264, AV_CODEC_ID_HEVC, AV_CODEC_ID_VP9,  AV_CODEC_ID_VP8,  AV_CODEC_ID_MPEG4,
        AV_CODEC_ID_MPEG2VIDEO, AV_CODEC_ID_MJPEG, AV_CODEC_ID_PNG, AV_CODEC_ID_AAC, AV_CODEC_ID_MP3,
        AV_CODEC_ID_OPUS, AV_CODEC_ID_AC3, AV_CODEC_ID_EAC3, AV_CODEC_ID_FLAC, AV_CODEC_ID_VORBIS,
    };

    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
        const AVCodec *codec = avcodec_find_decoder(common[i]);
        AVCodecContext *ctx = codec ? avcodec_alloc_context3(codec) : NULL;
        AVDictionary *options = NULL;
        int ret = !codec ? AVERROR_DECODER_NOT_FOUND : !ctx ? AVERROR(ENOMEM) : 0;

        if (ret >= 0)
            ret = av_dict_set(&options, "threads", "1", 0);
        if (ret >= 0)
            ret = avcodec_open2(ctx, codec, &options);
        if (ret < 0)
            mw_log(MW_LOG_DEBUG, "input", "decoder for %s not prewarmed: %s", avcodec_get_name(common[i]),
                   mw_err2str(ret));
        av_dict_free(&options);
        avcodec_free_context(&ctx);
    }
}
