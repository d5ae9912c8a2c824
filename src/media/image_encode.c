#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "mediaworker/error.h"
#include "mediaworker/image_encode.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"

int mw_image_format_parse(const char *text, enum mw_image_format *format)
{
    if (!strcmp(text, "jpeg") || !strcmp(text, "jpg"))
        *format = MW_IMAGE_JPEG;
    else if (!strcmp(text, "png"))
        *format = MW_IMAGE_PNG;
    else if (!strcmp(text, "webp"))
        *format = MW_IMAGE_WEBP;
    else
        return AVERROR(EINVAL);
    return 0;
}

const char *mw_image_format_name(enum mw_image_format format)
{
    return format == MW_IMAGE_PNG ? "png" : format == MW_IMAGE_WEBP ? "webp" : "jpeg";
}

const char *mw_image_format_extension(enum mw_image_format format)
{
    return format == MW_IMAGE_PNG ? "png" : format == MW_IMAGE_WEBP ? "webp" : "jpg";
}

int mw_image_format_has_alpha(enum mw_image_format format)
{
    return format == MW_IMAGE_PNG || format == MW_IMAGE_WEBP;
}

int mw_image_format_wants_even(enum mw_image_format format)
{
    return format == MW_IMAGE_JPEG || format == MW_IMAGE_WEBP;
}

/* The pixel format the encoder is fed: JFIF 4:2:0 for JPEG, BGRA for libwebp, the picture's own for PNG. */
static enum AVPixelFormat encoder_format(enum mw_image_format format, enum AVPixelFormat picture_format)
{
    switch (format) {
    case MW_IMAGE_JPEG: return AV_PIX_FMT_YUVJ420P;
    case MW_IMAGE_WEBP: return AV_PIX_FMT_BGRA;
    default:            return picture_format;
    }
}

static int convert(const AVFrame *src, enum AVPixelFormat format, AVFrame **out)
{
    struct SwsContext *sws = NULL;
    AVFrame *dst = av_frame_alloc();
    int ret;

    *out = NULL;
    if (!dst)
        return AVERROR(ENOMEM);
    dst->format = format;
    dst->width = src->width;
    dst->height = src->height;
    ret = av_frame_get_buffer(dst, 0);
    if (ret < 0)
        goto end;
    /* JFIF is full-range BT.601 4:2:0. swscale is asked for yuv420p with a full-range destination, which
     * is the same memory layout as the yuvj420p the encoder takes, without the deprecated-format warning. */
    sws = sws_getContext(src->width, src->height, src->format, dst->width, dst->height,
                         format == AV_PIX_FMT_YUVJ420P ? AV_PIX_FMT_YUV420P : format,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (!sws) {
        ret = AVERROR(EINVAL);
        goto end;
    }
    if (format == AV_PIX_FMT_YUVJ420P &&
        sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_ITU601), 1, sws_getCoefficients(SWS_CS_ITU601), 1,
                                 0, 1 << 16, 1 << 16) < 0) {
        ret = AVERROR(EINVAL);
        goto end;
    }
    if (sws_scale(sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height, dst->data,
                  dst->linesize) <= 0) {
        ret = AVERROR_EXTERNAL;
        goto end;
    }
    dst->color_range = format == AV_PIX_FMT_YUVJ420P ? AVCOL_RANGE_JPEG : AVCOL_RANGE_UNSPECIFIED;
    *out = dst;
    dst = NULL;
end:
    sws_freeContext(sws);
    av_frame_free(&dst);
    return ret;
}

static int configure(AVCodecContext *ctx, enum mw_image_format format, int quality, const AVFrame *input)
{
    ctx->width = input->width;
    ctx->height = input->height;
    ctx->pix_fmt = input->format;
    ctx->time_base = (AVRational){1, 25};
    ctx->sample_aspect_ratio = (AVRational){1, 1};
    if (quality < 1 || quality > 100)
        quality = MW_IMAGE_DEFAULT_QUALITY;
    if (format == MW_IMAGE_JPEG) {
        /* JPEG's qscale runs 2 (best) .. 31; quality 100 -> 2, 1 -> 31. */
        int qscale = 2 + (100 - quality) * 29 / 99;
        ctx->color_range = AVCOL_RANGE_JPEG;
        ctx->flags |= AV_CODEC_FLAG_QSCALE;
        ctx->global_quality = FF_QP2LAMBDA * qscale;
        return av_opt_set(ctx->priv_data, "huffman", "optimal", 0);
    }
    if (format == MW_IMAGE_WEBP)
        return av_opt_set_double(ctx->priv_data, "quality", quality, 0);
    return 0;
}

