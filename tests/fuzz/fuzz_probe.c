/* Fuzz target: opening and probing an untrusted file from memory, the path every job takes first. */
#include <stddef.h>
#include <stdint.h>

#include <libavutil/time.h>

#include "fuzz_common.h"
#include "mediaworker/config.h"
#include "mediaworker/input.h"
#include "mediaworker/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mw_config cfg;
    static int configured;
    struct mw_input *in = NULL;
    struct mw_probe *probe = NULL;
    cJSON *json;

    if (!configured) {
        mw_fuzz_quiet();
        mw_config_defaults(&cfg);
        /* Smaller than production so that the fuzzer explores parsing instead of allocating. */
        cfg.limits.max_pixels = 4096 * 4096;
        cfg.limits.probesize = 1 << 20;
        configured = 1;
    }
    if (mw_input_open_memory(&in, data, size, &cfg.limits, av_gettime_relative() + 5 * 1000000) < 0)
        return 0;
    if (mw_probe_input(in, &probe) == 0) {
        json = mw_probe_to_json(probe);
        cJSON_Delete(json);
    }
    mw_probe_free(&probe);
    mw_input_close(&in);
    return 0;
}
