#include <math.h>
#include <stdint.h>

#include <libavutil/error.h>
#include <libavutil/mastering_display_metadata.h>

#include "mediaworker/tonemap.h"

#define SDR_WHITE_NITS 100.0
#define DEFAULT_PEAK_NITS 1000.0
/* Below this fraction of SDR white the curve is the identity, so SDR-range content keeps its levels. */
#define KNEE 0.75
#define IN_LUT_BITS 12
#define IN_LUT_SIZE (1 << IN_LUT_BITS)
#define OUT_LUT_SIZE 4096

int mw_tonemap_is_hdr(enum AVColorTransferCharacteristic trc)
{
    return trc == AVCOL_TRC_SMPTE2084 || trc == AVCOL_TRC_ARIB_STD_B67;
}

double mw_tonemap_peak_nits(const AVFrame *frame)
{
    const AVFrameSideData *cll = av_frame_get_side_data(frame, AV_FRAME_DATA_CONTENT_LIGHT_LEVEL);
    const AVFrameSideData *mdm = av_frame_get_side_data(frame, AV_FRAME_DATA_MASTERING_DISPLAY_METADATA);

    if (cll) {
        const AVContentLightMetadata *light = (const AVContentLightMetadata *)cll->data;
        if (light->MaxCLL > SDR_WHITE_NITS)
            return light->MaxCLL;
    }
    if (mdm) {
        const AVMasteringDisplayMetadata *display = (const AVMasteringDisplayMetadata *)mdm->data;
        if (display->has_luminance && av_q2d(display->max_luminance) > SDR_WHITE_NITS)
            return av_q2d(display->max_luminance);
    }
    return DEFAULT_PEAK_NITS;
}

double mw_tonemap_curve(double l, double peak)
{
    double x, x_max;

    if (l <= 0)
        return 0;
    if (peak <= 1.0)
        return l < 1.0 ? l : 1.0;
    if (l <= KNEE)
        return l;
    /* Extended Reinhard on the part above the knee: slope 1 at the knee, reaches 1.0 exactly at peak. */
    x = (l - KNEE) / (1.0 - KNEE);
    x_max = (peak - KNEE) / (1.0 - KNEE);
    if (x > x_max)
        x = x_max;
    return KNEE + (1.0 - KNEE) * x * (1.0 + x / (x_max * x_max)) / (1.0 + x);
}

/* SMPTE ST 2084 EOTF: signal [0,1] to cd/m2. */
static double pq_to_nits(double e)
{
    const double m1 = 2610.0 / 16384, m2 = 2523.0 / 4096 * 128;
    const double c1 = 3424.0 / 4096, c2 = 2413.0 / 4096 * 32, c3 = 2392.0 / 4096 * 32;
    double p = pow(e, 1.0 / m2);
    double num = p - c1 > 0 ? p - c1 : 0;

    return 10000.0 * pow(num / (c2 - c3 * p), 1.0 / m1);
}

/* ARIB STD-B67 inverse OETF plus the BT.2100 OOTF for a 1000 cd/m2 display (system gamma 1.2, applied
 * per component as an approximation of the luminance-based form). */
static double hlg_to_nits(double e)
{
    const double a = 0.17883277, b = 0.28466892, c = 0.55991073;
    double scene = e <= 0.5 ? e * e / 3.0 : (exp((e - c) / a) + b) / 12.0;

    return 1000.0 * pow(scene, 1.2);
}

static double bt709_oetf(double l)
{
    if (l <= 0)
        return 0;
    if (l >= 1)
        return 1;
    return l < 0.018 ? 4.5 * l : 1.099 * pow(l, 0.45) - 0.099;
}

static uint8_t out_lut_lookup(const uint8_t *lut, double l)
{
    int i = (int)(l * (OUT_LUT_SIZE - 1) + 0.5);

    return lut[i < 0 ? 0 : i >= OUT_LUT_SIZE ? OUT_LUT_SIZE - 1 : i];
}

int mw_tonemap_rgb48(const AVFrame *src, enum AVColorTransferCharacteristic trc, enum AVColorPrimaries prim,
                     double peak_nits, AVFrame *dst)
{
    /* Linear-light BT.2020 to BT.709 primaries (ITU-R BT.2087). */
    static const double to709[3][3] = {
        {1.6605, -0.5876, -0.0728},
        {-0.1246, 1.1329, -0.0083},
        {-0.0182, -0.1006, 1.1187},
    };
    float in_lut[IN_LUT_SIZE];
    uint8_t out_lut[OUT_LUT_SIZE];
    int convert_gamut = prim == AVCOL_PRI_BT2020;
    double peak = (peak_nits > 0 ? peak_nits : DEFAULT_PEAK_NITS) / SDR_WHITE_NITS;

    if (src->format != AV_PIX_FMT_RGB48 || dst->format != AV_PIX_FMT_RGB24 || src->width != dst->width ||
        src->height != dst->height || !mw_tonemap_is_hdr(trc))
        return AVERROR(EINVAL);
    for (int i = 0; i < IN_LUT_SIZE; i++) {
        double e = (double)i / (IN_LUT_SIZE - 1);
        in_lut[i] = (float)((trc == AVCOL_TRC_SMPTE2084 ? pq_to_nits(e) : hlg_to_nits(e)) / SDR_WHITE_NITS);
    }
    for (int i = 0; i < OUT_LUT_SIZE; i++)
        out_lut[i] = (uint8_t)lrint(255.0 * bt709_oetf((double)i / (OUT_LUT_SIZE - 1)));

    for (int y = 0; y < src->height; y++) {
        const uint16_t *in = (const uint16_t *)(src->data[0] + (ptrdiff_t)y * src->linesize[0]);
        uint8_t *out = dst->data[0] + (ptrdiff_t)y * dst->linesize[0];

        for (int x = 0; x < src->width; x++) {
            double rgb[3], mapped[3], luma, scale;

            for (int c = 0; c < 3; c++)
                rgb[c] = in_lut[in[3 * x + c] >> (16 - IN_LUT_BITS)];
            luma = convert_gamut ? 0.2627 * rgb[0] + 0.6780 * rgb[1] + 0.0593 * rgb[2]
                                 : 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
            scale = luma > 1e-6 ? mw_tonemap_curve(luma, peak) / luma : 0;
            for (int c = 0; c < 3; c++)
                mapped[c] = convert_gamut ? scale * (to709[c][0] * rgb[0] + to709[c][1] * rgb[1] + to709[c][2] * rgb[2])
                                          : scale * rgb[c];
            for (int c = 0; c < 3; c++)
                out[3 * x + c] = out_lut_lookup(out_lut, mapped[c]);
        }
    }
    return 0;
}
