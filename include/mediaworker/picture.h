/*
 * Picture: a decoded frame made into the image a person expects to see, at the size asked for.
 *
 * Everything that makes posters wrong in other tools is fixed here, in this order: interlaced frames are
 * reduced to one field (the scale that follows is almost always a large downscale, so a field is as
 * sharp as a full deinterlacer's output and costs nothing); non-square pixels are stretched to square
 * ones; the colour matrix and range the frame is tagged with (BT.601 / BT.709 / BT.2020, limited or full)
 * are honoured by swscale into full-range RGB; PQ and HLG frames go through the tone map (tonemap.h) to
 * SDR; finally the display rotation / mirror is applied to the small picture, where it is cheap.
 */
#ifndef MEDIAWORKER_PICTURE_H
#define MEDIAWORKER_PICTURE_H

#include <libavutil/frame.h>
#include <libavutil/rational.h>

enum mw_fit {
    MW_FIT_CONTAIN,    /* the whole picture inside width x height */
    MW_FIT_COVER,      /* fill width x height exactly, cropping the centre */
};

/* The size asked for. width/height 0 = free (derived from the aspect ratio; both 0 = display size). */
struct mw_size_request {
    int width, height;
    enum mw_fit fit;
    int upscale;       /* allow an output larger than the picture */
    int even;          /* round dimensions to even numbers (4:2:0 encoders) */
};

/* Where a picture of display size (after SAR and rotation) ends up. */
struct mw_fit_result {
    int scaled_width, scaled_height;   /* the whole picture is scaled to this */
    int crop_x, crop_y;                /* then this window of it is kept (cover) */
    int width, height;                 /* final output size */
};

/*
 * Computes the output geometry of a display_width x display_height picture for req. Pure. Returns 0 or
 * AVERROR(EINVAL) for a non-positive display size.
 */
int mw_picture_fit(int display_width, int display_height, const struct mw_size_request *req,
                   struct mw_fit_result *out);

/* How the decoded frame must be turned to be seen upright. */
struct mw_orientation {
    int rotation;      /* clockwise degrees: 0, 90, 180, 270 (applied after the mirror) */
    int hflip;         /* mirror left-right first */
};

/* The orientation an EXIF Orientation value (1..8) stands for; anything else is upright. */
struct mw_orientation mw_picture_exif_orientation(int exif_value);

/* True when frame's samples use the full range: a yuvj* format (which implies it) or a JPEG range tag. Pure. */
int mw_picture_is_full_range(const AVFrame *frame);

/* Display size of frame (SAR applied, square pixels; then rotated). Pure. */
void mw_picture_display_size(int width, int height, AVRational sar, const struct mw_orientation *o,
                             int *display_width, int *display_height);

/*
 * Renders frame (any decoded pixel format) upright at the size req asks for, into a new RGB24 frame, or
 * RGBA when keep_alpha is set and the frame has alpha (without keep_alpha, alpha is flattened on white).
 * sar is the sample aspect ratio to apply ({0,1} = square). Returns 0 and *out (free with av_frame_free),
 * or a negative error with *out NULL.
 */
int mw_picture_render(const AVFrame *frame, AVRational sar, const struct mw_orientation *o,
                      const struct mw_size_request *req, int keep_alpha, AVFrame **out);

/*
 * Renders frame as a small 8-bit grey picture no wider than max_width (for scoring), honouring range
 * but not orientation. Returns 0 and *out (GRAY8), or a negative error with *out NULL.
 */
int mw_picture_render_gray(const AVFrame *frame, int max_width, AVFrame **out);

#endif
