#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/error.h>

#include "mediaworker/error.h"

struct error_entry {
    int code;
    const char *name;
    enum mw_error_class cls;
    const char *message;
};

static const struct error_entry error_table[] = {
#define MW_ERROR_ENTRY(name, a, b, cls, msg) {MW_ERR_##name, #name, MW_ERROR_CLASS_##cls, msg},
    MW_ERRNO_MAP(MW_ERROR_ENTRY)
#undef MW_ERROR_ENTRY
};

static const struct error_entry *find_entry(int err)
{
    for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
        if (error_table[i].code == err)
            return &error_table[i];
    return NULL;
}

const char *mw_strerror(int err, char *buf, size_t size)
{
    const struct error_entry *entry = find_entry(err);

    if (!size)
        return buf;
    if (entry)
        snprintf(buf, size, "%s", entry->message);
    else if (av_strerror(err, buf, size) < 0)
        snprintf(buf, size, "unknown error %d", err);
    return buf;
}

const char *mw_error_code_name(int err)
{
    const struct error_entry *entry = find_entry(err);

    if (entry)
        return entry->name;
    switch (err) {
    case AVERROR(ENOMEM):           return "ENOMEM";
    case AVERROR(ENOENT):           return "ENOENT";
    case AVERROR(EACCES):           return "EACCES";
    case AVERROR(EINVAL):           return "EINVAL";
    case AVERROR(EIO):              return "EIO";
    case AVERROR(ENOSPC):           return "ENOSPC";
    case AVERROR(EPERM):            return "EPERM";
    case AVERROR(ENOTDIR):          return "ENOTDIR";
    case AVERROR(ENAMETOOLONG):     return "ENAMETOOLONG";
    case AVERROR(ELOOP):            return "ELOOP";
    case AVERROR(ETIMEDOUT):        return "ETIMEDOUT";
    case AVERROR_INVALIDDATA:       return "INVALID_DATA";
    case AVERROR_EOF:               return "EOF";
    case AVERROR_DECODER_NOT_FOUND: return "DECODER_NOT_FOUND";
    case AVERROR_DEMUXER_NOT_FOUND: return "DEMUXER_NOT_FOUND";
    case AVERROR_ENCODER_NOT_FOUND: return "ENCODER_NOT_FOUND";
    case AVERROR_STREAM_NOT_FOUND:  return "STREAM_NOT_FOUND";
    case AVERROR_PATCHWELCOME:      return "UNSUPPORTED_FEATURE";
    case AVERROR_EXIT:              return "EXIT";
    default:                        return "UNKNOWN";
    }
}

enum mw_error_class mw_error_class(int err)
{
    const struct error_entry *entry = find_entry(err);

    if (entry)
        return entry->cls;
    switch (err) {
    case AVERROR(ENOMEM):
    case AVERROR(ENOSPC):
    case AVERROR(EDQUOT):
    case AVERROR(EIO):
    case AVERROR(EAGAIN):
    case AVERROR(EMFILE):
    case AVERROR(ENFILE):
        return MW_ERROR_CLASS_TRANSIENT;
    default:
        return MW_ERROR_CLASS_INPUT;
    }
}
