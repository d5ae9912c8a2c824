#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavutil/error.h>

#include "mediaworker/error.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/log.h"

struct device_kind {
    enum mw_hwaccel config_value;
    enum AVHWDeviceType type;
    enum AVPixelFormat pix_fmt;
    const char *name;
};

/* The order auto tries them in: NVIDIA first (data-centre nodes), then the Linux generic API, then Intel. */
static const struct device_kind kinds[] = {
    {MW_HWACCEL_CUDA, AV_HWDEVICE_TYPE_CUDA, AV_PIX_FMT_CUDA, "cuda"},
    {MW_HWACCEL_VAAPI, AV_HWDEVICE_TYPE_VAAPI, AV_PIX_FMT_VAAPI, "vaapi"},
    {MW_HWACCEL_QSV, AV_HWDEVICE_TYPE_QSV, AV_PIX_FMT_QSV, "qsv"},
};

#define KIND_COUNT (sizeof(kinds) / sizeof(kinds[0]))

const char *mw_hwaccel_device_name(enum AVHWDeviceType type)
{
    for (size_t i = 0; i < KIND_COUNT; i++)
        if (kinds[i].type == type)
            return kinds[i].name;
    return "software";
}

enum AVPixelFormat mw_hwaccel_pix_fmt(enum AVHWDeviceType type)
{
    for (size_t i = 0; i < KIND_COUNT; i++)
        if (kinds[i].type == type)
            return kinds[i].pix_fmt;
    return AV_PIX_FMT_NONE;
}

/*
 * Why a device kind cannot work here, found without asking libav (which logs errors while failing, noise on
 * every CPU node running with auto), or NULL when it is worth trying.
 */
static const char *missing_prerequisite(const struct device_kind *kind)
{
    void *driver;

    if (kind->type == AV_HWDEVICE_TYPE_CUDA) {
        driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
        if (!driver)
            return "no NVIDIA driver (libcuda.so.1 not found)";
        dlclose(driver);
        return NULL;
    }
    return access("/dev/dri", F_OK) < 0 ? "no /dev/dri render node" : NULL;
}

static int try_device(const struct device_kind *kind, const char *device_name, AVBufferRef **device, char *why,
                      size_t why_size)
{
    const char *missing = missing_prerequisite(kind);
    size_t used = strlen(why);
    int ret;

    *device = NULL;
    if (missing) {
        snprintf(why + used, why_size - used, "%s%s: %s", used ? "; " : "", kind->name, missing);
        return AVERROR(ENODEV);
    }
    ret = av_hwdevice_ctx_create(device, kind->type, device_name && *device_name ? device_name : NULL, NULL, 0);
    if (ret < 0) {
        snprintf(why + used, why_size - used, "%s%s: %s", used ? "; " : "", kind->name, mw_err2str(ret));
        *device = NULL;
    }
    return ret;
}

int mw_hwaccel_open(const struct mw_config *cfg, AVBufferRef **device, struct mw_hwaccel_choice *choice)
{
    *device = NULL;
    memset(choice, 0, sizeof(*choice));
    choice->requested = cfg->hwaccel;
    choice->device_type = AV_HWDEVICE_TYPE_NONE;
    if (cfg->hwaccel == MW_HWACCEL_NONE)
        return 0;
    for (size_t i = 0; i < KIND_COUNT; i++) {
        if (cfg->hwaccel != MW_HWACCEL_AUTO && cfg->hwaccel != kinds[i].config_value)
            continue;
        if (try_device(&kinds[i], cfg->hwaccel_device, device, choice->fallback_reason,
                       sizeof(choice->fallback_reason)) >= 0) {
            choice->device_type = kinds[i].type;
            choice->fallback_reason[0] = '\0';
            return 0;
        }
    }
    mw_log(MW_LOG_DEBUG, "hwaccel", "no device usable, software it is: %s", choice->fallback_reason);
    return 0;
}

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static int shared_opened;
static AVBufferRef *shared_device;
static struct mw_hwaccel_choice shared_choice;

int mw_hwaccel_shared(const struct mw_config *cfg, AVBufferRef **device, struct mw_hwaccel_choice *choice)
{
    int ret = 0;

    *device = NULL;
    pthread_mutex_lock(&shared_lock);
    if (!shared_opened) {
        ret = mw_hwaccel_open(cfg, &shared_device, &shared_choice);
        shared_opened = ret >= 0;
    }
    if (ret >= 0) {
        *choice = shared_choice;
        if (shared_device && !(*device = av_buffer_ref(shared_device)))
            ret = AVERROR(ENOMEM);
    }
    pthread_mutex_unlock(&shared_lock);
    return ret;
}

int mw_hwaccel_frame_to_software(AVFrame *frame, AVFrame **scratch)
{
    int ret;

    if (!frame->hw_frames_ctx)
        return 0;
    if (!*scratch && !(*scratch = av_frame_alloc()))
        return AVERROR(ENOMEM);
    ret = av_hwframe_transfer_data(*scratch, frame, 0);
    if (ret >= 0)
        ret = av_frame_copy_props(*scratch, frame);
    if (ret < 0) {
        av_frame_unref(*scratch);
        return ret;
    }
    av_frame_unref(frame);
    av_frame_move_ref(frame, *scratch);
    return 1;
}

