/*
 * Hardware acceleration: finding a usable device, and saying what was used.
 *
 * A GPU node and a CPU node run the same binary. MW_HWACCEL=auto tries CUDA, then VAAPI, then QSV, and
 * settles for software; an explicit kind is tried alone and falls back to software too, because a job that
 * can run on the CPU must not fail for want of a GPU (driver missing, device busy, session limit). Every
 * fallback is recorded with its reason so the report and the metrics can say what happened.
 */
#ifndef MEDIAWORKER_HWACCEL_H
#define MEDIAWORKER_HWACCEL_H

#include <libavutil/buffer.h>
#include <libavutil/frame.h>
#include <libavutil/hwcontext.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"

struct mw_hwaccel_choice {
    enum mw_hwaccel requested;
    enum AVHWDeviceType device_type;   /* AV_HWDEVICE_TYPE_NONE = software */
    char fallback_reason[256];         /* empty when the request was met */
};

/*
 * Opens the device the configuration asks for. On success *device holds a reference (caller unrefs) and
 * choice->device_type says which; when no device can be opened *device is NULL, device_type is NONE and
 * fallback_reason says why (never an error: software is always possible). Returns 0, or AVERROR(ENOMEM).
 */
int mw_hwaccel_open(const struct mw_config *cfg, AVBufferRef **device, struct mw_hwaccel_choice *choice);

/*
 * As mw_hwaccel_open, but the device is opened once per process and shared (opening a CUDA context costs
 * far more than a probe job). *device is a new reference or NULL; the configuration must be the same on
 * every call, as it is immutable after start-up. Thread-safe. Returns 0 or AVERROR(ENOMEM).
 */
int mw_hwaccel_shared(const struct mw_config *cfg, AVBufferRef **device, struct mw_hwaccel_choice *choice);

/* "cuda", "vaapi", "qsv" or "software". */
const char *mw_hwaccel_device_name(enum AVHWDeviceType type);

/* The hardware pixel format a decoder outputs on this device type, or AV_PIX_FMT_NONE. */
enum AVPixelFormat mw_hwaccel_pix_fmt(enum AVHWDeviceType type);

/*
 * Brings a frame decoded in device memory into system memory (in place: frame then holds the software
 * copy, with its properties). Frames already in system memory are left alone. *scratch is a frame the
 * caller keeps between calls (allocated on first use, freed with av_frame_free). Returns 1 when a transfer
 * happened, 0 when none was needed, or a negative error.
 */
int mw_hwaccel_frame_to_software(AVFrame *frame, AVFrame **scratch);

/*
 * What this machine can do, found by opening each device and each codec the pipeline uses (not by
 * reading lists): {"devices": [...], "decoders": [...], "encoders": [...]}. NULL when out of memory.
 */
cJSON *mw_hwaccel_capabilities(void);

/*
 * Adds the "acceleration" object of a report: {"requested", "device", "decode", "encode", "fallback"}.
 * decode says where frames were really decoded (decoded_on_device), not what was hoped for; encoding is
 * software in this version. fallback explains any difference from the request.
 */
int mw_hwaccel_report(cJSON *report, const struct mw_hwaccel_choice *choice, int decoded_on_device);

#endif
