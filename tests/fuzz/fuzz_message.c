/* Fuzz target: the job message parser, fed raw message bodies. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "mediaworker/config.h"
#include "mediaworker/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mw_config cfg;
    static int configured;
    struct mw_job *job = NULL;
    int64_t user_id;
    char err[256];

    if (!configured) {
        mw_fuzz_quiet();
        mw_config_defaults(&cfg);
        configured = 1;
    }
    if (mw_job_parse((const char *)data, size, "fuzz-message", NULL, &cfg, &job, &user_id, err, sizeof(err)) == 0)
        mw_job_free(&job);
    return 0;
}
