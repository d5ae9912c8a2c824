#include <math.h>
#include <stdint.h>
#include <string.h>

#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "mediaworker/error.h"
#include "mediaworker/picture.h"
#include "mediaworker/tonemap.h"

/* Largest output side; a poster or tile beyond this is a mistake, not a request. */
#define MAX_SIDE 8192

static int round_side(double value, int even)
{
    long side = even ? 2 * lround(value / 2) : lround(value);

    if (side < (even ? 2 : 1))
        side = even ? 2 : 1;
    return side > MAX_SIDE ? MAX_SIDE : (int)side;
}

int mw_picture_fit(int display_width, int display_height, const struct mw_size_request *req,
                   struct mw_fit_result *out)
{
    double dw = display_width, dh = display_height;
    double scale;

    if (display_width <= 0 || display_height <= 0)
        return AVERROR(EINVAL);
    memset(out, 0, sizeof(*out));
    if (req->width > 0 && req->height > 0 && req->fit == MW_FIT_COVER) {
        double box_w = req->width, box_h = req->height;

        scale = fmax(box_w / dw, box_h / dh);
        if (scale > 1 && !req->upscale) {
            /* Too small to cover the box: keep the box's shape, as large as the picture allows. */
            double shrink = fmin(dw / box_w, dh / box_h);
            box_w *= shrink;
            box_h *= shrink;
            scale = 1;
        }
        out->width = round_side(box_w, req->even);
        out->height = round_side(box_h, req->even);
        out->scaled_width = round_side(dw * scale, req->even);
        out->scaled_height = round_side(dh * scale, req->even);
        if (out->scaled_width < out->width)
            out->scaled_width = out->width;
        if (out->scaled_height < out->height)
            out->scaled_height = out->height;
        out->crop_x = (out->scaled_width - out->width) / 2;
        out->crop_y = (out->scaled_height - out->height) / 2;
        return 0;
    }
    if (req->width > 0 && req->height > 0)
        scale = fmin(req->width / dw, req->height / dh);
    else if (req->width > 0)
        scale = req->width / dw;
    else if (req->height > 0)
        scale = req->height / dh;
    else
        scale = 1;
    if (scale > 1 && !req->upscale)
        scale = 1;
    out->width = out->scaled_width = round_side(dw * scale, req->even);
    out->height = out->scaled_height = round_side(dh * scale, req->even);
    return 0;
}

struct mw_orientation mw_picture_exif_orientation(int exif_value)
{
    /* EXIF 2.3 table: 2 mirror, 3 rotate 180, 4 mirror vertically (= mirror + 180), 5 transpose
     * (= mirror + 270), 6 rotate 90 cw, 7 transverse (= mirror + 90), 8 rotate 270 cw. */
    switch (exif_value) {
    case 2: return (struct mw_orientation){0, 1};
    case 3: return (struct mw_orientation){180, 0};
    case 4: return (struct mw_orientation){180, 1};
    case 5: return (struct mw_orientation){270, 1};
    case 6: return (struct mw_orientation){90, 0};
    case 7: return (struct mw_orientation){90, 1};
    case 8: return (struct mw_orientation){270, 0};
    default: return (struct mw_orientation){0, 0};
    }
}

void mw_picture_display_size(int width, int height, AVRational sar, const struct mw_orientation *o,
                             int *display_width, int *display_height)
{
    int w = width, h = height;

    /* Square pixels by widening (or narrowing) the picture, never by changing its height, as players do. */
    if (sar.num > 0 && sar.den > 0 && sar.num != sar.den)
        w = (int)lrint((double)width * sar.num / sar.den);
    if (w < 1)
        w = 1;
    if (o && (o->rotation == 90 || o->rotation == 270)) {
        *display_width = h;
        *display_height = w;
    } else {
        *display_width = w;
        *display_height = h;
    }
}

static int sws_colorspace(enum AVColorSpace space, int height)
{
    switch (space) {
    case AVCOL_SPC_BT709:      return SWS_CS_ITU709;
    case AVCOL_SPC_FCC:        return SWS_CS_FCC;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M:  return SWS_CS_ITU601;
    case AVCOL_SPC_SMPTE240M:  return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:  return SWS_CS_BT2020;
    default:
        /* Untagged: the convention players follow, BT.601 for SD and BT.709 for HD. */
        return height >= 720 ? SWS_CS_ITU709 : SWS_CS_ITU601;
    }
}

