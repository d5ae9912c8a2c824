#include "cli_internal.h"
#include "mediaworker/jobproc.h"

/* Started by `serve` only (fork + exec of this binary), with its socket on fd 3. */
static int run_job_process(const struct mw_config *cfg, int argc, char **argv)
{
    (void)cfg;
    (void)argc;
    (void)argv;
    return mw_jobproc_child_main(MW_JOBPROC_FD);
}

const struct cli_command cli_cmd_job_process = {
    .name = "job-process",
    .usage = "",
    .summary = "internal: a job process of `serve`",
    .min_positional = 0,
    .max_positional = 0,
    .hidden = 1,
    .run = run_job_process,
};
