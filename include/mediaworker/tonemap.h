/*
 * Tone mapping of HDR pictures (PQ / HLG, usually BT.2020 primaries) to SDR BT.709 for posters.
 *
 * libavfilter's tonemap filter wants linear float input that only zscale produces, and zscale is optional
 * in libavfilter builds (Debian 12's has it, through libzimg). So that pictures do not depend on it, the
 * mapping is done here on the small RGB48 picture swscale makes: transfer to linear light
 * (1.0 = SDR reference white, 100 cd/m2, as libavfilter's tonemap uses), a curve that leaves the SDR range
 * nearly untouched and rolls highlights off smoothly up to the content's peak, BT.2020 -> BT.709
 * primaries, BT.709 gamma. Scaling is done on luminance so hues do not shift.
 */
#ifndef MEDIAWORKER_TONEMAP_H
#define MEDIAWORKER_TONEMAP_H

#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>

/* True when the frame's transfer is PQ (SMPTE 2084) or HLG (ARIB STD-B67). */
int mw_tonemap_is_hdr(enum AVColorTransferCharacteristic trc);

/* Peak luminance of the content in cd/m2 from the frame's light-level or mastering side data, else 1000. */
double mw_tonemap_peak_nits(const AVFrame *frame);

/* The curve: linear luminance l (1.0 = SDR white) to [0, 1] for content peaking at peak (same unit). Pure. */
double mw_tonemap_curve(double l, double peak);

/*
 * Maps src (AV_PIX_FMT_RGB48, full range, non-linear in trc, primaries prim) into dst (AV_PIX_FMT_RGB24,
 * same size, allocated by the caller). Returns 0 or AVERROR(EINVAL) for wrong formats or sizes.
 */
int mw_tonemap_rgb48(const AVFrame *src, enum AVColorTransferCharacteristic trc, enum AVColorPrimaries prim,
                     double peak_nits, AVFrame *dst);

#endif