/*
 * The contract says outputs are checked before success is reported: the encoded image is decoded again
 * (cheap at thumbnail sizes) and must come back at the size it was made.
 */
static int verify_packet(const AVPacket *pkt, enum mw_image_format format, int width, int height)
{
    static const enum AVCodecID decoder_ids[] = {AV_CODEC_ID_MJPEG, AV_CODEC_ID_PNG, AV_CODEC_ID_WEBP};
    const AVCodec *codec = avcodec_find_decoder(decoder_ids[format]);
    AVCodecContext *ctx = NULL;
    AVFrame *frame = NULL;
    int ret;

    if (!codec)
        return AVERROR_DECODER_NOT_FOUND;
    ctx = avcodec_alloc_context3(codec);
    frame = av_frame_alloc();
    if (!ctx || !frame) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ctx->thread_count = 1;
    ret = avcodec_open2(ctx, codec, NULL);
    if (ret >= 0)
        ret = avcodec_send_packet(ctx, pkt);
    if (ret >= 0)
        ret = avcodec_send_packet(ctx, NULL);
    if (ret >= 0)
        ret = avcodec_receive_frame(ctx, frame);
    if (ret >= 0 && (frame->width != width || frame->height != height))
        ret = MW_ERR_OUTPUT_CHECK;
    if (ret < 0 && ret != AVERROR(ENOMEM))
        ret = MW_ERR_OUTPUT_CHECK;
end:
    av_frame_free(&frame);
    avcodec_free_context(&ctx);
    return ret;
}

int mw_image_encode_file(const AVFrame *picture, enum mw_image_format format, int quality, const char *path,
                         int64_t *bytes)
{
    static const char *const encoder_names[] = {"mjpeg", "png", "libwebp"};
    const AVCodec *codec = avcodec_find_encoder_by_name(encoder_names[format]);
    AVCodecContext *ctx = NULL;
    AVFrame *converted = NULL;
    const AVFrame *input = picture;
    AVPacket *pkt = NULL;
    enum AVPixelFormat wanted = encoder_format(format, picture->format);
    int ret;

    if (!codec) {
        mw_log(MW_LOG_ERROR, "image", "encoder %s is not available in this libavcodec", encoder_names[format]);
        return AVERROR_ENCODER_NOT_FOUND;
    }
    if (wanted != picture->format) {
        ret = convert(picture, wanted, &converted);
        if (ret < 0)
            goto end;
        input = converted;
    }
    ctx = avcodec_alloc_context3(codec);
    pkt = av_packet_alloc();
    if (!ctx || !pkt) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = configure(ctx, format, quality, input);
    if (ret < 0)
        goto end;
    ret = avcodec_open2(ctx, codec, NULL);
    if (ret < 0)
        goto end;
    if (converted)
        converted->quality = ctx->global_quality;
    ret = avcodec_send_frame(ctx, input);
    if (ret < 0)
        goto end;
    ret = avcodec_send_frame(ctx, NULL);
    if (ret < 0)
        goto end;
    /* Still-image encoders give exactly one packet; anything after it would be a second image. */
    ret = avcodec_receive_packet(ctx, pkt);
    if (ret < 0)
        goto end;
    ret = verify_packet(pkt, format, picture->width, picture->height);
    if (ret < 0)
        goto end;
    ret = mw_path_write_atomic(path, pkt->data, (size_t)pkt->size);
    if (ret < 0)
        goto end;
    if (bytes)
        *bytes = pkt->size;
end:
    if (ret < 0)
        mw_log(MW_LOG_DEBUG, "image", "encoding %s to %s failed: %s", mw_image_format_name(format), path,
               mw_err2str(ret));
    av_packet_free(&pkt);
    avcodec_free_context(&ctx);
    av_frame_free(&converted);
    return ret;
}
