#include <math.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/waveform.h"

#define BUCKETS_PER_SECOND 100
#define MAX_BUCKETS (1 << 20)

struct envelope {
    float *peak, *rms;
    int count, allocated;
    int samples_per_bucket;
    int filled;                  /* samples in the current (last) bucket */
    double square_sum;           /* of the current bucket */
};

static const uint8_t background[3] = {0x1c, 0x1f, 0x26};
static const uint8_t peak_colour[3] = {0x3d, 0x7e, 0xd6};
static const uint8_t rms_colour[3] = {0x9c, 0xc8, 0xff};

void mw_waveform_draw(const float *peak, const float *rms, int count, AVFrame *rgb)
{
    float loudest = 0;
    int middle = rgb->height / 2;

    for (int i = 0; i < count; i++)
        loudest = peak[i] > loudest ? peak[i] : loudest;
    for (int y = 0; y < rgb->height; y++)
        for (int x = 0; x < rgb->width; x++)
            memcpy(rgb->data[0] + (ptrdiff_t)y * rgb->linesize[0] + 3 * x, background, 3);
    for (int x = 0; x < rgb->width && count > 0; x++) {
        int first = (int)((int64_t)x * count / rgb->width);
        int last = (int)((int64_t)(x + 1) * count / rgb->width);
        float p = 0, r = 0;
        int p_half, r_half;

        if (last <= first)
            last = first + 1;
        for (int i = first; i < last && i < count; i++) {
            p = peak[i] > p ? peak[i] : p;
            r = rms[i] > r ? rms[i] : r;
        }
        /* Normalised to the loudest point, so a quiet recording still shows its shape. */
        if (loudest > 0) {
            p /= loudest;
            r /= loudest;
        }
        p_half = (int)(p * 0.95f * (float)(middle - 1));
        r_half = (int)(r * 0.95f * (float)(middle - 1));
        for (int y = middle - p_half; y <= middle + p_half && y < rgb->height; y++) {
            const uint8_t *colour = y >= middle - r_half && y <= middle + r_half ? rms_colour : peak_colour;
            memcpy(rgb->data[0] + (ptrdiff_t)y * rgb->linesize[0] + 3 * x, colour, 3);
        }
    }
}

static float sample_at(const AVFrame *frame, int channel, int index, int channels)
{
    enum AVSampleFormat packed = av_get_packed_sample_fmt(frame->format);
    int planar = av_sample_fmt_is_planar(frame->format);
    const uint8_t *base = frame->extended_data[planar ? channel : 0];
    int i = planar ? index : index * channels + channel;

    switch (packed) {
    case AV_SAMPLE_FMT_U8:  return (float)(base[i] - 128) / 128.0f;
    case AV_SAMPLE_FMT_S16: return (float)((const int16_t *)base)[i] / 32768.0f;
    case AV_SAMPLE_FMT_S32: return (float)((const int32_t *)base)[i] / 2147483648.0f;
    case AV_SAMPLE_FMT_S64: return (float)((double)((const int64_t *)base)[i] / 9223372036854775808.0);
    case AV_SAMPLE_FMT_FLT: return ((const float *)base)[i];
    case AV_SAMPLE_FMT_DBL: return (float)((const double *)base)[i];
    default:                return 0;
    }
}

/* Halves the resolution in place: each pair of buckets becomes one. */
static void merge_pairs(struct envelope *e)
{
    int half = e->count / 2;

    for (int i = 0; i < half; i++) {
        e->peak[i] = fmaxf(e->peak[2 * i], e->peak[2 * i + 1]);
        e->rms[i] = sqrtf((e->rms[2 * i] * e->rms[2 * i] + e->rms[2 * i + 1] * e->rms[2 * i + 1]) / 2);
    }
    e->count = half;
    e->samples_per_bucket *= 2;
    e->filled = 0;
    e->square_sum = 0;
}