int mw_picture_is_full_range(const AVFrame *frame)
{
    switch (frame->format) {
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUVJ411P:
        return 1;
    default:
        return frame->color_range == AVCOL_RANGE_JPEG;
    }
}

static int has_alpha(enum AVPixelFormat format)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(format);

    return desc && (desc->flags & AV_PIX_FMT_FLAG_ALPHA);
}

static int is_yuv(enum AVPixelFormat format)
{
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(format);

    return desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
}

static AVFrame *frame_new(enum AVPixelFormat format, int width, int height)
{
    AVFrame *frame = av_frame_alloc();

    if (!frame)
        return NULL;
    frame->format = format;
    frame->width = width;
    frame->height = height;
    if (av_frame_get_buffer(frame, 0) < 0)
        av_frame_free(&frame);
    return frame;
}

/*
 * Scales frame into dst (allocated, any size and RGB/grey format) with the frame's colour matrix and range.
 * An interlaced frame is read as its top field only: half the lines, twice the stride.
 */
static int scale_into(const AVFrame *frame, AVFrame *dst)
{
    const uint8_t *planes[4] = {NULL};
    int strides[4] = {0};
    int field = frame->interlaced_frame && frame->height >= 4;
    int height = field ? frame->height / 2 : frame->height;
    /* Shrinking by half or more is what thumbnails do: an area average is the right filter there and
     * costs half of bicubic's; enlarging or slight shrinking keeps bicubic with full chroma. */
    int flags = frame->width >= 2 * dst->width && height >= 2 * dst->height
                    ? SWS_AREA | SWS_ACCURATE_RND
                    : SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT;
    struct SwsContext *sws;
    int ret;

    sws = sws_getContext(frame->width, height, frame->format, dst->width, dst->height, dst->format, flags, NULL,
                         NULL, NULL);
    if (!sws)
        return AVERROR(EINVAL);
    if (is_yuv(frame->format)) {
        const int *coefficients = sws_getCoefficients(sws_colorspace(frame->colorspace, frame->height));
        ret = sws_setColorspaceDetails(sws, coefficients, mw_picture_is_full_range(frame),
                                       sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
        if (ret < 0) {
            ret = AVERROR(EINVAL);
            goto end;
        }
    }
    for (int i = 0; i < 4; i++) {
        planes[i] = frame->data[i];
        strides[i] = field ? frame->linesize[i] * 2 : frame->linesize[i];
    }
    ret = sws_scale(sws, planes, strides, 0, height, dst->data, dst->linesize);
    ret = ret > 0 ? 0 : AVERROR_EXTERNAL;
end:
    sws_freeContext(sws);
    return ret;
}

static void flatten_on_white(const AVFrame *rgba, AVFrame *rgb)
{
    for (int y = 0; y < rgba->height; y++) {
        const uint8_t *in = rgba->data[0] + (ptrdiff_t)y * rgba->linesize[0];
        uint8_t *out = rgb->data[0] + (ptrdiff_t)y * rgb->linesize[0];
        for (int x = 0; x < rgba->width; x++) {
            unsigned alpha = in[4 * x + 3];
            for (int c = 0; c < 3; c++)
                out[3 * x + c] = (uint8_t)((in[4 * x + c] * alpha + 255 * (255 - alpha) + 127) / 255);
        }
    }
}

/*
 * Copies the window (crop_x, crop_y, out size) of src into dst, mirrored and rotated. Output pixel
 * (x, y) reads source pixel (sx, sy) of the mirrored picture; the mirror is applied to sx last.
 */
static void orient_copy(const AVFrame *src, int crop_x, int crop_y, const struct mw_orientation *o, AVFrame *dst)
{
    int bpp = src->format == AV_PIX_FMT_RGBA ? 4 : 3;
    int w = src->width, h = src->height;

    for (int y = 0; y < dst->height; y++) {
        uint8_t *out = dst->data[0] + (ptrdiff_t)y * dst->linesize[0];
        for (int x = 0; x < dst->width; x++) {
            int ux = x + crop_x, uy = y + crop_y;   /* in the rotated, uncropped picture */
            int sx, sy;

            switch (o->rotation) {
            case 90:  sx = uy;         sy = h - 1 - ux; break;
            case 180: sx = w - 1 - ux; sy = h - 1 - uy; break;
            case 270: sx = w - 1 - uy; sy = ux;         break;
            default:  sx = ux;         sy = uy;         break;
            }
            if (o->hflip)
                sx = w - 1 - sx;
            memcpy(out + bpp * x, src->data[0] + (ptrdiff_t)sy * src->linesize[0] + bpp * sx, (size_t)bpp);
        }
    }
}

int mw_picture_render(const AVFrame *frame, AVRational sar, const struct mw_orientation *o,
                      const struct mw_size_request *req, int keep_alpha, AVFrame **out)
{
    static const struct mw_orientation upright = {0, 0};
    AVFrame *scaled = NULL, *mapped = NULL, *flat = NULL, *result = NULL;
    const AVFrame *oriented_src;
    struct mw_fit_result fit;
    int display_w, display_h, scaled_w, scaled_h;
    int alpha = has_alpha(frame->format);
    int hdr = mw_tonemap_is_hdr(frame->color_trc);
    enum AVPixelFormat scaled_format = hdr ? AV_PIX_FMT_RGB48 : alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24;
    int ret;

    *out = NULL;
    if (!o)
        o = &upright;
    if (frame->width <= 0 || frame->height <= 0)
        return AVERROR_INVALIDDATA;
    mw_picture_display_size(frame->width, frame->height, sar, o, &display_w, &display_h);
    ret = mw_picture_fit(display_w, display_h, req, &fit);
    if (ret < 0)
        return ret;
    /* Scaling happens before the rotation, so a quarter turn swaps the scaled sides. */
    scaled_w = o->rotation == 90 || o->rotation == 270 ? fit.scaled_height : fit.scaled_width;
    scaled_h = o->rotation == 90 || o->rotation == 270 ? fit.scaled_width : fit.scaled_height;
    scaled = frame_new(scaled_format, scaled_w, scaled_h);
    if (!scaled) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = scale_into(frame, scaled);
    if (ret < 0)
        goto end;
    oriented_src = scaled;
    if (hdr) {
        mapped = frame_new(AV_PIX_FMT_RGB24, scaled_w, scaled_h);
        if (!mapped) {
            ret = AVERROR(ENOMEM);
            goto end;
        }
        ret = mw_tonemap_rgb48(scaled, frame->color_trc, frame->color_primaries, mw_tonemap_peak_nits(frame), mapped);
        if (ret < 0)
            goto end;
        oriented_src = mapped;
    } else if (alpha && !keep_alpha) {
        flat = frame_new(AV_PIX_FMT_RGB24, scaled_w, scaled_h);
        if (!flat) {
            ret = AVERROR(ENOMEM);
            goto end;
        }
        flatten_on_white(scaled, flat);
        oriented_src = flat;
    }
    result = frame_new(oriented_src->format, fit.width, fit.height);
    if (!result) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    orient_copy(oriented_src, fit.crop_x, fit.crop_y, o, result);
    result->sample_aspect_ratio = (AVRational){1, 1};
    result->color_range = AVCOL_RANGE_JPEG;
    *out = result;
    result = NULL;
end:
    av_frame_free(&scaled);
    av_frame_free(&mapped);
    av_frame_free(&flat);
    av_frame_free(&result);
    return ret;
}

int mw_picture_render_gray(const AVFrame *frame, int max_width, AVFrame **out)
{
    AVFrame *gray;
    int width = frame->width < max_width ? frame->width : max_width;
    int height;
    int ret;

    *out = NULL;
    if (frame->width <= 0 || frame->height <= 0 || max_width <= 0)
        return AVERROR_INVALIDDATA;
    height = (int)((int64_t)frame->height * width / frame->width);
    gray = frame_new(AV_PIX_FMT_GRAY8, width, height > 0 ? height : 1);
    if (!gray)
        return AVERROR(ENOMEM);
    ret = scale_into(frame, gray);
    if (ret < 0) {
        av_frame_free(&gray);
        return ret;
    }
    *out = gray;
    return 0;
}
