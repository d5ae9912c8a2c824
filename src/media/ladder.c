/*
 * The preset table and the pure arithmetic of a transcode: rendition sizes, frame-rate cap, progress.
 * Nothing here touches libav state, so all of it is unit-tested directly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/mathematics.h>

#include "mediaworker/transcode.h"

/*
 * "web": what every browser and phone plays. Caps follow the usual ladder for H.264 High at these sizes;
 * CRF decides the quality and the caps only bound the peaks, so simple content stays small. Keyframes every
 * 2 s and 4 s HLS segments let a player switch renditions at every segment boundary.
 */
static const struct mw_preset presets[] = {
    {
        .name = "web",
        .video_codec = "libx264",
        .video_speed = "veryfast",
        .video_profile = "high",
        .crf = 23,
        .keyframe_ms = 2000,
        .max_fps = 60,
        .hls_segment_ms = 4000,
        .audio_codec = "aac",
        .audio_bitrate = 128000,
        .audio_sample_rate = 48000,
        .audio_channels = 2,
        .default_heights = {1080, 720, 480, 360},
        .caps = {
            {240, 500000, 1000000},
            {360, 900000, 1800000},
            {480, 1500000, 3000000},
            {720, 3000000, 6000000},
            {1080, 6000000, 12000000},
            {1440, 10000000, 20000000},
            {2160, 18000000, 36000000},
        },
    },
};

const struct mw_preset *mw_preset_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (!strcmp(presets[i].name, name))
            return &presets[i];
    return NULL;
}

const struct mw_preset_cap *mw_preset_cap_for(const struct mw_preset *preset, int height)
{
    const struct mw_preset_cap *last = &preset->caps[0];

    for (int i = 0; i < MW_TRANSCODE_MAX_RENDITIONS && preset->caps[i].max_height; i++) {
        last = &preset->caps[i];
        if (height <= last->max_height)
            return last;
    }
    return last;
}

int mw_transcode_heights(const struct mw_transcode_options *opt, const int **heights)
{
    int count = 0;

    if (opt->height_count > 0) {
        *heights = opt->heights;
        return opt->height_count;
    }
    *heights = opt->preset->default_heights;
    while (count < MW_TRANSCODE_MAX_RENDITIONS && (*heights)[count])
        count++;
    return count;
}

int64_t mw_transcode_bytes_at_caps(const struct mw_probe *probe, const struct mw_transcode_options *opt)
{
    const struct mw_preset *preset = opt->preset;
    struct mw_rendition sizes[MW_TRANSCODE_MAX_RENDITIONS];
    double bits_per_second = 0;

    if (probe->duration_us == AV_NOPTS_VALUE || probe->duration_us <= 0)
        return 0;
    if (probe->best_video < 0) {
        bits_per_second = (double)preset->audio_bitrate;
    } else {
        const struct mw_probe_stream *v = &probe->streams[probe->best_video];
        const int *heights;
        int count = mw_transcode_heights(opt, &heights);
        count = mw_ladder_compute(v->width, v->height, v->sample_aspect_ratio, v->rotation, heights, count, sizes,
                                  MW_TRANSCODE_MAX_RENDITIONS);
        if (count < 0)
            return count;
        for (int i = 0; i < count; i++)
            bits_per_second += (double)(mw_preset_cap_for(preset, sizes[i].height)->maxrate + preset->audio_bitrate);
    }
    return (int64_t)(bits_per_second / 8 * (probe->duration_us / 1e6) * (opt->hls ? 2 : 1) * 1.1);
}

static int even_down(double value)
{
    int v = (int)floor(value);

    v &= ~1;
    return v < 2 ? 2 : v;
}

static int by_height_desc(const void *a, const void *b)
{
    const struct mw_rendition *x = a, *y = b;

    return (y->height > x->height) - (y->height < x->height);
}

int mw_ladder_compute(int width, int height, AVRational sar, int rotation, const int *heights, int count,
                      struct mw_rendition *out, int max_out)
{
    double display_w, display_h;
    int written = 0;

    if (width <= 0 || height <= 0 || count <= 0 || max_out <= 0)
        return AVERROR(EINVAL);
    /* Square pixels: the width carries the aspect ratio, as players show it. */
    display_w = sar.num > 0 && sar.den > 0 ? (double)width * sar.num / sar.den : width;
    display_h = height;
    if (rotation == 90 || rotation == 270) {
        double swap = display_w;
        display_w = display_h;
        display_h = swap;
    }
    for (int i = 0; i < count && written < max_out; i++) {
        double target_h = heights[i] < display_h ? heights[i] : display_h;
        struct mw_rendition r;
        int duplicate = 0;

        if (heights[i] <= 0)
            return AVERROR(EINVAL);
        r.height = even_down(target_h);
        r.width = even_down(display_w * r.height / display_h + 0.5);
        /* Rounding the width up must not make it larger than the source either. */
        if (r.width > display_w)
            r.width = even_down(display_w);
        for (int j = 0; j < written; j++)
            duplicate |= out[j].height == r.height;
        if (!duplicate)
            out[written++] = r;
    }
    qsort(out, (size_t)written, sizeof(*out), by_height_desc);
    return written;
}

AVRational mw_ladder_frame_rate(AVRational rate, int max_fps)
{
    int divisor = 1;

    if (rate.num <= 0 || rate.den <= 0 || max_fps <= 0)
        return rate;
    while (av_cmp_q(av_mul_q(rate, (AVRational){1, divisor}), (AVRational){max_fps, 1}) > 0)
        divisor++;
    return av_mul_q(rate, (AVRational){1, divisor});
}

void mw_progress_compute(struct mw_progress *p, int64_t done, int64_t total, double media_done_s,
                         double elapsed_s)
{
    double fraction = total > 0 ? (double)done / (double)total : -1;

    if (fraction > 1)
        fraction = 1;
    p->done = done;
    p->total = total;
    p->percent = fraction >= 0 ? fraction * 100.0 : 0;
    p->speed = elapsed_s > 0 ? media_done_s / elapsed_s : 0;
    if (fraction > 0 && elapsed_s > 0)
        p->eta_s = elapsed_s * (1 - fraction) / fraction;
    else
        p->eta_s = -1;
}
