#include "cli_internal.h"
#include "mediaworker/supervisor.h"

static int run_serve(const struct mw_config *cfg, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return mw_supervisor_run(cfg) < 0 ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_serve = {
    .name = "serve",
    .usage = "[flags]",
    .summary = "consume jobs from RabbitMQ, run them in job processes, report to the Data Service",
    .min_positional = 0,
    .max_positional = 0,
    .run = run_serve,
};
