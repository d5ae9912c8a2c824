/*
 * Storyboard: sprite sheets of small tiles every N seconds, a WebVTT file that maps each time range to
 * its tile (`storyboard-0.jpg#xywh=x,y,w,h`, the form video.js, Plyr and Vidstack read), and a JSON index
 * of the same.
 *
 * Tiles come from keyframe seeks (frame_select.h): one keyframe decoded per tile, none when the index
 * shows that the tile's keyframe is the previous tile's, and never the whole file. All tiles have one size:
 * tile_width wide, as high as the picture's display aspect ratio says, cropped to that where the picture
 * changes shape. A sheet holds columns x rows tiles; more tiles make more sheets.
 */
#ifndef MEDIAWORKER_STORYBOARD_H
#define MEDIAWORKER_STORYBOARD_H

#include <stdint.h>

#include "mediaworker/image_encode.h"
#include "mediaworker/input.h"
#include "mediaworker/probe.h"

#define MW_STORYBOARD_MAX_TILES 2000
#define MW_STORYBOARD_DEFAULT_TILE_WIDTH 160
#define MW_STORYBOARD_MAX_SHEETS 64

struct mw_storyboard_request {
    double interval_s;            /* seconds between tiles; 0 = derive from count */
    int count;                    /* number of tiles when interval_s is 0 */
    int tile_width;               /* 0 = 160 */
    int columns;                  /* 0 = 10 */
    int rows;                     /* rows per sheet, 0 = 10 */
    enum mw_image_format format;
    int quality;                  /* 0 = default */
    const char *dir;              /* existing output directory */
    const char *prefix;           /* file names: <prefix>-<n>.<ext>, <prefix>.vtt, <prefix>.json; NULL = "storyboard" */
    int threads;
    AVBufferRef *hw_device;       /* decode on this device when the codec can; NULL = software */
    /* Called after each tile (may be NULL), for progress reports on long inputs. */
    void (*progress)(void *opaque, int tiles_done, int tile_count);
    void *progress_opaque;
};

struct mw_storyboard_tile {
    double start_s, end_s;
    int sheet, x, y;
};

struct mw_storyboard_layout {
    double interval_s;
    int tile_count, tile_width, tile_height, columns, rows, sheet_count;
    struct mw_storyboard_tile *tiles;     /* tile_count entries; owned */
};

/*
 * Plans the tiles of a media of duration_us: every interval_s seconds (or count tiles spread evenly when
 * interval_s is 0), at most MW_STORYBOARD_MAX_TILES (the interval grows to fit) and MW_STORYBOARD_MAX_SHEETS
 * sheets (sheets get more rows). Returns 0 (free the layout with mw_storyboard_layout_free) or
 * AVERROR(EINVAL) for an unknown duration or bad numbers, AVERROR(ENOMEM).
 */
int mw_storyboard_plan(int64_t duration_us, double interval_s, int count, int columns, int rows, int tile_width,
                       int tile_height, struct mw_storyboard_layout *out);

void mw_storyboard_layout_free(struct mw_storyboard_layout *layout);

/* Writes seconds as a WebVTT timestamp "hh:mm:ss.mmm" into out (at least 16 bytes). Pure. */
void mw_storyboard_format_time(double seconds, char *out, size_t size);

/* File name of sheet n: "<prefix>-<n>.<ext>". */
void mw_storyboard_sheet_name(const char *prefix, int sheet, enum mw_image_format format, char *out, size_t size);

/* The WebVTT text for layout (sheets named by mw_storyboard_sheet_name). 0 and *out (av_free), or ENOMEM. */
int mw_storyboard_vtt(const struct mw_storyboard_layout *layout, const char *prefix, enum mw_image_format format,
                      char **out);

struct mw_storyboard_result {
    struct mw_storyboard_layout layout;   /* owned; free with mw_storyboard_result_free */
    int sheet_width[MW_STORYBOARD_MAX_SHEETS], sheet_height[MW_STORYBOARD_MAX_SHEETS];
    int64_t sheet_bytes[MW_STORYBOARD_MAX_SHEETS];
    int64_t vtt_bytes, index_bytes;
    char vtt_name[256], index_name[256];
    int decoded_on_device;                /* the tiles came from the hardware decoder */
};

/*
 * Makes the storyboard of the main picture stream of in into req->dir. Returns 0 with *result filled, or
 * a negative error (MW_ERR_NO_PICTURE without a video stream, EINVAL without a known duration); files are
 * written atomically, sheets first, the VTT and index last, so a reader never sees an index without its
 * sheets. Free result with mw_storyboard_result_free in both cases.
 */
int mw_storyboard_make(struct mw_input *in, const struct mw_probe *probe, const struct mw_storyboard_request *req,
                       struct mw_storyboard_result *result);

void mw_storyboard_result_free(struct mw_storyboard_result *result);

#endif
