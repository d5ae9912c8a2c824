#ifndef MEDIAWORKER_FUZZ_COMMON_H
#define MEDIAWORKER_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <libavutil/log.h>

#include "mediaworker/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fuzzing runs millions of inputs: only a crash should make noise. */
static inline void mw_fuzz_quiet(void)
{
    mw_log_setup(MW_LOG_ERROR, MW_LOG_FORMAT_TEXT, NULL);
    av_log_set_level(AV_LOG_QUIET);
}

#endif