/* A codec counts as usable only when a context for it actually opens (hardware encoders need a device). */
static int codec_opens(const AVCodec *codec)
{
    AVCodecContext *ctx = avcodec_alloc_context3(codec);
    int ok;

    if (!ctx)
        return 0;
    if (av_codec_is_encoder(codec) && codec->type == AVMEDIA_TYPE_VIDEO) {
        ctx->width = 256;
        ctx->height = 144;
        ctx->time_base = (AVRational){1, 25};
        ctx->pix_fmt = codec->pix_fmts ? codec->pix_fmts[0] : AV_PIX_FMT_YUV420P;
    } else if (av_codec_is_encoder(codec) && codec->type == AVMEDIA_TYPE_AUDIO) {
        ctx->sample_rate = 48000;
        ctx->sample_fmt = codec->sample_fmts ? codec->sample_fmts[0] : AV_SAMPLE_FMT_FLTP;
        av_channel_layout_default(&ctx->ch_layout, 2);
        ctx->time_base = (AVRational){1, 48000};
    }
    ok = avcodec_open2(ctx, codec, NULL) >= 0;
    avcodec_free_context(&ctx);
    return ok;
}

static int add_codecs(cJSON *list, const char *const *names, int encoders)
{
    for (const char *const *name = names; *name; name++) {
        const AVCodec *codec = encoders ? avcodec_find_encoder_by_name(*name) : avcodec_find_decoder_by_name(*name);
        cJSON *entry = cJSON_CreateObject();

        if (!entry || !cJSON_AddStringToObject(entry, "name", *name) ||
            !cJSON_AddBoolToObject(entry, "available", codec && codec_opens(codec)) ||
            !cJSON_AddItemToArray(list, entry)) {
            cJSON_Delete(entry);
            return AVERROR(ENOMEM);
        }
    }
    return 0;
}

cJSON *mw_hwaccel_capabilities(void)
{
    static const char *const decoders[] = {"h264", "hevc", "vp9", "av1", "libdav1d", "h264_cuvid", "hevc_cuvid",
                                           "vp9_cuvid", "av1_cuvid", NULL};
    static const char *const encoders[] = {"libx264", "aac", "mjpeg", "png", "libwebp", "h264_nvenc", "hevc_nvenc",
                                           "h264_vaapi", "h264_qsv", NULL};
    cJSON *root = cJSON_CreateObject();
    cJSON *devices = root ? cJSON_AddArrayToObject(root, "devices") : NULL;
    cJSON *decoder_list = root ? cJSON_AddArrayToObject(root, "decoders") : NULL;
    cJSON *encoder_list = root ? cJSON_AddArrayToObject(root, "encoders") : NULL;

    if (!devices || !decoder_list || !encoder_list)
        goto fail;
    for (size_t i = 0; i < KIND_COUNT; i++) {
        AVBufferRef *device = NULL;
        char why[256] = "";
        cJSON *entry = cJSON_CreateObject();
        int ok = try_device(&kinds[i], NULL, &device, why, sizeof(why)) >= 0;

        av_buffer_unref(&device);
        if (!entry || !cJSON_AddStringToObject(entry, "name", kinds[i].name) ||
            !cJSON_AddBoolToObject(entry, "available", ok) ||
            !(ok ? cJSON_AddNullToObject(entry, "reason") : cJSON_AddStringToObject(entry, "reason", why)) ||
            !cJSON_AddItemToArray(devices, entry)) {
            cJSON_Delete(entry);
            goto fail;
        }
    }
    if (add_codecs(decoder_list, decoders, 0) < 0 || add_codecs(encoder_list, encoders, 1) < 0)
        goto fail;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

int mw_hwaccel_report(cJSON *report, const struct mw_hwaccel_choice *choice, int decoded_on_device)
{
    static const char *const requested_names[] = {"auto", "none", "cuda", "vaapi", "qsv"};
    const char *device = mw_hwaccel_device_name(choice->device_type);
    cJSON *acceleration = cJSON_AddObjectToObject(report, "acceleration");
    const char *fallback = NULL;

    if (choice->requested != MW_HWACCEL_NONE) {
        if (choice->fallback_reason[0])
            fallback = choice->fallback_reason;
        else if (!decoded_on_device)
            fallback = "the device was open, but this job's decoding ran in software (codec, profile or "
                       "operation not supported on it)";
    }
    if (!acceleration || !cJSON_AddStringToObject(acceleration, "requested", requested_names[choice->requested]) ||
        !cJSON_AddStringToObject(acceleration, "device", device) ||
        !cJSON_AddStringToObject(acceleration, "decode", decoded_on_device ? device : "software") ||
        !cJSON_AddStringToObject(acceleration, "encode", "software") ||
        !(fallback ? cJSON_AddStringToObject(acceleration, "fallback", fallback)
                   : cJSON_AddNullToObject(acceleration, "fallback")))
        return AVERROR(ENOMEM);
    return 0;
}