static int add_sample(struct envelope *e, float value)
{
    float level = fabsf(value);

    if (e->filled == 0) {
        if (e->count == MAX_BUCKETS)
            merge_pairs(e);
        if (e->count == e->allocated) {
            int size = e->allocated ? e->allocated * 2 : 4096;
            float *peak = av_realloc_array(e->peak, (size_t)size, sizeof(*peak));
            float *rms;
            if (!peak)
                return AVERROR(ENOMEM);
            e->peak = peak;
            rms = av_realloc_array(e->rms, (size_t)size, sizeof(*rms));
            if (!rms)
                return AVERROR(ENOMEM);
            e->rms = rms;
            e->allocated = size;
        }
        e->peak[e->count] = 0;
        e->rms[e->count] = 0;
        e->count++;
    }
    if (level > e->peak[e->count - 1])
        e->peak[e->count - 1] = level;
    e->square_sum += (double)value * value;
    e->filled++;
    e->rms[e->count - 1] = (float)sqrt(e->square_sum / e->filled);
    if (e->filled == e->samples_per_bucket) {
        e->filled = 0;
        e->square_sum = 0;
    }
    return 0;
}

static int add_frame(struct envelope *e, const AVFrame *frame)
{
    int channels = frame->ch_layout.nb_channels;

    for (int i = 0; i < frame->nb_samples; i++) {
        float loudest = 0;
        /* One value per instant: the channel furthest from silence keeps its sign. */
        for (int c = 0; c < channels; c++) {
            float v = sample_at(frame, c, i, channels);
            if (fabsf(v) > fabsf(loudest))
                loudest = v;
        }
        int ret = add_sample(e, loudest);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int receive_all(AVCodecContext *dec, AVFrame *frame, struct envelope *e)
{
    int ret;

    while ((ret = avcodec_receive_frame(dec, frame)) >= 0) {
        ret = add_frame(e, frame);
        av_frame_unref(frame);
        if (ret < 0)
            return ret;
    }
    return ret == AVERROR(EAGAIN) || ret == AVERROR_EOF ? 0 : ret;
}

static int decode_envelope(struct mw_input *in, int stream_index, AVCodecContext *dec, struct envelope *e)
{
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    int ret;

    if (!pkt || !frame) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    for (;;) {
        if (mw_input_deadline_passed(in)) {
            ret = MW_ERR_DEADLINE;
            goto end;
        }
        ret = mw_input_read(in, pkt);
        if (ret == AVERROR_EOF)
            break;
        if (ret < 0)
            goto end;
        if (pkt->stream_index == stream_index) {
            ret = avcodec_send_packet(dec, pkt);
            /* A damaged packet costs a few milliseconds of envelope, not the picture. */
            if (ret >= 0 || ret == AVERROR_INVALIDDATA)
                ret = receive_all(dec, frame, e);
            if (ret < 0 && ret != AVERROR_INVALIDDATA)
                goto end;
        }
        av_packet_unref(pkt);
    }
    ret = avcodec_send_packet(dec, NULL);
    if (ret >= 0)
        ret = receive_all(dec, frame, e);
end:
    av_packet_free(&pkt);
    av_frame_free(&frame);
    return ret;
}

int mw_waveform_render(struct mw_input *in, int stream_index, int width, int height, AVFrame **out)
{
    struct envelope e = {0};
    AVCodecContext *dec = NULL;
    AVFrame *rgb = NULL;
    int ret;

    *out = NULL;
    ret = mw_input_open_decoder(in, stream_index, 1, &dec);
    if (ret < 0)
        goto end;
    e.samples_per_bucket = dec->sample_rate > BUCKETS_PER_SECOND ? dec->sample_rate / BUCKETS_PER_SECOND : 1;
    ret = decode_envelope(in, stream_index, dec, &e);
    if (ret < 0)
        goto end;
    if (e.count == 0) {
        ret = MW_ERR_NO_PICTURE;
        goto end;
    }
    rgb = av_frame_alloc();
    if (!rgb) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    rgb->format = AV_PIX_FMT_RGB24;
    rgb->width = width;
    rgb->height = height;
    ret = av_frame_get_buffer(rgb, 0);
    if (ret < 0)
        goto end;
    mw_waveform_draw(e.peak, e.rms, e.count, rgb);
    rgb->sample_aspect_ratio = (AVRational){1, 1};
    *out = rgb;
    rgb = NULL;
end:
    av_frame_free(&rgb);
    avcodec_free_context(&dec);
    av_free(e.peak);
    av_free(e.rms);
    return ret;
}
